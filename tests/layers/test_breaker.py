"""The circuit breaker: a failure rate over a short window opens it; a probe closes it; a
probe that tells nothing (cancelled, never sent) frees the half-open state."""

from __future__ import annotations

from gateway.breaker import CircuitBreaker, State


def state_of(breaker: CircuitBreaker) -> State:
    """The state now (a call, so that mypy does not narrow it between two looks)."""
    return breaker.state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, changes: list[State] | None = None, **kw: float) -> CircuitBreaker:
    record = None if changes is None else changes.append
    return CircuitBreaker(on_change=record, clock=clock, **kw)  # type: ignore[arg-type]


def test_three_failures_in_a_row_open_the_circuit() -> None:
    clock = Clock()
    changes: list[State] = []
    b = breaker(clock, changes)
    for _ in range(2):
        assert b.allow()
        b.failed()
    assert state_of(b) is State.CLOSED
    assert b.allow()
    b.failed()
    assert state_of(b) is State.OPEN
    assert not b.allow()
    assert changes == [State.OPEN]


def test_a_few_failures_among_many_successes_keep_it_closed() -> None:
    clock = Clock()
    b = breaker(clock)
    for i in range(40):
        if i % 8:
            b.succeeded()
        else:
            b.failed()  # 5 failures of 40: 12.5 %
        clock.now += 0.1
    assert b.failures == 5
    assert state_of(b) is State.CLOSED


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    b = breaker(clock, window_s=10)
    b.failed()
    b.failed()
    clock.now += 11
    b.failed()
    assert b.failures == 1
    assert state_of(b) is State.CLOSED


def test_a_failure_rate_at_the_threshold_opens_it() -> None:
    clock = Clock()
    b = breaker(clock, failure_rate=0.5)
    for _ in range(3):
        b.succeeded()
        b.failed()
    assert state_of(b) is State.OPEN


def test_half_open_lets_one_probe_and_its_success_closes() -> None:
    clock = Clock()
    changes: list[State] = []
    b = breaker(clock, changes, threshold=1, reset_after_s=5)
    b.failed()
    clock.now += 5
    assert state_of(b) is State.HALF_OPEN
    assert b.allow()
    assert not b.allow()  # one probe at a time
    b.succeeded()
    assert state_of(b) is State.CLOSED
    assert b.failures == 0
    assert changes == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_a_failed_probe_opens_it_again() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1, reset_after_s=5)
    b.failed()
    clock.now += 5
    assert b.allow()
    b.failed()
    assert state_of(b) is State.OPEN
    assert not b.allow()


def test_an_abandoned_probe_frees_half_open_for_the_next_call() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1, reset_after_s=5)
    b.failed()
    clock.now += 5
    assert b.allow()
    b.abandoned()
    assert state_of(b) is State.HALF_OPEN
    assert b.allow()
