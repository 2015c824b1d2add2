"""What the caller may read for a purpose, generated from the loaded policy."""

from __future__ import annotations

from enum import Enum

import strawberry

from schema.enums import Purpose


@strawberry.enum(description="How much of a resident's RRN the caller sees.")
class RRNMasking(Enum):
    WHOLE = strawberry.enum_value("WHOLE", description="The whole number: YYMMDD-GNNNNNN.")
    BIRTH_DATE_AND_DIGIT = strawberry.enum_value(
        "BIRTH_DATE_AND_DIGIT",
        description="Birth date and the 7th digit (sex, century, foreign): YYMMDD-G******.",
    )
    BIRTH_DATE = strawberry.enum_value(
        "BIRTH_DATE", description="The birth date only: YYMMDD-*******."
    )
    HIDDEN = strawberry.enum_value("HIDDEN", description="Nothing: ******-*******.")


@strawberry.type(
    description=(
        "What your roles allow for one purpose, as the gateway's loaded policy decides it: "
        "the same decisions every lookup is checked against."
    )
)
class Permissions:
    purpose: Purpose = strawberry.field(description="The purpose asked about.")
    allowed: bool = strawberry.field(
        description="Whether your roles may declare this purpose at all."
    )
    operations: list[str] = strawberry.field(
        description="Root operations your roles may call (Query.x, Mutation.y), for any purpose."
    )
    readable: list[str] = strawberry.field(
        description=(
            "Fields you may read for this purpose, as Type.field (Resident.rrn always, masked "
            "as rrnMasking says). Any other field answers FORBIDDEN."
        )
    )
    consent_required: list[str] = strawberry.field(
        description=(
            "Readable fields that also need the resident's consent in force for this purpose "
            "and your agency (CONSENT_REQUIRED without it)."
        )
    )
    rrn_masking: RRNMasking = strawberry.field(
        description="How residents' RRNs are shown to you for this purpose."
    )
