"""Custom scalars. Fields are annotated with the NewType; SCALARS maps it for the schema."""

from __future__ import annotations

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

KRW = NewType("KRW", int)

SCALARS: dict[object, ScalarDefinition] = {
    KRW: strawberry.scalar(
        name="KRW",
        description=(
            "An amount of Korean won, as a JSON integer. Unlike Int it may exceed 32 bits "
            "(incomes and taxes often do)."
        ),
        serialize=int,
        parse_value=int,
    )
}
