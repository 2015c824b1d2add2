"""The agency layers (``gateway.layers``) on their own, over an in-memory agency: no
PostgreSQL, no Redis, no HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.memory import InMemoryAdapter
from adapters.records import Dataset
from gateway.breaker import CircuitBreaker
from gateway.layers import AgencyStats
from gateway.layers.resilient import Limit, ResilientCall

#: Records are opaque to the layers: strings do.
PEOPLE = Dataset("resident", object)
RECORDS = {"resident": {"a": "record a", "b": "record b", "c": "record c", "d": "record d"}}


@pytest.fixture
async def agency() -> AsyncIterator[InMemoryAdapter]:
    async with InMemoryAdapter("nts", records=RECORDS) as adapter:
        yield adapter


def resilient(adapter: InMemoryAdapter, **kw: Any) -> ResilientCall:
    """A resilient call with a fresh breaker, limit and counters; ``kw`` overrides them."""
    slots = kw.pop("slots", 4)
    return ResilientCall(
        adapter.agency,
        adapter,
        limit=kw.pop("limit", None) or Limit(slots),
        breaker=kw.pop("breaker", None) or CircuitBreaker(),
        stats=kw.pop("stats", None) or AgencyStats(),
        timeout_ms=kw.pop("timeout_ms", 200),
        **kw,
    )
