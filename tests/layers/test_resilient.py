"""The resilient call over an in-memory agency: retries only what may work when asked again,
a circuit that only hears about the agency itself, a timeout per attempt, a FIFO limit."""

from __future__ import annotations

import asyncio
import time

from adapters.base import AgencyFailure
from adapters.memory import InMemoryAdapter
from adapters.records import Dataset
from gateway.breaker import CircuitBreaker, State
from gateway.errors import AgencyError, AgencyTimeout
from gateway.layers import AgencyStats
from gateway.layers.resilient import Limit, Queued
from tests.layers.conftest import PEOPLE, resilient


def state_of(breaker: CircuitBreaker) -> State:
    """The state now (a call, so that mypy does not narrow it between two looks)."""
    return breaker.state


async def test_answers_come_in_key_order_from_one_call(agency: InMemoryAdapter) -> None:
    call = resilient(agency)
    answers = await call(PEOPLE, ["c", "a", "zz"], None)
    assert answers == ["record c", "record a", None]
    assert agency.calls == [("resident", ("c", "a", "zz"))]
    assert (call.stats.calls, call.stats.keys) == (1, 3)


async def test_an_agency_that_is_down_is_retried_then_unavailable(agency: InMemoryAdapter) -> None:
    agency.down = True  # a connection error: worth asking again
    call = resilient(agency, retries=2)
    answers = await call(PEOPLE, ["a"], None)
    assert [type(a) for a in answers] == [AgencyError]
    assert answers[0].code == "AGENCY_UNAVAILABLE"
    assert (call.stats.calls, call.stats.retries, call.stats.failures) == (3, 2, 3)
    assert call.stats.last_error == "nts is down"


async def test_a_failure_that_is_not_transient_is_not_retried(agency: InMemoryAdapter) -> None:
    call = resilient(agency, retries=2)
    unserved = Dataset("pension", object)  # the agency refuses it: asking again cannot help
    [answer] = await call(unserved, ["a"], None)
    assert isinstance(answer, AgencyError)
    assert (call.stats.calls, call.stats.retries) == (1, 0)


async def test_a_timed_out_attempt_is_not_retried_by_default(agency: InMemoryAdapter) -> None:
    agency.delay_s = 1.0
    call = resilient(agency, timeout_ms=100, retries=3)
    started = time.monotonic()
    [answer] = await call(PEOPLE, ["a"], None)
    elapsed = time.monotonic() - started
    assert isinstance(answer, AgencyTimeout)
    assert answer.code == "AGENCY_TIMEOUT"
    assert (call.stats.calls, call.stats.retries, call.stats.timeouts) == (1, 0, 1)
    assert elapsed < 0.5, elapsed


async def test_timeouts_are_retried_when_configured(agency: InMemoryAdapter) -> None:
    agency.delay_s = 1.0
    call = resilient(agency, timeout_ms=50, retries=2, retry_timeouts=True)
    [answer] = await call(PEOPLE, ["a"], None)
    assert isinstance(answer, AgencyTimeout)
    assert (call.stats.calls, call.stats.retries) == (3, 2)


async def test_a_spent_deadline_never_asks_and_never_counts(agency: InMemoryAdapter) -> None:
    call = resilient(agency)
    for _ in range(10):
        [answer] = await call(PEOPLE, ["a"], time.monotonic() - 1)
        assert isinstance(answer, AgencyTimeout)
    assert agency.calls == []
    assert state_of(call.breaker) is State.CLOSED
    assert call.breaker.failures == 0


async def test_an_attempt_cut_short_by_the_deadline_does_not_count(
    agency: InMemoryAdapter,
) -> None:
    agency.delay_s = 0.5
    call = resilient(agency, timeout_ms=2000)
    for _ in range(5):  # the agency had 30 ms of its 2 s: not its failure
        [answer] = await call(PEOPLE, ["a"], time.monotonic() + 0.03)
        assert isinstance(answer, AgencyTimeout)
    assert len(agency.calls) == 5
    assert state_of(call.breaker) is State.CLOSED


async def test_waiting_in_our_own_queue_does_not_count(agency: InMemoryAdapter) -> None:
    limit = Limit(1)
    assert await limit.acquire(1)  # every slot taken by someone else
    call = resilient(agency, limit=limit, timeout_ms=50, retries=2)
    for _ in range(5):
        [answer] = await call(PEOPLE, ["a"], None)
        assert isinstance(answer, Queued)
    assert agency.calls == []
    assert state_of(call.breaker) is State.CLOSED
    assert call.stats.retries == 0
    limit.release()


async def test_the_circuit_opens_after_three_failures_and_then_refuses_at_once(
    agency: InMemoryAdapter,
) -> None:
    agency.delay_s = 1.0
    call = resilient(agency, timeout_ms=50)
    for _ in range(3):
        await call(PEOPLE, ["a"], None)
    assert state_of(call.breaker) is State.OPEN
    started = time.monotonic()
    [answer] = await call(PEOPLE, ["a"], None)
    assert time.monotonic() - started < 0.02
    assert isinstance(answer, AgencyError)
    assert "failing; not asking it" in answer.message
    assert len(agency.calls) == 3
    assert call.stats.rejected == 1


async def test_a_cancelled_probe_leaves_the_next_call_free_to_probe(
    agency: InMemoryAdapter,
) -> None:
    breaker = CircuitBreaker(threshold=1, reset_after_s=0.05)
    call = resilient(agency, breaker=breaker, timeout_ms=2000)
    agency.down = True
    await call(PEOPLE, ["a"], None)
    assert state_of(breaker) is State.OPEN
    await asyncio.sleep(0.06)
    agency.down, agency.delay_s = False, 1.0
    probe = asyncio.create_task(call(PEOPLE, ["a"], None))
    await asyncio.sleep(0.02)
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    agency.delay_s = 0
    assert await call(PEOPLE, ["a"], None) == ["record a"]  # probed, not refused for ever
    assert state_of(breaker) is State.CLOSED


async def test_at_most_max_concurrency_calls_are_in_flight(agency: InMemoryAdapter) -> None:
    agency.delay_s = 0.02
    call = resilient(agency, slots=2, timeout_ms=2000)
    answers = await asyncio.gather(*(call(PEOPLE, [k], None) for k in "abcdabcd"))
    assert [a for [a] in answers] == [f"record {k}" for k in "abcdabcd"]
    assert agency.max_in_flight == 2


async def test_a_failed_key_is_an_error_for_that_key_only() -> None:
    failures = {"b": AgencyFailure("no such person at nts")}
    records = {"resident": {"a": "record a"}}
    async with InMemoryAdapter("nts", records=records, failures=failures) as adapter:
        stats = AgencyStats()
        call = resilient(adapter, stats=stats)
        a, b = await call(PEOPLE, ["a", "b"], None)
    assert a == "record a"
    assert isinstance(b, AgencyError)
    assert stats.last_error == "no such person at nts"
    assert state_of(call.breaker) is State.CLOSED
