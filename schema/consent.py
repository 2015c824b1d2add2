"""Consent: a resident's permission for one agency to read their agency data for one purpose."""

from __future__ import annotations

import datetime as dt

import strawberry

from schema.enums import Purpose


@strawberry.type(
    description=(
        "A resident's consent that one agency may read their agency data for one purpose, "
        "until it expires or is revoked."
    )
)
class Consent:
    id: strawberry.ID = strawberry.field(description="Use it to revoke the consent.")
    purpose: Purpose = strawberry.field(description="The purpose the consent covers.")
    agency: str = strawberry.field(description="The agency (code) the consent is given to.")
    granted_at: dt.datetime = strawberry.field(description="When it was given.")
    expires_at: dt.datetime = strawberry.field(description="When it lapses by itself.")
    revoked_at: dt.datetime | None = strawberry.field(description="When it was revoked, if it was.")
    active: bool = strawberry.field(description="Whether it is in force now.")
