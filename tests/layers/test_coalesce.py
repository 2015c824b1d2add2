"""Coalescing over an in-memory agency: idle, a batch goes at once; with every slot busy the
batches waiting for a dataset merge into one call, and each caller gets its own answers."""

from __future__ import annotations

import asyncio

from adapters.memory import InMemoryAdapter
from gateway.errors import AgencyTimeout
from gateway.layers import AgencyStats
from gateway.layers.coalesce import Coalescer
from gateway.layers.resilient import Limit
from tests.layers.conftest import PEOPLE, resilient


def coalescer(agency: InMemoryAdapter, slots: int, timeout_ms: int = 2000) -> Coalescer:
    limit, stats = Limit(slots), AgencyStats()
    call = resilient(agency, limit=limit, stats=stats, timeout_ms=timeout_ms)
    return Coalescer(agency.agency, call, limit, stats, timeout_ms)


async def test_idle_a_batch_goes_at_once(agency: InMemoryAdapter) -> None:
    layer = coalescer(agency, slots=1)
    assert await layer.fetch(PEOPLE, ["b", "a"], None) == ["record b", "record a"]
    assert agency.calls == [("resident", ("b", "a"))]
    assert layer.stats.coalesced == 0


async def test_batches_waiting_for_a_busy_agency_go_as_one_call(agency: InMemoryAdapter) -> None:
    agency.delay_s = 0.05
    layer = coalescer(agency, slots=1)
    first = asyncio.create_task(layer.fetch(PEOPLE, ["a"], None))
    await asyncio.sleep(0.01)  # the one slot is busy from here on
    waiting = [layer.fetch(PEOPLE, [k], None) for k in ("b", "c", "d")]
    answers = await asyncio.gather(first, *waiting)
    assert answers == [["record a"], ["record b"], ["record c"], ["record d"]]
    assert agency.calls == [("resident", ("a",)), ("resident", ("b", "c", "d"))]
    assert layer.stats.coalesced == 1


async def test_a_merged_batch_that_finds_no_slot_in_time_times_out(
    agency: InMemoryAdapter,
) -> None:
    layer = coalescer(agency, slots=1, timeout_ms=100)
    assert await layer.limit.acquire(1)  # the one slot stays busy
    late = await asyncio.gather(*(layer.fetch(PEOPLE, [k], None) for k in ("b", "c")))
    assert all(isinstance(a, AgencyTimeout) for [a] in late)
    assert agency.calls == []  # the agency never saw the queued ones
    assert layer.stats.timeouts == 1  # one merged batch timed out in the queue
    layer.limit.release()
    assert await layer.fetch(PEOPLE, ["b"], None) == ["record b"]
