"""The root Query type."""

from __future__ import annotations

import strawberry

from resolvers import query
from schema.agency import AgencyStatus
from schema.resident import Resident


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
    agencies: list[AgencyStatus] = strawberry.field(
        resolver=query.agencies, description="Each agency behind the gateway and its state."
    )
