"""Pension: participation in the National Pension Service (nps)."""

from __future__ import annotations

import datetime as dt

import strawberry

from schema.enums import PensionSubscriberType
from schema.scalars import KRW


@strawberry.type(description="National pension participation and benefits, from the nps agency.")
class Pension:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]

    subscriber_type: PensionSubscriberType | None = strawberry.field(
        description="How the person takes part: contributing, or receiving a pension."
    )
    months_contributed: int | None = strawberry.field(
        description="Months of contributions on record."
    )
    expected_monthly_benefit: KRW | None = strawberry.field(
        description="For contributors: the projected monthly pension at pension age, in won."
    )
    monthly_benefit: KRW | None = strawberry.field(
        description="For recipients: the pension paid each month, in won."
    )
    benefit_since: dt.date | None = strawberry.field(
        description="For recipients: when payments began."
    )
