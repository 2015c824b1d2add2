"""Loading through the request's DataLoaders, noting where each value came from."""

from __future__ import annotations

from typing import Any

import strawberry

from gateway.agencies import Sourced
from gateway.context import Context

Info = strawberry.Info[Context, None]


async def load(info: Info, dataset: str, key: str, part: str = "") -> Any:
    sourced: Sourced = await info.context.loaders.get(dataset, part).load(key)
    info.context.provenance.note(info.path.as_list(), sourced)
    return sourced.value


async def load_many(info: Info, dataset: str, keys: list[str]) -> list[Any]:
    found: list[Sourced] = await info.context.loaders[dataset].load_many(keys)
    path = info.path.as_list()
    for index, sourced in enumerate(found):
        info.context.provenance.note([*path, index], sourced)
    return [sourced.value for sourced in found]
