"""CertificateKind: which paper certificate a signed certificate replaces."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="Which certificate to issue; each holds only what its kind needs.")
class CertificateKind(Enum):
    RESIDENT_REGISTRATION = strawberry.enum_value(
        "RESIDENT_REGISTRATION",
        description=(
            "Resident registration abstract: name, birth date, masked RRN, sex, status, "
            "registered address and since when."
        ),
    )
    HOUSEHOLD_COMPOSITION = strawberry.enum_value(
        "HOUSEHOLD_COMPOSITION",
        description=(
            "Household composition: the household's address and each member's name, "
            "relationship to the head and birth date."
        ),
    )
    TAX_PAYMENT = strawberry.enum_value(
        "TAX_PAYMENT",
        description="Tax payment: per tax year, tax assessed, paid and in arrears (nts).",
    )
    HEALTH_INSURANCE = strawberry.enum_value(
        "HEALTH_INSURANCE",
        description="Health insurance enrolment: enrolled or not, insured type, since when (nhis).",
    )
