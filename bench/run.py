"""Benchmark the gateway against the in-memory ceiling: ``python -m bench.run``.

Sets up a scratch database (seeded), the nts and mma demo agencies, the gateway and the ceiling
as their own processes; runs each scenario against both, back to back (and alternating the order
from round to round); prints a markdown table and writes a JSON file under ``bench/results/``.
Everything it started is stopped and the database dropped at the end, also on Ctrl-C or error.
See BENCHMARKS.md for results and how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import math
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import micro, peer
from bench.load import LoadResult, encode_requests, percentile, run_load, send_all
from bench.profiling import summarize
from bench.scenarios import DEFAULT_SCENARIOS, SCENARIOS, Keys, Scenario
from bench.stack import (
    DEFAULT_ADMIN_DSN,
    ROOT,
    BenchError,
    BenchStack,
    ServerProcess,
    http_post_json,
)
from bench.system import CpuProbe, CpuSnapshot, machine_info, pids_named, with_descendants

TARGETS = ("gateway", "ceiling", "peer")
RESULTS_DIR = ROOT / "bench" / "results"


def say(message: str, *, end: str = "\n") -> None:
    print(message, end=end, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=(
            "Benchmark the Resident Gateway against an in-memory strawberry 'ceiling' with the "
            "same query shape. Creates and seeds a scratch PostgreSQL database, starts the nts "
            "and mma demo agencies, the gateway and the ceiling (one uvicorn worker each), runs "
            "every scenario against both, prints a markdown table (stdout) and writes JSON to "
            "bench/results/. Progress goes to stderr."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=float,
        default=10.0,
        help="measured seconds per scenario per target per round",
    )
    parser.add_argument(
        "-w", "--warmup", type=float, default=2.0, help="seconds of load before measuring"
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=16,
        help="keep-alive connections, one request in flight on each",
    )
    parser.add_argument(
        "-r", "--residents", type=int, default=20_000, help="synthetic residents to seed"
    )
    parser.add_argument(
        "-s",
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, or 'all' ({', '.join(SCENARIOS)}); see --list",
    )
    parser.add_argument(
        "-t",
        "--targets",
        default="gateway,ceiling",
        help="comma-separated subset of gateway,ceiling,peer (peer: bench/peer.py)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole gateway/ceiling sequence; the order alternates "
        "each round (use 3 on a noisy machine)",
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=2000,
        help="distinct seeded RRNs the 'full' scenario rotates over",
    )
    parser.add_argument(
        "--database",
        metavar="NAME",
        help="seed into this database and keep it; a later run naming it (with the same"
        " --residents) reuses it instead of seeding again (drop it yourself when done)",
    )
    parser.add_argument(
        "--admin-dsn",
        default=DEFAULT_ADMIN_DSN,
        help="PostgreSQL DSN allowed to create and drop databases",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, one more run per scenario and target under cProfile "
        "(measurement window only); prints where the time goes",
    )
    parser.add_argument(
        "--profile-duration",
        type=float,
        default=None,
        help="measured seconds of each profiled run (None: same as --duration)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="seconds before a request counts as a timeout error",
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON result goes"
    )
    parser.add_argument(
        "--paced",
        type=float,
        default=None,
        metavar="FRACTION",
        help="after each gateway run, another at FRACTION (e.g. 0.7) of the throughput it "
        "just reached, on a fixed schedule: latency at a load the gateway can carry",
    )
    parser.add_argument(
        "--agency-nodelay",
        action="store_true",
        help="run the demo agencies with TCP_NODELAY on their listening socket (without it "
        "each of their responses waits ~40 ms for a delayed ACK; see BENCHMARKS.md)",
    )
    parser.add_argument(
        "--micro",
        action="store_true",
        help="also time the pieces of a request in-process (parse, validate, JWT, agency "
        "clients, per-field extensions): evidence for optimisations",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="copy the servers' and agencies' logs next to the JSON result",
    )
    parser.add_argument(
        "--peer-variant",
        choices=sorted(peer.VARIANTS),
        default="mesh",
        help="the peer's query planner: mesh (JS, Mesh supergraph) or rust (Hive Router "
        "runtime, pure-federation supergraph); see bench/peer.py",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


# --------------------------------------------------------------------------------------------
# One measured run, and their aggregation


@dataclass
class Run:
    scenario: str
    target: str
    round: int
    result: LoadResult
    cpu: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "scenario": self.scenario,
            "target": self.target,
            "round": self.round,
            "ok": r.ok,
            "errors": r.errors,
            "error_kinds": dict(r.error_kinds),
            "error_samples": r.error_samples,
            "reconnects": r.reconnects,
            "seconds": r.elapsed,
            "rps": r.rps,
            "latency": r.latency_summary(),
            "cpu": self.cpu,
        }


@dataclass
class Summary:
    scenario: str
    target: str
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    round_rps: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    busy: list[float] = field(default_factory=list)
    steal: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def cpu_pct(self, group: str) -> float:
        return 100 * self.cpu_s.get(group, 0.0) / self.seconds if self.seconds else math.nan

    @property
    def server_ms_per_request(self) -> float:
        return 1000 * self.cpu_s.get("server", 0.0) / self.ok if self.ok else math.nan

    @property
    def rps_per_core(self) -> float:
        cpu = self.cpu_s.get("server", 0.0)
        return self.ok / cpu if cpu else math.nan

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "target": self.target,
            "rps": self.rps,
            "rps_per_round": self.round_rps,
            "ok": self.ok,
            "errors": self.errors,
            "seconds": self.seconds,
            "p50_ms": self.pct(50),
            "p90_ms": self.pct(90),
            "p99_ms": self.pct(99),
            "max_ms": self.latencies[-1] * 1000 if self.latencies else None,
            "server_cpu_pct": self.cpu_pct("server"),
            "server_cpu_ms_per_request": self.server_ms_per_request,
            "rps_per_server_core": self.rps_per_core,
            "cpu_pct": {group: self.cpu_pct(group) for group in self.cpu_s},
            "machine_busy_pct": statistics.fmean(self.busy) if self.busy else None,
            "machine_steal_pct": statistics.fmean(self.steal) if self.steal else None,
            "rss_mb": max(self.rss_mb) if self.rss_mb else None,
        }


def summarize_runs(runs: Sequence[Run]) -> list[Summary]:
    table: dict[tuple[str, str], Summary] = {}
    for run in runs:
        s = table.setdefault((run.scenario, run.target), Summary(run.scenario, run.target))
        s.ok += run.result.ok
        s.errors += run.result.errors
        s.seconds += run.result.elapsed
        s.latencies.extend(run.result.latencies)
        s.round_rps.append(run.result.rps)
        for group, seconds in run.cpu.get("cpu_s", {}).items():
            s.cpu_s[group] = s.cpu_s.get(group, 0.0) + seconds
        if run.cpu.get("rss_mb") is not None:
            s.rss_mb.append(run.cpu["rss_mb"])
        if "machine_busy_pct" in run.cpu:
            s.busy.append(run.cpu["machine_busy_pct"])
            s.steal.append(run.cpu.get("machine_steal_pct", 0.0))
    for s in table.values():
        s.latencies.sort()
    return list(table.values())


# --------------------------------------------------------------------------------------------
# Output


def _num(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def markdown_tables(summaries: Sequence[Summary], scenarios: Sequence[Scenario]) -> str:
    by_key = {(s.scenario, s.target): s for s in summaries}
    multi = any(len(s.round_rps) > 1 for s in summaries)

    def rps_cell(s: Summary) -> str:
        cell = _num(s.rps)
        if multi:
            cell += f" ({_num(min(s.round_rps))}-{_num(max(s.round_rps))})"
        return cell

    lines = [
        "| scenario | gateway req/s | p50 / p99 ms | errors | ceiling req/s | p50 / p99 ms | "
        "errors | gateway / ceiling |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in scenarios:
        gw = by_key.get((scenario.name, "gateway"))
        ce = by_key.get((scenario.name, "ceiling"))
        cells = [scenario.name]
        for s in (gw, ce):
            if s is None:
                cells += ["-", "-", "-"]
            else:
                cells += [
                    rps_cell(s),
                    f"{_num(s.pct(50), 1)} / {_num(s.pct(99), 1)}",
                    str(s.errors),
                ]
        ratio = f"{gw.rps / ce.rps:.2f}" if gw and ce and ce.rps else "-"
        lines.append("| " + " | ".join([*cells, ratio]) + " |")
    if multi:
        lines += ["", "req/s: over all rounds (lowest-highest round)."]
    lines += [
        "",
        "| scenario | target | server CPU | server CPU ms/req | req/s per server core | "
        "agencies CPU | PostgreSQL CPU | load gen CPU | machine busy (steal) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scenario in scenarios:
        for target in TARGETS:
            s = by_key.get((scenario.name, target))
            if s is None:
                continue
            busy = statistics.fmean(s.busy) if s.busy else math.nan
            steal = statistics.fmean(s.steal) if s.steal else math.nan
            lines.append(
                f"| {scenario.name} | {target} | {_num(s.cpu_pct('server'))} % | "
                f"{_num(s.server_ms_per_request, 2)} | {_num(s.rps_per_core)} | "
                f"{_num(s.cpu_pct('agencies'))} % | {_num(s.cpu_pct('postgres'))} % | "
                f"{_num(s.cpu_pct('loadgen'))} % | {_num(busy)} % ({_num(steal, 1)} %) |"
            )
    lines += [
        "",
        "CPU columns are % of one core over the measured window (from /proc); "
        "'req/s per server core' = requests / server CPU-seconds.",
    ]
    peered = [sc for sc in scenarios if (sc.name, "peer") in by_key]
    if peered:
        lines += [
            "",
            "| scenario | gateway req/s per core | peer req/s per core | gateway / peer | "
            "gateway p50 / p99 ms | peer p50 / p99 ms | gateway RSS MB | peer RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for sc in peered:
            gw, pe = by_key.get((sc.name, "gateway")), by_key[(sc.name, "peer")]
            share = gw.rps_per_core / pe.rps_per_core if gw and pe.rps_per_core else math.nan
            lines.append(
                f"| {sc.name} | {_num(gw.rps_per_core) if gw else '-'} | "
                f"{_num(pe.rps_per_core)} | {_num(share, 2)} | "
                f"{f'{_num(gw.pct(50), 1)} / {_num(gw.pct(99), 1)}' if gw else '-'} | "
                f"{_num(pe.pct(50), 1)} / {_num(pe.pct(99), 1)} | "
                f"{_num(max(gw.rss_mb)) if gw and gw.rss_mb else '-'} | "
                f"{_num(max(pe.rss_mb)) if pe.rss_mb else '-'} |"
            )
        lines += [
            "",
            "The peer (bench/peer.py) has no authentication, authorization or audit; ours has "
            "all three on. RSS: the server process at the end of its runs (largest).",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The benchmark


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the load generator when installed: less client CPU per request."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def compare_targets(
    scenario: Scenario,
    bodies: Sequence[bytes],
    gateway: ServerProcess,
    ceiling: ServerProcess,
    token: str,
) -> dict[str, Any]:
    """Ask both targets the same first few requests; their ``data`` must be equal."""
    checked = equal = 0
    difference = ""
    for body in bodies[:3]:
        answers = [http_post_json(f"{s.url}/graphql", body, token) for s in (gateway, ceiling)]
        checked += 1
        (gw_status, gw), (ce_status, ce) = answers
        if gw_status != 200 or ce_status != 200 or not isinstance(gw, dict):
            difference = difference or f"HTTP {gw_status} / {ce_status}: {str(gw)[:200]}"
            continue
        if "errors" in gw or "errors" in ce:
            difference = difference or f"errors: {gw.get('errors') or ce.get('errors')}"[:300]
            continue
        if gw.get("data") == ce.get("data"):
            equal += 1
        else:
            difference = difference or (
                f"gateway {json.dumps(gw.get('data'))[:200]} vs "
                f"ceiling {json.dumps(ce.get('data'))[:200]}"
            )
    return {"scenario": scenario.name, "checked": checked, "equal": equal, "difference": difference}


class Bench:
    def __init__(self, args: argparse.Namespace, scenarios: Sequence[Scenario]) -> None:
        self.args = args
        self.scenarios = scenarios
        self.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        self.runs: list[Run] = []
        self.checks: list[dict[str, Any]] = []
        self.profiles: list[dict[str, Any]] = []
        self.profile_text: list[str] = []
        self.stack: BenchStack | None = None
        self.token = ""
        self.micro: list[dict[str, Any]] = []
        self.peer: peer.Peer | None = None
        self.started = dt.datetime.now(dt.UTC)
        self.machine = machine_info(ROOT)  # at the start: the commit benchmarked

    def execute(self, stack: BenchStack, runner: asyncio.Runner) -> None:
        args = self.args
        self.stack = stack
        Path(args.results_dir).mkdir(parents=True, exist_ok=True)  # profiles are written there
        stack.setup(args.residents, agency_nodelay=args.agency_nodelay, database=args.database)
        self.token = stack.token()
        sample, household, _ = stack.keys(args.keys)
        rotating = any(s.name.startswith("household-rotating") for s in self.scenarios)
        keys = Keys(
            sample=sample,
            household=household,
            households=stack.households() if rotating else (),
        )
        bodies = {s.name: s.bodies(keys) for s in self.scenarios}
        ceiling: ServerProcess | None = None
        wanted = {t for s in self.scenarios for t in s.targets if t in self.targets}
        peer_server: ServerProcess | None = None
        peer_bodies: dict[str, list[bytes] | None] = {}
        if "peer" in wanted:  # its files are read only when it runs
            peer_bodies = {s.name: peer.bodies(s.name) for s in self.scenarios}
            say(f"starting the peer ({args.peer_variant} planner variant)")
            self.peer = peer.Peer(stack.workdir, args.peer_variant)
            peer_server = self.peer.start()
            for given in peer_bodies.values():  # its first requests compile plans and JIT
                if given:
                    primer = encode_requests("127.0.0.1", peer.PORT, "/graphql", given)
                    runner.run(send_all("127.0.0.1", peer.PORT, primer, concurrency=4))
        if "ceiling" in wanted:
            say("starting the ceiling (loading the seeded tables into memory)")
            ceiling = stack.start_ceiling()
        # One gateway process at a time (each holds ~60 PostgreSQL connections), restarted
        # when a scenario needs other config or patches.
        current: list[tuple[str, ServerProcess]] = []
        checked: set[str] = set()

        def gateway_for(scenario: Scenario) -> ServerProcess:
            key = scenario.gateway_key()
            if current and current[0][0] == key:
                return current[0][1]
            if current:
                stack.stop(current.pop()[1])
            say(f"starting the gateway for {scenario.name}")
            server = stack.start_gateway(scenario.gateway, patches=scenario.patches)
            current.append((key, server))
            return server

        for round_no in range(args.rounds):
            if args.rounds > 1:
                say(f"round {round_no + 1} of {args.rounds}")
            for scenario in self.scenarios:
                order = [t for t in scenario.targets if t in self.targets]
                if round_no % 2:
                    order.reverse()
                if "gateway" in order:
                    gateway = gateway_for(scenario)
                    if ceiling is not None and scenario.name not in checked:
                        checked.add(scenario.name)
                        self.check(scenario, bodies[scenario.name], gateway, ceiling)
                for target in order:
                    target_bodies = bodies[scenario.name]
                    server: ServerProcess | None
                    if target == "peer":
                        given = peer_bodies.get(scenario.name)
                        if given is None or peer_server is None:
                            continue
                        server, target_bodies = peer_server, given
                    else:
                        server = gateway_for(scenario) if target == "gateway" else ceiling
                    assert server is not None
                    run = self.measure(runner, scenario, target, server, target_bodies)
                    run.round = round_no
                    self.runs.append(run)
                    if args.paced and target == "gateway" and run.result.rps > 0:
                        rate = args.paced * run.result.rps
                        paced = self.measure(
                            runner, scenario, target, server, bodies[scenario.name],
                            label=f" paced at {rate:,.0f} req/s", rate=rate,
                        )  # fmt: skip
                        paced.scenario = f"{scenario.name}@{args.paced:.0%}"
                        paced.round = round_no
                        self.runs.append(paced)
        if current:
            stack.stop(current.pop()[1])
        if self.peer is not None:
            self.peer.stop()
            self.peer = None

        if args.micro:
            say("micro-measurements (in the bench process, no load running)…")
            found = runner.run(
                micro.run_all(
                    stack.dsn, stack.agency_urls["nts"], sample, stack.auth_secret, self.token
                )
            )
            self.micro = [m.as_json() for m in found]
            for m in found:
                say(f"  {m.name}: {m.value:,.1f} {m.unit}")

        if args.profile:
            if ceiling is not None:
                stack.stop(ceiling)  # idle, but out of the way of the profiled ones
            for scenario in self.scenarios:
                for target in [t for t in scenario.targets if t in self.targets]:
                    self.profile(runner, stack, scenario, target, bodies[scenario.name])

    def check(
        self,
        scenario: Scenario,
        bodies: Sequence[bytes],
        gateway: ServerProcess,
        ceiling: ServerProcess,
    ) -> None:
        check = compare_targets(scenario, bodies, gateway, ceiling, self.token)
        self.checks.append(check)
        verdict = "agree" if check["equal"] == check["checked"] else "DISAGREE"
        say(
            f"check {scenario.name}: gateway and ceiling {verdict} on "
            f"{check['equal']}/{check['checked']} sample answers"
            + (f" ({check['difference']})" if check["difference"] else "")
        )

    def probe(self, server: ServerProcess) -> CpuProbe:
        assert self.stack is not None
        agency_pids = list(self.stack.agency_pids)
        database = self.stack.db_name
        extra: list[int] = []
        if self.peer is not None and server is self.peer.gateway:
            # The peer's stubs are its agencies; its Rust variant's adapter subgraphs do the
            # gateway-side work of calling the HTTP agencies, so they count as its server.
            agency_pids = self.peer.stub_pids
            extra = self.peer.adapter_pids
        return CpuProbe(
            {
                "server": lambda: with_descendants(server.pid) + extra,  # and its workers
                "agencies": lambda: agency_pids,
                # Backends of our scratch database only (other databases may be busy too).
                "postgres": lambda: pids_named("postgres", database),
            }
        )

    def measure(
        self,
        runner: asyncio.Runner,
        scenario: Scenario,
        target: str,
        server: ServerProcess,
        bodies: Sequence[bytes],
        *,
        duration: float | None = None,
        at_start: Callable[[], None] | None = None,
        at_end: Callable[[], None] | None = None,
        label: str = "",
        rate: float | None = None,
    ) -> Run:
        args = self.args
        duration = args.duration if duration is None else duration
        assert self.stack is not None
        # The same bytes to both targets (the ceiling ignores the token).
        headers = {"Authorization": f"Bearer {self.token}"}
        requests = encode_requests("127.0.0.1", server.port, "/graphql", bodies, headers)
        if scenario.prime:
            failed = runner.run(
                send_all("127.0.0.1", server.port, requests, concurrency=args.concurrency)
            )
            if failed:
                say(f"  priming: {failed} of {len(requests)} requests failed")
        probe = self.probe(server)
        snaps: list[CpuSnapshot] = []

        def window_start() -> None:
            if at_start is not None:
                at_start()
            snaps.append(probe.snapshot())

        def window_end() -> None:
            snaps.append(probe.snapshot())
            if at_end is not None:
                at_end()

        say(f"{scenario.name}: {target}{label} {args.warmup:g}+{duration:g} s… ", end="")
        result = runner.run(
            run_load(
                "127.0.0.1",
                server.port,
                requests,
                concurrency=args.concurrency,
                duration=duration,
                warmup=args.warmup,
                request_timeout=args.request_timeout,
                on_window_start=window_start,
                on_window_end=window_end,
                rate=rate,
            )
        )
        cpu = CpuProbe.usage(snaps[0], snaps[1]) if len(snaps) == 2 else {}
        if cpu:
            cpu["cpu_s"]["loadgen"] = result.client_cpu
        # At the end of the window; with workers, theirs and their supervisor's together.
        sizes = [peer.rss_mb(pid) for pid in with_descendants(server.pid)]
        cpu["rss_mb"] = sum(size for size in sizes if size is not None) or None
        lat = result.latency_summary()
        server_pct = 100 * cpu.get("cpu_s", {}).get("server", math.nan) / result.elapsed
        say(
            f"{result.rps:,.0f} req/s, p50 {lat.get('p50_ms', math.nan):.1f} ms, "
            f"p99 {lat.get('p99_ms', math.nan):.1f} ms, {result.errors} errors "
            f"(server CPU {server_pct:.0f} %)"
        )
        for sample in result.error_samples[:2]:
            say(f"  error: {sample}")
        if target == "gateway":
            ratios = cache_hit_ratios(server.port, self.token)
            if ratios:
                cpu["cache_hit_ratio"] = ratios
                say("  cache hit ratio since start: " + ", ".join(
                    f"{code} {ratio:.3f}" for code, ratio in ratios.items()
                ))  # fmt: skip
        return Run(scenario.name, target, 0, result, cpu)

    def profile(
        self,
        runner: asyncio.Runner,
        stack: BenchStack,
        scenario: Scenario,
        target: str,
        bodies: Sequence[bytes],
    ) -> None:
        stamp = self.started.strftime("%Y%m%dT%H%M%S")
        out = self.args.results_dir / f"{stamp}-{scenario.name}-{target}.prof"
        out.unlink(missing_ok=True)
        say(f"profiling {scenario.name}: starting the {target} under cProfile")
        if target == "gateway":
            server = stack.start_gateway(
                scenario.gateway,
                label="gateway-profiled",
                profile_to=out,
                patches=scenario.patches,
            )
        else:
            server = stack.start_ceiling(profile_to=out)
        try:
            assert server.process is not None
            process = server.process
            run = self.measure(
                runner,
                scenario,
                target,
                server,
                bodies,
                duration=self.args.profile_duration or self.args.duration,
                at_start=lambda: process.send_signal(signal.SIGUSR1),
                at_end=lambda: process.send_signal(signal.SIGUSR2),
                label=" (cProfile)",
            )
            # SIGUSR2 makes the server write its profile; wait for it (or for its death).
            deadline = time.monotonic() + 30
            while not out.exists() and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.1)
        finally:
            stack.stop(server)
        if not out.exists():
            say(f"  no profile written to {out}")
            return
        summary = summarize(out)
        title = f"#### {scenario.name} — {target} under cProfile"
        text = summary.markdown(run.result.ok + run.result.errors)
        self.profile_text.append(f"{title}\n\n{text}")
        self.profiles.append(
            {
                "scenario": scenario.name,
                "target": target,
                "file": str(out),
                "run": run.as_json(),
                "summary": summary.as_json(),
            }
        )
        say(f"  profile: {out}")

    def report(self, interrupted: bool) -> Path:
        args = self.args
        summaries = summarize_runs(self.runs)
        order = {s.name: i for i, s in enumerate(self.scenarios)}
        summaries.sort(key=lambda s: (order.get(s.scenario, 99), TARGETS.index(s.target)))
        params = {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "residents": args.residents,
            "keys": args.keys,
            "rounds": args.rounds,
            "scenarios": [s.name for s in self.scenarios],
            "targets": self.targets,
            "server_workers": "1 (the -Nw scenarios: N)",
            "agency_nodelay": args.agency_nodelay,
        }
        stack = self.stack
        print(f"\n## Resident Gateway benchmark — {self.started:%Y-%m-%d %H:%M} UTC\n")
        print(
            f"`{' '.join(['python -m bench.run', *sys.argv[1:]])}`: "
            f"{args.duration:g} s per run after {args.warmup:g} s warm-up, "
            f"{args.concurrency} connections, {args.residents:,} residents, "
            f"{args.rounds} round(s), --agency-nodelay {'on' if args.agency_nodelay else 'off'}.\n"
        )
        print(markdown_tables(summaries, self.scenarios))
        if self.micro:
            print("\n### Micro-measurements (bench process CPU per operation)\n")
            print("| what | value | note |\n| --- | ---: | --- |")
            for m in self.micro:
                print(f"| {m['name']} | {m['value']:,.1f} {m['unit']} | {m['note']} |")
        if self.profile_text:
            print("\n### Where the time goes (cProfile, measurement window only)\n")
            print("\n\n".join(self.profile_text))
        document = {
            "started_at": self.started.isoformat(),
            "interrupted": interrupted,
            "command": [sys.executable, "-m", "bench.run", *sys.argv[1:]],
            "machine": self.machine | {"postgresql": stack.postgres_version if stack else None},
            "parameters": params,
            "database": stack.seeded if stack else {},
            "scenarios": {
                s.name: {
                    "description": s.description,
                    "query": s.query,
                    "gateway": s.gateway,
                    "patches": list(s.patches),
                    "targets": list(s.targets),
                    "prime": s.prime,
                }
                for s in self.scenarios
            },
            "checks": self.checks,
            "summary": [s.as_json() for s in summaries],
            "runs": [r.as_json() for r in self.runs],
            "profiles": self.profiles,
            "micro": self.micro,
        }
        results_dir: Path = args.results_dir
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"{self.started:%Y%m%dT%H%M%S}-bench.json"
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        return path


def select_scenarios(spec: str) -> list[Scenario]:
    if spec.strip() == "all":
        return list(SCENARIOS.values())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise BenchError(f"unknown scenario(s) {', '.join(unknown)}; have {', '.join(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM does what Ctrl-C does: inside ``asyncio.Runner.run`` that is the runner's own
    SIGINT handler (it cancels the running load cleanly), elsewhere KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


def cache_hit_ratios(port: int, token: str) -> dict[str, float]:
    """Each agency's cache hit ratio since the gateway started, from Query.agencies (the
    open /readyz shows states only)."""
    query = json.dumps({"query": "{ agencies { code cacheHitRatio } }"}).encode()
    status, body = http_post_json(f"http://127.0.0.1:{port}/graphql", query, token)
    if status != 200 or not isinstance(body, dict) or not body.get("data"):
        return {}
    return {
        agency["code"]: agency["cacheHitRatio"]
        for agency in body["data"]["agencies"]
        if agency.get("cacheHitRatio") is not None
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for scenario in SCENARIOS.values():
            default = " (default)" if scenario.name in DEFAULT_SCENARIOS else ""
            print(f"{scenario.name}{default}: {scenario.description}")
        return 0
    try:
        scenarios = select_scenarios(args.scenarios)
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        if not targets or any(t not in TARGETS for t in targets):
            raise BenchError(f"--targets takes a subset of {','.join(TARGETS)}")
        if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1 or args.rounds < 1:
            raise BenchError("--duration, --concurrency and --rounds must be positive")
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    # Started in the background, SIGINT may be ignored: make Ctrl-C/SIGINT and SIGTERM work.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    bench = Bench(args, scenarios)
    interrupted = False
    code = 0
    with tempfile.TemporaryDirectory(prefix="gwbench-") as workdir:
        try:
            # The stack (which runs its own short asyncio.run calls) outlives the runner.
            with (
                BenchStack(args.admin_dsn, Path(workdir), say) as stack,
                asyncio.Runner(loop_factory=_loop_factory()) as runner,
            ):
                if args.keep_logs:
                    stamp = f"{bench.started:%Y%m%dT%H%M%S}"
                    stack.logs_to = Path(args.results_dir) / f"{stamp}-logs"
                say("setting up…")
                bench.execute(stack, runner)
                say("tearing down…")
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            code = 1
        except KeyboardInterrupt:
            say("\ninterrupted; everything it started has been stopped")
            interrupted, code = True, 130
    if bench.runs:
        path = bench.report(interrupted)
        say(f"\nresults: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
