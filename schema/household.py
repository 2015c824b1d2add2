"""Household: the people registered together at one address."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from adapters.records import HouseholdRecord
from resolvers import household

if TYPE_CHECKING:
    from schema.resident import Resident


@strawberry.type(
    description="A registered household: its head and every member, from the registry."
)
class Household:
    record: strawberry.Private[HouseholdRecord]
    view: strawberry.Private[str]
    subject: strawberry.Private[str]  # the RRN of the resident it was reached from

    id: strawberry.ID | None = strawberry.field(
        resolver=household.household_id, description="The registry's household number."
    )
    size: int | None = strawberry.field(
        resolver=household.size, description="How many people are registered in it."
    )
    head: Annotated[Resident, strawberry.lazy("schema.resident")] | None = strawberry.field(
        resolver=household.head, description="The head of the household."
    )
    members: list[Annotated[Resident, strawberry.lazy("schema.resident")] | None] | None = (
        strawberry.field(
            resolver=household.members,
            description="Every member, head first, then by date of birth.",
        )
    )
