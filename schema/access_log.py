"""The citizen's view of the audit trail: who looked at their data."""

from __future__ import annotations

import datetime as dt
from enum import Enum

import strawberry

from schema.certificate_kind import CertificateKind


@strawberry.enum(description="What came of an access.")
class AccessOutcome(Enum):
    GRANTED = strawberry.enum_value("GRANTED", description="Everything asked for was read.")
    PARTIAL = strawberry.enum_value(
        "PARTIAL", description="Some data was read and some was refused."
    )
    DENIED = strawberry.enum_value("DENIED", description="Everything asked for was refused.")


@strawberry.type(description="One lookup of your record by an official or by you.")
class AccessLogEntry:
    at: dt.datetime = strawberry.field(description="When it happened.")
    agency: str | None = strawberry.field(description="The agency that asked.")
    role: str = strawberry.field(
        description="The role of the person who asked (never their personal id)."
    )
    purpose: str = strawberry.field(
        description=(
            "The declared purpose, or SELF / SELF_HOUSEHOLD for your own lookups, or "
            "CERTIFICATE_ISSUE / CERTIFICATE_REVOKE when a certificate was issued or revoked."
        )
    )
    fields: list[str] = strawberry.field(description="The data that was read, as Type.field.")
    denied: list[str] = strawberry.field(description="The data that was asked for but refused.")
    outcome: AccessOutcome = strawberry.field(description="Granted, partial or denied.")
    certificate_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The certificate issued or revoked (CERTIFICATE_* entries only).",
    )
    certificate_kind: CertificateKind | None = strawberry.field(
        default=None, description="Which certificate it was (CERTIFICATE_* entries only)."
    )


@strawberry.type(description="An access log entry and its cursor.")
class AccessLogEdge:
    cursor: str = strawberry.field(description="Pass it as after to read older entries.")
    node: AccessLogEntry = strawberry.field(description="The entry.")


@strawberry.type(description="Where this page ends.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether older entries exist.")
    end_cursor: str | None = strawberry.field(description="The cursor of the last edge.")


@strawberry.type(description="A page of the access log, newest first.")
class AccessLogConnection:
    edges: list[AccessLogEdge] = strawberry.field(description="The entries on this page.")
    page_info: PageInfo = strawberry.field(description="Whether there is more.")
