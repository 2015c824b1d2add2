"""A cheap closed-loop HTTP/1.1 load generator.

Fixed concurrency: each of ``concurrency`` workers owns one keep-alive connection opened with
``asyncio.open_connection`` and sends one pre-encoded POST at a time, rotating through a list of
request bodies. Responses are parsed minimally (status line, ``content-length``, body); a non-200
status or a body with a top-level GraphQL ``"errors"`` key counts as an error. Only requests that
complete inside the measurement window (after the warm-up) are counted.

The point is to spend as little CPU as possible on the client side: on a 2-core machine the
server gets one core, the load generator (and everything else) the other.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

MAX_ERROR_SAMPLES = 5


class ProtocolError(Exception):
    """The server answered something this minimal client does not parse."""


def encode_requests(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    headers: Mapping[str, str] | None = None,
) -> list[bytes]:
    """Whole HTTP/1.1 requests (head and body) ready to write to a socket."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    out = []
    for body in bodies:
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            f"{extra}"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        )
        out.append(head.encode("ascii") + body)
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (``q`` in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


@dataclass
class LoadResult:
    """What one load run measured inside its window."""

    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    error_kinds: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    reconnects: int = 0
    client_cpu: float = 0.0  # CPU seconds this process spent during the window

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def latency_summary(self) -> dict[str, float]:
        """Milliseconds: mean, p50, p90, p99, max."""
        ordered = sorted(self.latencies)
        if not ordered:
            return {}
        return {
            "mean_ms": statistics.fmean(ordered) * 1000,
            "p50_ms": percentile(ordered, 50) * 1000,
            "p90_ms": percentile(ordered, 90) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000,
        }


@dataclass
class _Window:
    start: float
    end: float


class LoadGenerator:
    """Drives one target with ``concurrency`` keep-alive connections; see :func:`run_load`."""

    def __init__(
        self,
        host: str,
        port: int,
        requests: Sequence[bytes],
        *,
        concurrency: int,
        request_timeout: float,
    ) -> None:
        if not requests:
            raise ValueError("no requests to send")
        self.host = host
        self.port = port
        self.requests = list(requests)
        self.concurrency = concurrency
        self.request_timeout = request_timeout
        self.result = LoadResult()
        self.window = _Window(float("inf"), float("inf"))
        self.stopping = False
        self._next = 0
        self.interval: float | None = None  # paced: seconds between scheduled requests
        self._slot = 0.0

    def _error(self, kind: str, detail: str, now: float) -> None:
        if self.window.start <= now <= self.window.end:
            self.result.errors += 1
            self.result.error_kinds[kind] += 1
            if len(self.result.error_samples) < MAX_ERROR_SAMPLES:
                self.result.error_samples.append(f"{kind}: {detail[:300]}")

    async def worker(self) -> None:
        while not self.stopping:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                self._error("connect", repr(exc), time.perf_counter())
                await asyncio.sleep(0.05)
                continue
            try:
                await self._session(reader, writer)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self._error("connection", repr(exc), time.perf_counter())
            except ProtocolError as exc:
                self._error("protocol", str(exc), time.perf_counter())
            except TimeoutError:
                detail = f"no answer within {self.request_timeout} s"
                self._error("timeout", detail, time.perf_counter())
            finally:
                writer.close()
            # Reached only when the connection ended early (not when the run is cancelled).
            self.result.reconnects += 1

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests = self.requests
        count = len(requests)
        window = self.window
        result = self.result
        latencies = result.latencies
        timeout = self.request_timeout
        clock = time.perf_counter
        while not self.stopping:
            request = requests[self._next % count]
            self._next += 1
            started = clock()
            if self.interval is not None:
                # The next slot of the shared schedule; latency counts from the slot.
                self._slot = max(self._slot + self.interval, started - 1.0)
                slot = self._slot
                if slot > started:
                    await asyncio.sleep(slot - started)
                started = slot
            async with asyncio.timeout(timeout):
                status, body, close = await _exchange(reader, writer, request)
            finished = clock()
            if window.start <= finished <= window.end:
                if status != b"200":
                    text = body.decode("utf-8", "replace")
                    self._error(f"http {status.decode('ascii', 'replace')}", text, finished)
                elif b'"errors"' in body:
                    self._error("graphql errors", body.decode("utf-8", "replace"), finished)
                else:
                    result.ok += 1
                    latencies.append(finished - started)
            if close:
                return


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    concurrency: int = 16,
    duration: float = 10.0,
    warmup: float = 2.0,
    request_timeout: float = 30.0,
    on_window_start: Callable[[], None] | None = None,
    on_window_end: Callable[[], None] | None = None,
    rate: float | None = None,
) -> LoadResult:
    """Warm up for ``warmup`` seconds, then count ``duration`` seconds of completed requests.

    With ``rate`` (requests per second, all connections together) requests are sent on a fixed
    schedule instead of back to back, and latency is measured from each request's scheduled
    time, so a server falling behind shows in the latency instead of hiding it.

    ``on_window_start`` / ``on_window_end`` run right at the window's edges (to snapshot CPU
    counters of the processes under test).
    """
    generator = LoadGenerator(
        host, port, requests, concurrency=concurrency, request_timeout=request_timeout
    )
    generator.interval = None if not rate else 1.0 / rate
    generator._slot = time.perf_counter()
    tasks = [asyncio.create_task(generator.worker()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(warmup)
        if on_window_start is not None:
            on_window_start()
        cpu_start = time.process_time()
        generator.window.start = time.perf_counter()
        generator.window.end = generator.window.start + duration
        await asyncio.sleep(duration)
        # Requests are counted by completion time inside [start, start + duration].
        generator.result.elapsed = duration
        generator.result.client_cpu = time.process_time() - cpu_start
        if on_window_end is not None:
            on_window_end()
    finally:
        generator.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return generator.result


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bytes, bytes, bool]:
    """One request on an open keep-alive connection: (status code, body, server closes)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lowered = head.lower()
    marker = lowered.find(b"\r\ncontent-length:")
    if marker < 0:
        raise ProtocolError(f"no content-length in {head[:200]!r}")
    length = int(lowered[marker + 17 : lowered.find(b"\r\n", marker + 2)])
    body = await reader.readexactly(length)
    return head[9:12], body, b"\r\nconnection: close" in lowered


async def send_all(
    host: str, port: int, requests: Sequence[bytes], *, concurrency: int = 16
) -> int:
    """Send every request once (to prime caches); return how many failed."""
    pending = list(requests)
    failed = 0

    async def worker() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while pending:
                status, body, _ = await _exchange(reader, writer, pending.pop())
                if status != b"200" or b'"errors"' in body:
                    failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(pending)))))
    return failed
