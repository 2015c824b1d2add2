"""Loading through the request's DataLoaders, noting where each value came from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import strawberry

from gateway.agencies import Sourced
from gateway.context import Context

Info = strawberry.Info[Context, None]
F = TypeVar("F", bound=Callable[..., Any])


class _NotLoaded:
    def __repr__(self) -> str:
        return "NOT_LOADED"


#: What ``loaded`` and a field's ``when_loaded`` function answer while the value is not
#: loaded yet: the field's own (asynchronous) resolver is then called as usual.
NOT_LOADED: Any = _NotLoaded()

#: A field's asynchronous resolver -> the same resolver for when its values are loaded
#: already (see ``when_loaded``).
WHEN_LOADED: dict[Callable[..., Any], Callable[..., Any]] = {}


def when_loaded(ready: Callable[..., Any]) -> Callable[[F], F]:
    """Register ``ready`` as the synchronous twin of the decorated async resolver: it takes
    the same arguments, answers exactly what the resolver would (raising what it would
    raise) when every load it needs is done already, and ``NOT_LOADED`` otherwise, having
    done nothing. Planned execution calls it first (``gateway.access.planned_resolver``):
    no coroutine or task for a value at hand.

    ``ready`` is called by graphql-core directly: its ``info`` is graphql-core's (it has
    ``context``, ``path``, ``operation``, ``field_name``, not strawberry's extras) and its
    arguments are graphql-core's coerced values (so only for fields whose arguments
    strawberry would hand over unconverted: builtin scalars and lists of them)."""

    def register(resolver: F) -> F:
        WHEN_LOADED[resolver] = ready
        return resolver

    return register


async def load(info: Info, dataset: str, key: str, part: str = "") -> Any:
    sourced: Sourced = await info.context.loaders.get(dataset, part).load(key)
    _note(info, sourced)
    return sourced.value


def loaded(info: Any, dataset: str, key: str, part: str = "") -> Any:
    """What ``load`` would answer, if its load is done already (its failure raised as
    ``load`` would raise it); ``NOT_LOADED`` otherwise."""
    future = info.context.loaders.get(dataset, part).cache_map.get(key)
    if future is None or not future.done() or future.cancelled():
        return NOT_LOADED
    sourced: Sourced = future.result()
    _note(info, sourced)
    return sourced.value


def _note(info: Any, sourced: Sourced) -> None:
    provenance = info.context.provenance
    if provenance.wanted or sourced.stale:
        provenance.note(info.path.as_list(), sourced)


async def load_many(info: Info, dataset: str, keys: list[str]) -> list[Any]:
    found: list[Sourced] = await info.context.loaders[dataset].load_many(keys)
    provenance = info.context.provenance
    if provenance.wanted or any(sourced.stale for sourced in found):
        path = info.path.as_list()
        for index, sourced in enumerate(found):
            provenance.note([*path, index], sourced)
    return [sourced.value for sourced in found]
