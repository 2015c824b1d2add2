"""Coalescing: call at once when a slot is free; when every slot of the agency is busy, the
batches of all requests waiting for the same dataset are merged into one call. Idle, nobody
is delayed; under load the agency gets fewer, larger batches instead of a queue of small ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.records import Dataset
from gateway import observe
from gateway.errors import AgencyError
from gateway.layers import AgencyStats, Answer
from gateway.layers.resilient import Limit, Queued

#: The call below: (dataset, keys, deadline, slot_held) -> one answer per key.
Call = Callable[[Dataset, list[str], float | None, bool], Awaitable[list[Answer]]]


@dataclass
class _Waiting:
    """Keys of several requests waiting together for a free slot."""

    keys: list[str]
    done: asyncio.Future[list[Answer]]
    requests: int = 1


class Coalescer:
    def __init__(
        self,
        code: str,
        call: Call,
        limit: Limit,
        stats: AgencyStats,
        timeout_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.code = code
        self.call = call
        self.limit = limit
        self.stats = stats
        self.timeout_ms = timeout_ms
        self._clock = clock
        self._waiting: dict[str, _Waiting] = {}

    async def fetch(
        self, dataset: Dataset, keys: list[str], deadline: float | None
    ) -> list[Answer]:
        """One answer per key, in order."""
        if not self.limit.busy:
            return await self.call(dataset, keys, deadline, False)
        waiting = self._waiting.get(dataset.name)
        if waiting is not None:
            start = len(waiting.keys)
            waiting.keys.extend(keys)
            waiting.requests += 1
            merged = await asyncio.shield(waiting.done)
            return merged[start : start + len(keys)]
        waiting = self._waiting[dataset.name] = _Waiting(
            list(keys), asyncio.get_running_loop().create_future()
        )
        answers: list[Answer] = []
        try:
            answers = await self._lead(dataset, waiting, deadline)
        finally:
            if self._waiting.get(dataset.name) is waiting:
                del self._waiting[dataset.name]
            if not waiting.done.done():  # answered, or the leader was cancelled
                waiting.done.set_result(answers or [AgencyError(self.code)] * len(waiting.keys))
        return answers[: len(keys)]

    async def _lead(
        self, dataset: Dataset, waiting: _Waiting, deadline: float | None
    ) -> list[Answer]:
        """Wait for a slot for the whole merged batch, then call with it."""
        if not await self.limit.acquire(self._slot_timeout(deadline)):
            self.stats.timeouts += 1
            observe.agency_refused(self.code, dataset.name, len(waiting.keys), "AGENCY_TIMEOUT",
                                   "queue_timeout")  # fmt: skip
            return [Queued(self.code, self.timeout_ms)] * len(waiting.keys)
        del self._waiting[dataset.name]  # sealed: later arrivals start the next batch
        if waiting.requests > 1:
            self.stats.coalesced += 1
        return await self.call(dataset, waiting.keys, deadline, True)

    def _slot_timeout(self, deadline: float | None) -> float:
        timeout = self.timeout_ms / 1000
        if deadline is not None:
            timeout = min(timeout, deadline - self._clock())
        return max(timeout, 0.001)
