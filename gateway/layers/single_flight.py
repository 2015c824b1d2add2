"""Single flight: concurrent misses for the same key, across requests, make one call. The
first caller registers a future per key and fetches; later ones await its answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Fetch = Callable[[list[str]], Awaitable[Sequence[Any]]]


class SingleFlight:
    """``missing()`` is what a waiter gets when the caller it waited on ended without an
    answer for its key (cancelled, or failed outright)."""

    def __init__(self, missing: Callable[[], Any]) -> None:
        self.missing = missing
        self._inflight: dict[tuple[str, str], asyncio.Future[Any]] = {}

    def __len__(self) -> int:
        """Keys being fetched right now."""
        return len(self._inflight)

    async def run(self, scope: str, keys: Sequence[str], fetch: Fetch) -> list[Any]:
        """One answer per key, in order: ``fetch`` is called (at most once) with the keys
        nobody is fetching in ``scope`` yet; the others are awaited."""
        waiting = {k: f for k in keys if (f := self._inflight.get((scope, k)))}
        mine = [k for k in dict.fromkeys(keys) if k not in waiting]
        results: dict[str, Any] = {}
        if mine:
            results.update(await self._lead(scope, mine, fetch))
        for key, future in waiting.items():
            results[key] = await asyncio.shield(future)
        return [results[key] for key in keys]

    async def _lead(self, scope: str, keys: list[str], fetch: Fetch) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        futures = {key: loop.create_future() for key in keys}
        for key, future in futures.items():
            self._inflight[(scope, key)] = future
        results: dict[str, Any] = {}
        try:
            results = dict(zip(keys, await fetch(keys), strict=True))
        finally:
            for key, future in futures.items():
                del self._inflight[(scope, key)]
                if not future.done():
                    future.set_result(results[key] if key in results else self.missing())
        return results
