"""Household fields: members are Residents loaded in one registry batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry

from gateway.access import settled
from gateway.context import Context
from gateway.policy import SELF, SELF_HOUSEHOLD
from resolvers.loading import load, load_many

if TYPE_CHECKING:
    from schema.household import Household
    from schema.resident import Resident

Info = strawberry.Info[Context, None]


def member_view(root: Household, rrn: str) -> str:
    """Members are read under the view the household was reached by; a citizen's own
    household shows the other members only as a household register would."""
    if root.view == SELF and rrn != root.subject:
        return SELF_HOUSEHOLD
    return root.view


def household_id(root: Household) -> strawberry.ID:
    return strawberry.ID(root.record.id)


def size(root: Household) -> int:
    return len(root.record.member_rrns)


async def head(root: Household, info: Info) -> Resident | None:
    from schema.resident import Resident

    record = await load(info, "resident", root.record.head_rrn)
    if record is None:
        return None
    view = member_view(root, record.rrn)
    await settled(info.context.access.returned(record.rrn, view, info, record))
    return Resident(record=record, view=view)


async def members(root: Household, info: Info) -> list[Resident | None]:
    from schema.resident import Resident

    records = await load_many(info, "resident", list(root.record.member_rrns))
    access = info.context.access
    out: list[Resident | None] = []
    waiting = []
    for record in records:
        if record is None:
            out.append(None)
            continue
        view = member_view(root, record.rrn)
        waiting += access.returned(record.rrn, view, info, record)
        out.append(Resident(record=record, view=view))
    await settled(waiting)  # the members' wave: their fields answer from loaded values
    return out
