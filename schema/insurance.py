"""HealthInsurance: enrolment with the National Health Insurance Service (nhis)."""

from __future__ import annotations

import datetime as dt

import strawberry

from schema.enums import InsuredType
from schema.scalars import KRW


@strawberry.type(description="Enrolment in national health insurance, from the nhis agency.")
class HealthInsurance:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]
    insured_by_rrn: strawberry.Private[str | None]

    insured_type: InsuredType | None = strawberry.field(description="How the person is covered.")
    enrolled_on: dt.date | None = strawberry.field(description="When the current enrolment began.")
    monthly_premium: KRW | None = strawberry.field(
        description="Premium charged per month, in won; 0 for dependents."
    )
    dependents: int | None = strawberry.field(
        description="How many people are insured as this person's dependents."
    )
    insured_by: str | None = strawberry.field(
        description="For a dependent: the masked RRN of the insured person covering them."
    )
