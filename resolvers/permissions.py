"""Query.myPermissions: the caller's grant for a purpose, read from the loaded policy."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gateway.context import Context
from schema.enums import Purpose
from schema.permissions import Permissions, RRNMasking

Info = strawberry.Info[Context, None]

PurposeArg = Annotated[
    Purpose, strawberry.argument(description="The purpose you would declare in a lookup.")
]


def my_permissions(info: Info, purpose: PurposeArg) -> Permissions:
    access = info.context.access
    roles = access.principal.roles
    policy = access.policy
    operations = sorted({op for name in roles if name in policy.roles
                         for op in policy.roles[name].operations})  # fmt: skip
    grant = policy.grant(roles, purpose.name)
    if grant is None:
        return Permissions(
            purpose=purpose,
            allowed=False,
            operations=operations,
            readable=[],
            consent_required=[],
            rrn_masking=RRNMasking.HIDDEN,
        )
    if grant.unmasked_rrn:
        masking = RRNMasking.WHOLE
    elif grant.shows_seventh_digit:
        masking = RRNMasking.BIRTH_DATE_AND_DIGIT
    elif grant.shows_birth_date:
        masking = RRNMasking.BIRTH_DATE
    else:
        masking = RRNMasking.HIDDEN
    return Permissions(
        purpose=purpose,
        allowed=True,
        operations=operations,
        readable=sorted(grant.fields | {"Resident.rrn"}),
        consent_required=sorted(grant.consent),
        rrn_masking=masking,
    )
