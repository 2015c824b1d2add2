"""A circuit breaker per agency: stop calling an agency that keeps failing, probe it later.

closed --(``threshold`` consecutive failures)--> open --(``reset_after_s``)--> half-open
half-open --(the one probe succeeds)--> closed;  half-open --(it fails)--> open
"""

from __future__ import annotations

import time
from enum import Enum


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(self, threshold: int = 5, reset_after_s: float = 10.0) -> None:
        self.threshold = threshold
        self.reset_after_s = reset_after_s
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if time.monotonic() - self._opened_at >= self.reset_after_s:
            return State.HALF_OPEN
        return State.OPEN

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
        self.failures = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        self.failures += 1
        if self._probing or self.failures >= self.threshold:
            self._opened_at = time.monotonic()
        self._probing = False
