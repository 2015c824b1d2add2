"""CPU per request of the gateway's whole pipeline, cold (agency cache off: every request calls
the five agencies) and warm (cache on, primed), in one process: the gateway app in-process
(httpx ASGI transport), the demo agencies in their own processes (nts, mma over HTTP;
registry, nhis, nps over PostgreSQL), so ``time.process_time`` counts the gateway's own work:
observation, agency layers, adapters, execution, audit (issue 10, per-request overhead).

    .venv/bin/python -m bench.pipeline_cpu --rounds 5 --requests 300 [--profile out.prof]

Prints, per scenario, the median over rounds of this process's CPU time per request. The
request log goes to a JSON handler on a string buffer, as a deployment logs it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from bench.inprocess import measure, request_log_to_memory
from bench.scenarios import CACHE_OFF, FULL_QUERY
from bench.stack import BenchStack, to_toml
from gateway.app import create_app
from gateway.config import from_dict
from gateway.graphql_schema import schema_for


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--only", choices=["full-cold", "full-warm"], default=None)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the timed requests")
    args = parser.parse_args(argv)
    request_log_to_memory()
    profile = cProfile.Profile(time.process_time) if args.profile else None
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir, BenchStack(
        args.admin_dsn, Path(workdir), lambda text: print(text, file=sys.stderr)
    ) as stack:  # fmt: skip
        stack.setup(args.residents)
        sample, _, _ = stack.keys(100)
        bodies = [
            json.dumps({"query": FULL_QUERY, "variables": {"rrn": k}}).encode() for k in sample
        ]
        scenarios = {
            "full-cold": CACHE_OFF,
            "full-warm": {"cache": {"backend": "memory"}},
        }
        token = stack.token()
        for name, overrides in scenarios.items():
            if args.only and name != args.only:
                continue
            config = from_dict(tomllib.loads(to_toml(stack.gateway_config(overrides))))
            app = create_app(config, schema_for(config))
            run = measure(app, token, bodies, args.rounds, args.requests, profile=profile)
            got = asyncio.run(run)
            results[name] = got
            print(f"{name}: {' '.join(f'{g:.2f}' for g in got)} ms CPU/request", file=sys.stderr)
    if profile is not None:
        profile.dump_stats(args.profile)
    print("| scenario | ms CPU/request (median) | min |")
    print("| --- | ---: | ---: |")
    for name, got in results.items():
        print(f"| {name} | {statistics.median(got):.2f} | {min(got):.2f} |")


if __name__ == "__main__":
    main()
