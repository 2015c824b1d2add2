"""A soak: the gateway at a fraction of its peak for a while, its RSS sampled throughout.

    .venv/bin/python -m bench.soak --minutes 10 --fraction 0.7 -s full

Seeds a scratch database (``--residents``), starts the demo agencies and one gateway (the
scenario's configuration), finds the peak with one ``--peak-seconds`` run, then sends
requests on a fixed schedule at ``fraction`` times the peak in windows of ``--window`` seconds,
recording per window the throughput, p50/p99 (from each request's scheduled time) and the
gateway's RSS. Prints a markdown table and the RSS drift from the first window to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.load import encode_requests, run_load
from bench.peer import rss_mb
from bench.scenarios import SCENARIOS, Keys
from bench.stack import DEFAULT_ADMIN_DSN, BenchStack


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-s", "--scenario", default="full", choices=sorted(SCENARIOS))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fraction", type=float, default=0.7)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--peak-seconds", type=float, default=10.0)
    parser.add_argument("-r", "--residents", type=int, default=20_000)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--admin-dsn", default=DEFAULT_ADMIN_DSN)
    args = parser.parse_args()
    scenario = SCENARIOS[args.scenario]
    with (
        tempfile.TemporaryDirectory(prefix="gwsoak-") as workdir,
        BenchStack(args.admin_dsn, Path(workdir), say) as stack,
    ):
        stack.setup(args.residents)
        sample, household, _ = stack.keys(2000)
        households = stack.households() if "rotating" in scenario.name else ()
        keys = Keys(sample=sample, household=household, households=households)
        server = stack.start_gateway(scenario.gateway)
        headers = {"Authorization": f"Bearer {stack.token()}"}
        requests = encode_requests(
            "127.0.0.1", server.port, "/graphql", scenario.bodies(keys), headers
        )

        def load(duration: float, rate: float | None, warmup: float) -> tuple[float, float, float]:
            result = asyncio.run(
                run_load(
                    "127.0.0.1", server.port, requests, concurrency=args.concurrency,
                    duration=duration, warmup=warmup, rate=rate,
                )
            )  # fmt: skip
            lat = result.latency_summary()
            return result.rps, lat.get("p50_ms", float("nan")), lat.get("p99_ms", float("nan"))

        peak, p50, p99 = load(args.peak_seconds, None, 2.0)
        rate = args.fraction * peak
        say(f"peak {peak:,.0f} req/s (p50 {p50:.1f}, p99 {p99:.1f} ms); soaking at {rate:,.0f}")
        rows = []
        ends = time.monotonic() + args.minutes * 60
        started = time.monotonic()
        while time.monotonic() < ends:
            rps, p50, p99 = load(args.window, rate, 0.5)
            rss = rss_mb(server.pid) or float("nan")
            rows.append((time.monotonic() - started, rps, p50, p99, rss))
            say(f"  {rows[-1][0]:6.0f} s: {rps:,.0f} req/s, p50 {p50:.1f}, p99 {p99:.1f} ms, "
                f"RSS {rss:.1f} MB")  # fmt: skip
        stack.stop(server)
    print(f"`python -m bench.soak {' '.join(sys.argv[1:])}`: peak {peak:,.0f} req/s, "
          f"soak at {rate:,.0f} req/s ({args.fraction:.0%})\n")  # fmt: skip
    print(
        "| t (s) | req/s | p50 ms | p99 ms | gateway RSS MB |\n| ---: | ---: | ---: | ---: | ---: |"
    )
    for t, rps, p50, p99, rss in rows:
        print(f"| {t:.0f} | {rps:,.0f} | {p50:.1f} | {p99:.1f} | {rss:.1f} |")
    if rows:
        first, last = rows[0][4], rows[-1][4]
        print(
            f"\nRSS first window {first:.1f} MB, last {last:.1f} MB "
            f"({(last - first) / first:+.1%}), min {min(r[4] for r in rows):.1f}, "
            f"max {max(r[4] for r in rows):.1f}; p99 median over windows "
            f"{statistics.median(r[3] for r in rows):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
