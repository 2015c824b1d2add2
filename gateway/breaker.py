"""A circuit breaker per agency: stop calling an agency that keeps failing, probe it later.

closed --(over the last ``window_s``: at least ``threshold`` failed calls and a failure rate of
          at least ``failure_rate``)--> open --(``reset_after_s``)--> half-open
half-open --(the one probe succeeds)--> closed;  half-open --(it fails)--> open
half-open --(the probe says nothing: cancelled, or never reached the agency)--> half-open,
          and the next call is the probe

Only outcomes that say something about the agency are recorded (``succeeded``/``failed``);
a call that was allowed but never reached it, or whose budget was cut by the request's own
deadline, is ``abandoned``: it frees the probe and counts for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

#: The window is kept as this many buckets: memory and work per call are O(1).
BUCKETS = 10


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 3,
        reset_after_s: float = 10.0,
        *,
        window_s: float = 30.0,
        failure_rate: float = 0.5,
        on_change: Callable[[State], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(threshold, 1)
        self.reset_after_s = reset_after_s
        self.window_s = window_s
        self.failure_rate = failure_rate
        self.on_change = on_change
        self._clock = clock
        self._state = State.CLOSED
        self._opened_at = 0.0
        self._probing = False
        self._span = window_s / BUCKETS
        #: (bucket number, calls, failures), oldest first; at most BUCKETS of them.
        self._buckets: list[list[int]] = []

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.reset_after_s:
            self._move(State.HALF_OPEN)
        return self._state

    @property
    def failures(self) -> int:
        """Failed calls recorded in the current window."""
        self._prune(self._clock())
        return sum(b[2] for b in self._buckets)

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one probe at a time."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def succeeded(self) -> None:
        self._probing = False
        if self._state is not State.CLOSED:
            self._buckets.clear()
            self._move(State.CLOSED)
        else:
            self._record(failed=False)

    def failed(self) -> None:
        was_probing, self._probing = self._probing, False
        if self._state is not State.CLOSED:
            if was_probing or self._state is State.HALF_OPEN:
                self._open()
            return
        self._record(failed=True)
        calls = sum(b[1] for b in self._buckets)
        failures = sum(b[2] for b in self._buckets)
        if failures >= self.threshold and failures >= self.failure_rate * calls:
            self._open()

    def abandoned(self) -> None:
        """The call allowed by ``allow`` ended without telling anything about the agency
        (cancelled, refused by our own queue, or cut short by the request's deadline). A
        probe that ends so frees the half-open state for the next call."""
        self._probing = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(State.OPEN)

    def _move(self, state: State) -> None:
        """Every change of state goes through here (a hook for metrics)."""
        if state is self._state:
            return
        self._state = state
        if self.on_change is not None:
            self.on_change(state)

    def _record(self, *, failed: bool) -> None:
        now = self._clock()
        self._prune(now)
        number = int(now // self._span) if self._span > 0 else 0
        if not self._buckets or self._buckets[-1][0] != number:
            self._buckets.append([number, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += int(failed)

    def _prune(self, now: float) -> None:
        if self._span <= 0:
            return
        oldest = int(now // self._span) - BUCKETS + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.pop(0)
