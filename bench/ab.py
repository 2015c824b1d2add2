"""CPU per request with one of the gateway's switches on and off, in one app.

One gateway app in-process per scenario (as ``bench.plans_cpu``: httpx ASGI transport, no
sockets), its rounds alternating the switch on and off, so both halves share the app, its
caches and the machine's moment: a fairer A/B than building an app per variant, whose order
and warm-up move the figures by more than a 10-20 % effect. The switches:

* ``lane``: the direct lane (gateway/direct.py, ``GatewayView.direct``);
* ``append``: the audit writer's one-statement commit (``AuditLog._write_appending``; off,
  every commit takes the locked path).

    .venv/bin/python -m bench.ab --switch lane --rounds 12 --requests 300 --concurrency 16 [--cold]

Prints, per scenario, the median CPU per request (``time.process_time``) of the rounds with
the switch on and with it off, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.inprocess import measure, seeded_scenarios
from bench.stack import BenchStack
from gateway.app import create_app
from gateway.graphql_schema import schema_for


def _lane(app: Any, on: bool) -> None:
    app.state.view.direct = on


def _append(app: Any, on: bool) -> None:
    # Off: every commit takes the locked path (as after a missed expectation).
    app.state.runtime.audit._locked_only = 0 if on else 1 << 30


SWITCHES = {"lane": _lane, "append": _append}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--residents", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=12, help="even: half on, half off")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cold", action="store_true", help="agency cache off")
    parser.add_argument("--switch", choices=sorted(SWITCHES), default="lane")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as workdir, BenchStack(
        args.admin_dsn, Path(workdir), lambda text: print(text, file=sys.stderr)
    ) as stack:  # fmt: skip
        config, scenarios = seeded_scenarios(stack, args.residents, args.cold)
        for name, bodies in scenarios.items():
            app = create_app(config, schema_for(config))

            def switch(i: int, app: Any = app) -> None:
                SWITCHES[args.switch](app, i % 2 == 0)

            got = asyncio.run(
                measure(
                    app, stack.token(), bodies, args.rounds, args.requests,
                    concurrency=args.concurrency, before_round=switch,
                )
            )  # fmt: skip
            on, off = statistics.median(got[0::2]), statistics.median(got[1::2])
            print(f"{name}: on {on:.2f}, off {off:.2f} ms CPU/request", file=sys.stderr)
            rows.append((name, on, off))
    print(f"| scenario | {args.switch} on: ms CPU/req | {args.switch} off | off / on |")
    print("| --- | ---: | ---: | ---: |")
    for name, on, off in rows:
        print(f"| {name} | {on:.2f} | {off:.2f} | {off / on:.2f} |")
    print(
        f"\n`python -m bench.ab --switch {args.switch} --rounds {args.rounds}"
        f" --requests {args.requests}"
        f" --concurrency {args.concurrency}{' --cold' if args.cold else ''}`: medians over the"
        " rounds of each half, alternating in one app."
    )


if __name__ == "__main__":
    main()
