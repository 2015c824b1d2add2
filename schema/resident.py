"""Resident: one person, as the registry and the other agencies know them."""

from __future__ import annotations

import datetime as dt

import strawberry

from adapters.records import ResidentRecord
from resolvers import resident
from schema.address import Address
from schema.enums import RegistrationStatus, Relationship, Sex
from schema.household import Household
from schema.insurance import HealthInsurance
from schema.military import MilitaryService
from schema.pension import Pension
from schema.tax import TaxRecord


@strawberry.type(
    description=(
        "A person registered in Korea. Registry fields come from the resident registry; "
        "insurance, taxes, pension and militaryService each come from their agency and are "
        "null (with an error naming the agency) when that agency cannot answer."
    )
)
class Resident:
    record: strawberry.Private[ResidentRecord]
    view: strawberry.Private[str]  # a Purpose name, or SELF / SELF_HOUSEHOLD

    rrn: str = strawberry.field(
        resolver=resident.rrn,
        description=(
            "Resident registration number, masked as YYMMDD-G****** unless the caller may "
            "see it whole."
        ),
    )
    name: str | None = strawberry.field(
        resolver=resident.name, description="Full name, family name first."
    )
    birth_date: dt.date | None = strawberry.field(
        resolver=resident.birth_date, description="Date of birth."
    )
    sex: Sex | None = strawberry.field(resolver=resident.sex, description="Registered sex.")
    status: RegistrationStatus | None = strawberry.field(
        resolver=resident.status, description="Whether the registration is in force."
    )
    is_foreign_resident: bool | None = strawberry.field(
        resolver=resident.is_foreign_resident,
        description="True for a registered foreign resident.",
    )
    relationship: Relationship | None = strawberry.field(
        resolver=resident.relationship,
        description="Relationship to the head of the resident's household.",
    )
    address: Address | None = strawberry.field(
        resolver=resident.address, description="Registered address, from the registry."
    )
    household: Household | None = strawberry.field(
        resolver=resident.household,
        description="The household the resident is registered in, with its members.",
    )
    insurance: HealthInsurance | None = strawberry.field(
        resolver=resident.insurance,
        description="National health insurance enrolment (nhis agency).",
    )
    taxes: list[TaxRecord] | None = strawberry.field(
        resolver=resident.taxes,
        description=(
            "Income tax per year (nts agency), oldest first; only the given years when "
            "years is set."
        ),
    )
    pension: Pension | None = strawberry.field(
        resolver=resident.pension, description="National pension participation (nps agency)."
    )
    military_service: MilitaryService | None = strawberry.field(
        resolver=resident.military_service,
        description="Military service duty (mma agency).",
    )
