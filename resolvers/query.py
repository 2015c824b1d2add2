"""Root query fields."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated

import strawberry

from gateway import rrn as rrns
from gateway.access import settled
from gateway.context import Context
from gateway.errors import InvalidRRNError, QueryTooComplex
from resolvers.loading import load
from schema.agency import AgencyStatus
from schema.enums import Purpose

if TYPE_CHECKING:
    from schema.resident import Resident

Info = strawberry.Info[Context, None]

RRNArg = Annotated[
    str, strawberry.argument(description="The resident's RRN: YYMMDD-GNNNNNN or 13 digits.")
]
PurposeArg = Annotated[
    Purpose,
    strawberry.argument(description="Why you are asking; it decides which fields you may read."),
]
RRNsArg = Annotated[
    list[str], strawberry.argument(description="RRNs to look up, at most [limits] max_batch.")
]


def parse_rrn(text: str) -> str:
    try:
        return rrns.parse(text).value
    except rrns.InvalidRRN as exc:
        raise InvalidRRNError(f"{rrns.mask(text)} is not a valid RRN: {exc}") from None


async def resident(info: Info, rrn: RRNArg, purpose: PurposeArg) -> Resident | None:
    info.context.access.require_view(purpose.name, info, {"rrn": rrn, "purpose": purpose})
    return await _resident(info, rrn, purpose)


async def _resident(info: Info, rrn: str, purpose: Purpose) -> Resident | None:
    from schema.resident import Resident

    record = await load(info, "resident", parse_rrn(rrn))
    if record is None:
        return None
    await settled(info.context.access.returned(record.rrn, purpose.name, info, record))
    return Resident(record=record, view=purpose.name)


def residents(info: Info, rrns: RRNsArg, purpose: PurposeArg) -> list[Awaitable[Resident | None]]:
    # Limits first: nothing is audited for a request refused as too large, so a refused
    # lookup cannot plant entries in thousands of citizens' access logs.
    limit = info.context.limits.max_batch
    if len(rrns) > limit:
        raise QueryTooComplex(f"residents takes at most {limit} RRNs; got {len(rrns)}")
    info.context.access.require_view(purpose.name, info, {"rrns": rrns, "purpose": purpose})
    # One awaitable per entry: an invalid RRN nulls its own entry, not the whole list.
    return [_resident(info, rrn, purpose) for rrn in rrns]


async def agencies(info: Info) -> list[AgencyStatus]:
    members = list(info.context.agencies.by_code.values())
    problems = await asyncio.gather(*(agency.ping() for agency in members))
    return [
        AgencyStatus(
            code=agency.code,
            kind=agency.config.kind,
            reachable=problem is None,
            last_error=problem or agency.stats.last_error,
            circuit=agency.breaker.state.value,
            cache="off" if agency.cache is None else agency.cache.backend,
            cache_hit_ratio=agency.cache_hit_ratio,
            stale_served=agency.stats.stale_served,
            retries=agency.stats.retries,
            calls=agency.stats.calls,
            keys=agency.stats.keys,
            failures=agency.stats.failures,
        )
        for agency, problem in zip(members, problems, strict=True)
    ]
