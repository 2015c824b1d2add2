"""CPU cost of observing one request and one agency batch (gateway.observe): metrics, the span
(tracing off, and on with an SDK provider that drops spans) and the JSON request log line;
and of one agency fetch through the gateway's layers (``gateway.agencies.Agency``: cache off,
single flight, coalescing, the resilient call and its observation) over an in-memory adapter.

    .venv/bin/python -m bench.observe_cost

Prints the median of 7 runs, in microseconds of this process's CPU per operation.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from adapters.memory import InMemoryAdapter
from adapters.records import INSURANCE
from bench.inprocess import request_log_to_memory
from gateway import observe
from gateway.agencies import Agency
from gateway.config import AgencyConfig, Config
from gateway.principal import Principal

RUNS, N = 7, 5000
HEADERS = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def per_op(fn: Callable[[], None]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.process_time()
        for _ in range(N):
            fn()
        times.append((time.process_time() - started) / N * 1e6)
    return statistics.median(times)


def agency_fetch(observer: observe.Observer) -> float:
    """CPU per ``Agency.fetch`` of one key, cache off, the in-memory agency answering at once,
    within a request (as the gateway calls it)."""

    async def run() -> float:
        async with InMemoryAdapter("nhis", records={"insurance": {"k": "record"}}) as adapter:
            agency = Agency(AgencyConfig("nhis", "memory", cache=False), adapter, None)

            async def fetch() -> None:
                await agency.fetch(INSURANCE, ["k"])

            times = []
            with observer.request(HEADERS, "POST", "0" * 32, None):
                for _ in range(RUNS):
                    started = time.process_time()
                    for _ in range(N):
                        await fetch()
                    times.append((time.process_time() - started) / N * 1e6)
            return statistics.median(times)

    return asyncio.run(run())


def main() -> None:
    request_log_to_memory()
    observer = observe.Observer(Config())
    principal = Principal(sub="officer", roles=("welfare_officer",), agency="welfare")

    def one_request() -> None:
        with observer.request(HEADERS, "POST", "0" * 32, "portal-42") as seen:
            seen.principal = principal
            seen.operations.append("Eligibility")
            seen.codes += ["FORBIDDEN", "CONSENT_REQUIRED"]
            seen.cost = 129
            seen.status = 200

    def batches() -> float:
        """An agency batch within a request, as the gateway makes it."""
        with observer.request(HEADERS, "POST", "0" * 32, None):
            return per_op(one_batch)

    def one_batch() -> None:
        with observe.agency_call("nts", "taxes", 20) as call:
            call.answered([None] * 20, 20)

    print(f"request, tracing off: {per_op(one_request):.1f} µs")
    print(f"agency batch, tracing off: {batches():.1f} µs")
    print(f"agency fetch through the layers, tracing off: {agency_fetch(observer):.1f} µs")
    trace.set_tracer_provider(TracerProvider())  # recording spans, exported nowhere
    observer = observe.Observer(Config())
    print(f"request, spans recorded: {per_op(one_request):.1f} µs")
    print(f"agency batch, spans recorded: {batches():.1f} µs")
    print(f"agency fetch through the layers, spans recorded: {agency_fetch(observer):.1f} µs")


if __name__ == "__main__":
    main()
