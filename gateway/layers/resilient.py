"""The resilient call: one batch to one agency's adapter, through its circuit breaker, a FIFO
concurrency limit, a timeout per attempt and bounded retries.

Only what says something about the agency reaches its breaker: an answer, an error, or a
timeout after the agency had its whole ``timeout_ms``. Waiting in the gateway's own queue, an
attempt the request's deadline cut short, and a cancelled call count for nothing (and free a
half-open probe). Retried, with full-jitter exponential backoff and never past the deadline:
connection errors and server errors (``AgencyFailure(transient=True)``, ``OSError``). A timeout
is retried only with ``retry_timeouts``: a slow agency is not asked twice as often.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from adapters.base import Adapter, AgencyFailure
from adapters.records import Dataset
from adapters.trust import redact
from gateway import observe
from gateway.breaker import CircuitBreaker
from gateway.errors import AgencyError, AgencyTimeout, GatewayError
from gateway.layers import AgencyStats, Answer
from gateway.logs import mask_rrns

log = logging.getLogger("gateway.agencies")

BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0

T = TypeVar("T")
U = TypeVar("U")
#: The agency asked once, within ``budget`` seconds.
Ask = Callable[[float], Awaitable[T]]


class Limit:
    """At most ``slots`` batches in flight; the rest wait in FIFO order (``asyncio.Semaphore``
    wakes waiters in order, which keeps tail latency flat when many requests queue)."""

    def __init__(self, slots: int) -> None:
        self._slots = asyncio.Semaphore(slots)

    @property
    def busy(self) -> bool:
        return self._slots.locked()

    async def acquire(self, within: float) -> bool:
        """A slot, or False when none came free within ``within`` seconds."""
        if not self._slots.locked():
            # A slot is free and nobody queues before us: taken at once, no timeout needed.
            await self._slots.acquire()
            return True
        try:
            async with asyncio.timeout(max(within, 0.001)):
                await self._slots.acquire()
        except TimeoutError:
            return False
        return True

    def release(self) -> None:
        self._slots.release()


class Queued(AgencyTimeout):
    """Timed out waiting for a free slot in front of the agency (its breaker is not told)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one attempt ended: the answers, or the error and what it says."""

    answers: list[Answer] | None = None
    error: GatewayError | None = None
    #: The outcome says something about the agency (its breaker is told).
    counts: bool = True
    retryable: bool = False


def transient(exc: BaseException) -> bool:
    """Could asking again work? Connection errors and server errors, never a timeout."""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, AgencyFailure):
        return exc.transient
    return isinstance(exc, OSError)


class ResilientCall:
    def __init__(
        self,
        code: str,
        adapter: Adapter,
        *,
        limit: Limit,
        breaker: CircuitBreaker,
        stats: AgencyStats,
        timeout_ms: int,
        retries: int = 1,
        retry_timeouts: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.code = code
        self.adapter = adapter
        self.limit = limit
        self.breaker = breaker
        self.stats = stats
        self.timeout_ms = timeout_ms
        self.timeout = timeout_ms / 1000
        self.retries = retries
        self.retry_timeouts = retry_timeouts
        self._clock = clock

    async def __call__(
        self, dataset: Dataset, keys: list[str], deadline: float | None, slot_held: bool = False
    ) -> list[Answer]:
        """The adapter's answers (or a GatewayError per key). ``deadline`` is the request's
        (monotonic clock); ``slot_held``: the caller already holds a slot of ``limit``."""
        if not self.breaker.allow():
            if slot_held:
                self.limit.release()
            self.stats.rejected += 1
            observe.agency_refused(self.code, dataset.name, len(keys), "AGENCY_UNAVAILABLE",
                                   "circuit_open")  # fmt: skip
            return [self._refusal()] * len(keys)
        attempt = 0
        while True:
            try:
                outcome = await self._attempt(dataset, keys, deadline, slot_held)
            except BaseException:  # cancelled: nothing learnt, and a probe must not stay out
                self.breaker.abandoned()
                raise
            slot_held = False
            if outcome.answers is not None:
                self.breaker.succeeded()
                return outcome.answers
            error = outcome.error or AgencyError(self.code)
            self._tell(outcome)
            attempt += 1
            backoff = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            out_of_time = deadline is not None and self._clock() + backoff >= deadline
            if (
                not outcome.retryable
                or attempt > self.retries
                or out_of_time
                or not self.breaker.allow()
            ):
                return [error] * len(keys)
            self.stats.retries += 1
            observe.agency_retry(self.code)
            await asyncio.sleep(backoff)

    def _budget(self, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout
        return min(self.timeout, deadline - self._clock())

    async def once(
        self, ask: Ask[T], deadline: float | None, *, what: str, check: Callable[[T], U]
    ) -> U:
        """One attempt, never retried (statistics), through the same breaker, limit and timeout
        as batches: ``check(answer)`` (ValueError: malformed), or raises the GatewayError."""
        if not self.breaker.allow():
            self.stats.rejected += 1
            raise self._refusal()
        try:
            outcome = await self._guarded(ask, deadline, False, what)
        except BaseException:
            self.breaker.abandoned()
            raise
        if isinstance(outcome, Attempt):
            self._tell(outcome)
            raise outcome.error or AgencyError(self.code)
        try:
            checked = check(outcome)
        except ValueError as exc:  # our own words, never the agency's values
            self.breaker.failed()
            self._failed(f"malformed {what}: {exc}")
            raise AgencyError(self.code, f"The {self.code} agency sent malformed {what}.") from None
        self.breaker.succeeded()
        return checked

    def _refusal(self) -> AgencyError:
        return AgencyError(self.code, f"The {self.code} agency is failing; not asking it.")

    def _tell(self, failed: Attempt) -> None:
        """The breaker learns what a failed attempt says about the agency, if anything."""
        if failed.counts:
            self.breaker.failed()
        else:
            self.breaker.abandoned()

    async def _attempt(
        self, dataset: Dataset, keys: list[str], deadline: float | None, slot_held: bool
    ) -> Attempt:
        what = f"a {dataset.name} batch"
        outcome = await self._guarded(
            lambda budget: self._ask(dataset, keys, budget), deadline, slot_held, what
        )
        if isinstance(outcome, Attempt):
            if isinstance(outcome.error, Queued):
                observe.agency_refused(self.code, dataset.name, len(keys), "AGENCY_TIMEOUT",
                                       "queue_timeout")  # fmt: skip
            return outcome
        return self._checked(dataset, keys, outcome)

    async def _guarded(
        self, ask: Ask[T], deadline: float | None, slot_held: bool, what: str
    ) -> T | Attempt:
        """``ask`` once through the limit and the timeout: its answer, or the failed Attempt."""
        budget = self._budget(deadline)
        if budget <= 0:  # the request's deadline is spent: the agency was never asked
            if slot_held:
                self.limit.release()
            return Attempt(error=AgencyTimeout(self.code, self.timeout_ms), counts=False)
        if not slot_held and not await self.limit.acquire(budget):
            # Our own queue was full for the whole time: not the agency's failure.
            self.stats.timeouts += 1
            return Attempt(error=Queued(self.code, self.timeout_ms), counts=False)
        try:
            # The agency gets its whole timeout once it is asked (within the deadline).
            budget = self._budget(deadline)
            if budget <= 0:
                return Attempt(error=AgencyTimeout(self.code, self.timeout_ms), counts=False)
            return await ask(budget)
        except TimeoutError:
            self.stats.timeouts += 1
            self._failed("timeout")
            return Attempt(
                error=AgencyTimeout(self.code, self.timeout_ms),
                # Cut short by the request's deadline: the agency did not have its time.
                counts=budget >= self.timeout,
                retryable=self.retry_timeouts,
            )
        except Exception as exc:
            # Our adapters' own failures say what went wrong; anything else may quote data
            # (a driver's message), so operators see only its kind; the log has the rest.
            shown = str(exc) if isinstance(exc, AgencyFailure) else type(exc).__name__
            self._failed(shown)
            log.warning("agency %s failed %s: %s", self.code, what, exc)
            return Attempt(error=AgencyError(self.code), retryable=transient(exc))
        finally:
            self.limit.release()

    async def _ask(self, dataset: Dataset, keys: list[str], budget: float) -> Sequence[Any]:
        """The one place the agency is called."""
        self.stats.calls += 1
        self.stats.keys += len(keys)
        with observe.agency_call(self.code, dataset.name, len(keys)) as call:
            async with asyncio.timeout(budget):
                entries = await self.adapter.fetch(dataset, keys)
            call.answered(entries, len(keys))
        return entries

    def _checked(self, dataset: Dataset, keys: list[str], entries: Sequence[Any]) -> Attempt:
        if len(entries) != len(keys):
            self._failed(f"adapter returned {len(entries)} entries for {len(keys)} keys")
            return Attempt(error=AgencyError(self.code))
        out: list[Answer] = []
        for entry in entries:
            if entry is None and dataset.many:
                entry = ()  # the contract: None for a many dataset means no records
            elif isinstance(entry, BaseException):
                self._failed(
                    str(entry) if isinstance(entry, AgencyFailure) else type(entry).__name__
                )
                entry = AgencyError(self.code)
            out.append(entry)
        return Attempt(answers=out)

    def _failed(self, reason: str) -> None:
        self.stats.failures += 1
        # Shown to operators (Query.agencies): never a full RRN, whatever the agency said.
        self.stats.last_error = mask_rrns(redact(reason))
