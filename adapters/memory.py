"""An agency held in memory: the adapter to build on and to test against, as httpx ships
``MockTransport`` beside its transports.

::

    adapter = InMemoryAdapter(
        "nhis", {}, records={"insurance": {"940812-1001751": record}}, delay_s=0.01
    )

It keeps the contract of :class:`adapters.base.Adapter` (``adapters.testing`` proves it) and
can misbehave on purpose: a per-key failure (``failures``), latency (``delay_s``), an outage
(``down``), and an agency that takes at most ``max_batch`` keys per call (the adapter splits
a larger batch into calls, in order, as any adapter for such an agency must).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.base import Adapter, AgencyFailure
from adapters.records import Dataset


class InMemoryAdapter(Adapter):
    """Settings: ``delay_ms`` (latency per call, default 0) and ``max_batch`` (keys per
    call, default unlimited); the keyword arguments win over them."""

    def __init__(
        self,
        agency: str,
        settings: Mapping[str, Any] | None = None,
        *,
        records: Mapping[str, Mapping[str, Any]] | None = None,
        failures: Mapping[str, Exception] | None = None,
        delay_s: float | None = None,
        max_batch: int | None = None,
    ) -> None:
        settings = {} if settings is None else settings
        super().__init__(agency, settings)
        #: dataset name -> key -> record (a tuple of records for a ``many`` dataset).
        self.records: dict[str, dict[str, Any]] = {
            name: dict(by_key) for name, by_key in (records or {}).items()
        }
        self.datasets = frozenset(self.records)
        #: key -> the exception answered for it, whatever the dataset.
        self.failures = dict(failures or {})
        self.delay_s = delay_s if delay_s is not None else settings.get("delay_ms", 0) / 1000
        self.max_batch = max_batch if max_batch is not None else settings.get("max_batch")
        #: When true the agency is out: every call and ping raises AgencyFailure.
        self.down = False
        #: Every call made to the agency: (dataset name, keys), in order.
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._open = False

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._check(None)

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        self._check(dataset)
        size = self.max_batch or max(len(keys), 1)
        out: list[Any] = []
        for start in range(0, len(keys), size):
            out += await self._call(dataset, keys[start : start + size])
        return out

    async def _call(self, dataset: Dataset, keys: Sequence[str]) -> list[Any]:
        self.calls.append((dataset.name, tuple(keys)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            self._check(dataset)
        finally:
            self.in_flight -= 1
        held = self.records[dataset.name]
        out: list[Any] = []
        for key in keys:
            if key in self.failures:
                out.append(self.failures[key])
            elif dataset.many:
                out.append(tuple(held.get(key, ())))
            else:
                out.append(held.get(key))
        return out

    def _check(self, dataset: Dataset | None) -> None:
        if not self._open:
            raise AgencyFailure(f"{self.agency}: adapter used before start() or after close()")
        if self.down:
            raise AgencyFailure(f"{self.agency} is down", transient=True)
        if dataset is not None and dataset.name not in self.records:
            raise AgencyFailure(f"{self.agency} does not serve {dataset.name}")
