"""CPU per request of compiled execution through the direct lane (gateway/direct.py) against
the same through strawberry's request path, graphql-core's executor (both with operation
plans) and per-field authorization, in one process, interleaved: the gateway app in-
process (httpx ASGI transport, no sockets, no load generator), the agency cache on and
primed, so what is left is the gateway's own work per request (token check, parse/validate
caches, execution and authorization, audit).

    .venv/bin/python -m bench.plans_cpu --rounds 7 --requests 300

Prints, per scenario and variant, the median over rounds of this process's CPU time per
request (``time.process_time``): a figure that a busy machine disturbs much less than
throughput. The per-field variant is the reference kept in ``tests/access/per_field.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.inprocess import Pauses, measure, seeded_scenarios
from bench.stack import BenchStack
from gateway.app import create_app
from gateway.executor import PlannedExecutor
from gateway.graphql_schema import schema_for
from tests.access.per_field import per_field_schema


class Uncompiled(PlannedExecutor):
    """Every operation left to graphql-core (and the executor's cycle still broken, so the
    two differ only in how fields execute)."""

    def _tree(self) -> None:
        return None


def graphql_core_schema(config: Any) -> Any:
    """The planned schema, executed by graphql-core's executor instead of the compiled one."""
    schema = schema_for(config)
    schema.execution_context_class = Uncompiled
    return schema


#: name -> (schema builder, whether the direct lane is on; gateway/direct.py).
VARIANTS: dict[str, tuple[Callable[..., Any], bool]] = {
    "compiled": (schema_for, True),
    "compiled, strawberry's request path": (schema_for, False),
    "graphql-core": (graphql_core_schema, False),
    "per-field": (per_field_schema, False),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests in flight at once (16: audit commits shared as under load)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="agency cache off (every request asks the agencies), as bench.run's full and"
        " household-rotating",
    )
    args = parser.parse_args(argv)
    results: dict[str, dict[str, list[float]]] = {}
    collected: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as workdir, BenchStack(
        args.admin_dsn, Path(workdir), lambda text: print(text, file=sys.stderr)
    ) as stack:  # fmt: skip
        config, scenarios = seeded_scenarios(stack, args.residents, args.cold)
        token = stack.token()
        for name, bodies in scenarios.items():
            for _ in range(args.rounds):
                for variant, (build, direct) in VARIANTS.items():
                    app = create_app(config, build(config))
                    app.state.view.direct = direct
                    pauses = Pauses()
                    run = measure(
                        app, token, bodies, 1, args.requests,
                        concurrency=args.concurrency, pauses=pauses,
                    )  # fmt: skip
                    got = asyncio.run(run)
                    pauses.close()
                    results.setdefault(name, {}).setdefault(variant, []).extend(got)
                    collected.setdefault(name, {}).setdefault(variant, []).extend(
                        pauses.durations
                    )
                    print(f"{name} {variant}: {got[0]:.2f} ms CPU/request", file=sys.stderr)
    first = next(iter(VARIANTS))
    print(
        "| scenario | "
        + " | ".join(f"{v} ms CPU/req" for v in VARIANTS)
        + " | "
        + " | ".join(f"{v} / {first}" for v in list(VARIANTS)[1:])
        + " |"
    )
    print("| --- |" + " ---: |" * (2 * len(VARIANTS) - 1))
    for name, by in results.items():
        medians = [statistics.median(by[v]) for v in VARIANTS]
        print(
            f"| {name} | "
            + " | ".join(f"{m:.2f}" for m in medians)
            + " | "
            + " | ".join(f"{m / medians[0]:.2f}" for m in medians[1:])
            + " |"
        )
    print(
        "\n| scenario | variant | collector runs per 1,000 requests | collector ms per request"
        " | longest pause ms |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    total = args.rounds * args.requests
    for name, by_variant in collected.items():
        for variant, durations in by_variant.items():
            longest = max(durations, default=0.0) * 1000
            print(
                f"| {name} | {variant} | {len(durations) * 1000 / total:.1f}"
                f" | {sum(durations) * 1000 / total:.3f} | {longest:.1f} |"
            )
    cold = " --cold" if args.cold else ""
    print(
        f"\n`python -m bench.plans_cpu --rounds {args.rounds} --requests {args.requests}"
        f" --concurrency {args.concurrency}{cold}`: medians over rounds; each round primes a"
        " fresh app, then times the requests (the collector's runs: over every round)."
    )


if __name__ == "__main__":
    main()
