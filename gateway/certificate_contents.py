"""What each kind of certificate holds: only the fields its paper counterpart needs, as
JSON, from the agencies' records; and the schema coordinates each kind reads (the citizen's
grant must cover them; the audit trail lists them as disclosed)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from adapters.records import HouseholdRecord, InsuranceRecord, ResidentRecord, TaxRecord
from gateway.rrn import mask

# What each kind reads, as the schema's coordinates: the citizen's SELF grant must cover
# them (and SELF_HOUSEHOLD the members' part); the audit trail lists them as disclosed.
HOLDER = ("Resident.rrn", "Resident.name", "Resident.birthDate")
ADDRESS = ("Resident.address", "Address.region", "Address.city", "Address.street",
           "Address.postalCode")  # fmt: skip
FIELDS: dict[str, tuple[str, ...]] = {
    "RESIDENT_REGISTRATION": (
        *HOLDER, "Resident.sex", "Resident.status", "Resident.isForeignResident", *ADDRESS,
        "Address.registeredOn",
    ),
    "HOUSEHOLD_COMPOSITION": (
        *HOLDER, *ADDRESS, "Resident.household", "Household.id", "Household.members",
    ),
    "TAX_PAYMENT": (
        *HOLDER, "Resident.taxes", "TaxRecord.year", "TaxRecord.taxAssessed",
        "TaxRecord.taxPaid", "TaxRecord.arrears",
    ),
    "HEALTH_INSURANCE": (
        *HOLDER, "Resident.insurance", "HealthInsurance.insuredType",
        "HealthInsurance.enrolledOn",
    ),
}  # fmt: skip
#: What a household certificate shows of each other member.
MEMBER_FIELDS = ("Resident.name", "Resident.birthDate", "Resident.relationship")


def holder(record: ResidentRecord) -> dict[str, Any]:
    """Who the certificate is about: the RRN shows birth date and 7th digit only."""
    return {
        "name": record.name,
        "birthDate": record.birth_date.isoformat(),
        "rrn": mask(record.rrn, birth_date=True, seventh_digit=True),
    }


def _address(record: ResidentRecord) -> dict[str, Any] | None:
    if record.region is None:
        return None
    return {
        "region": record.region,
        "city": record.city or "",
        "street": record.street or "",
        "postalCode": record.postal_code or "",
    }


def registration(record: ResidentRecord) -> dict[str, Any]:
    return {
        "registration": {
            "status": record.status,
            "sex": record.sex,
            "foreignResident": record.is_foreign,
            "address": _address(record),
            "registeredOn": None if record.registered_on is None
            else record.registered_on.isoformat(),
        }
    }  # fmt: skip


def household(
    record: ResidentRecord, house: HouseholdRecord, members: Sequence[ResidentRecord | None]
) -> dict[str, Any]:
    return {
        "household": {
            "id": house.id,
            "address": _address(record),
            "members": [
                {
                    "name": m.name,
                    "relationship": m.relationship,
                    "birthDate": m.birth_date.isoformat(),
                }
                for m in members
                if m is not None
            ],
        }
    }


def tax_payment(records: Iterable[TaxRecord]) -> dict[str, Any]:
    years = sorted(records, key=lambda r: r.tax_year)
    return {
        "taxes": {
            "years": [
                {
                    "year": r.tax_year,
                    "taxAssessed": r.tax_assessed,
                    "taxPaid": r.tax_paid,
                    "arrears": r.arrears,
                }
                for r in years
            ],
            "arrears": sum(r.arrears for r in years),
        }
    }


def health_insurance(record: InsuranceRecord | None) -> dict[str, Any]:
    if record is None:
        return {"insurance": {"enrolled": False}}
    return {
        "insurance": {
            "enrolled": True,
            "insuredType": record.insured_type,
            "enrolledOn": record.enrolled_on.isoformat(),
        }
    }
