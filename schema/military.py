"""MilitaryService: duty records of the Military Manpower Administration (mma)."""

from __future__ import annotations

import datetime as dt

import strawberry

from schema.enums import MilitaryBranch, MilitaryServiceStatus


@strawberry.type(description="Military service duty and its record, from the mma agency.")
class MilitaryService:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]

    status: MilitaryServiceStatus | None = strawberry.field(
        description="Where the person stands with service duty."
    )
    branch: MilitaryBranch | None = strawberry.field(description="Branch served in, once enlisted.")
    enlisted_on: dt.date | None = strawberry.field(description="Date of enlistment.")
    discharged_on: dt.date | None = strawberry.field(description="Date of discharge.")
    exemption_reason: str | None = strawberry.field(
        description="Why the person was exempted. Highly sensitive: few purposes may read it."
    )
