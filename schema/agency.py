"""AgencyStatus: how each agency behind the gateway is doing."""

from __future__ import annotations

import strawberry


@strawberry.type(description="The state of one agency behind the gateway, as this process sees it.")
class AgencyStatus:
    code: str = strawberry.field(description="The agency's code, e.g. nhis.")
    kind: str = strawberry.field(description="The adapter kind reading it: sql, http or a plugin.")
    reachable: bool = strawberry.field(
        description="Whether the agency answered a health check just now."
    )
    last_error: str | None = strawberry.field(description="The most recent failure seen, if any.")
    circuit: str = strawberry.field(
        description="Circuit breaker: closed (calling), open (not calling), half-open (probing)."
    )
    cache: str = strawberry.field(description="Its cache: off, memory or redis.")
    cache_hit_ratio: float | None = strawberry.field(
        description="Share of lookups answered fresh from the cache since start-up."
    )
    stale_served: int = strawberry.field(
        description="Answers served stale from the cache while the agency was failing."
    )
    retries: int = strawberry.field(description="Calls retried after a failure.")
    calls: int = strawberry.field(description="Batched calls made to it since start-up.")
    keys: int = strawberry.field(description="Keys looked up in those calls.")
    failures: int = strawberry.field(description="Calls or keys that failed since start-up.")
