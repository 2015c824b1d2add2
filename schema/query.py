"""The root Query type."""

from __future__ import annotations

import strawberry

from resolvers import certificate, citizen, permissions, query, statistics
from schema.access_log import AccessLogConnection
from schema.agency import AgencyStatus
from schema.certificate import Certificate
from schema.consent import Consent
from schema.permissions import Permissions
from schema.resident import Resident
from schema.statistics import Statistics


@strawberry.type(description="Read what the agencies know about residents.")
class Query:
    resident: Resident | None = strawberry.field(
        resolver=query.resident,
        description=(
            "One resident by RRN (YYMMDD-GNNNNNN or 13 digits), for a declared purpose. "
            "Null when no such resident is registered."
        ),
    )
    # The resolver returns one awaitable per entry (see resolvers.query.residents).
    residents: list[Resident | None] = strawberry.field(  # type: ignore[assignment]
        resolver=query.residents,
        description=(
            "Several residents at once, in the order of rrns; null for an RRN with no "
            "resident or an invalid one (with an error at that index)."
        ),
    )
    me: Resident | None = strawberry.field(
        resolver=citizen.me,
        description="Your own record, RRN unmasked (citizens; the token's rrn claim).",
    )
    my_access_log: AccessLogConnection = strawberry.field(
        resolver=citizen.my_access_log,
        description=(
            "Who looked at your data: when, which agency and role, why, and what; newest first."
        ),
    )
    my_consents: list[Consent] = strawberry.field(
        resolver=citizen.my_consents, description="Every consent you have given, newest first."
    )
    my_certificates: list[Certificate] = strawberry.field(
        resolver=certificate.my_certificates,
        description="Every certificate you were issued, newest first (without its token).",
    )
    agencies: list[AgencyStatus] = strawberry.field(
        resolver=query.agencies, description="Each agency behind the gateway and its state."
    )
    statistics: Statistics = strawberry.field(
        resolver=statistics.statistics,
        description=(
            "Counts of a measure grouped by up to two dimensions, computed by the agency that "
            "holds the data; counts under k, and counts that would reveal them, are "
            "suppressed (analysts; docs/statistics.md). Never a record."
        ),
    )
    my_permissions: Permissions = strawberry.field(
        resolver=permissions.my_permissions,
        description=(
            "What you may read for a purpose: fields, those needing the resident's consent, "
            "and how RRNs are masked, from the gateway's loaded policy."
        ),
    )
