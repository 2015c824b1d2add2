"""What machine the benchmark ran on, and CPU accounting of the processes under test.

CPU time comes from ``/proc/<pid>/stat`` (utime + stime) and the machine's ``/proc/stat``; both
are Linux-only, and every reader returns ``None``/empty instead of failing elsewhere.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LIBRARIES = (
    "strawberry-graphql",
    "graphql-core",
    "starlette",
    "uvicorn",
    "asyncpg",
    "httpx",
    "uvloop",
    "httptools",
    "orjson",
)

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(root: Path) -> dict[str, Any]:
    """The commit benchmarked and how many files differed from it (read-only git calls)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {}
    ours = ("bench/", "BENCHMARKS.md")
    changed = [line[3:] for line in status if not line[3:].startswith(ours)]
    return {"commit": commit, "uncommitted_changes": changed}


def machine_info(root: Path) -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        memory_kb = int(
            next(
                line.split()[1]
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")
            )
        )
    except (OSError, StopIteration, ValueError):
        memory_kb = 0
    return {
        "nproc": affinity or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "libraries": library_versions(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git": git_revision(root),
    }


# --------------------------------------------------------------------------------------------
# CPU accounting


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a server's workers), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                todo.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children")
                            .read_text().split())  # fmt: skip
            except OSError:
                continue
    return found


def pids_named(command: str, cmdline_contains: str = "") -> list[int]:
    """Every process whose ``comm`` is ``command`` and whose command line contains
    ``cmdline_contains`` (a PostgreSQL backend shows its database there)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != command:
                continue
            if (
                cmdline_contains
                and cmdline_contains.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes()
            ):
                continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def machine_cpu() -> tuple[float, float, float] | None:
    """Seconds of (busy, total, steal) CPU time over all cores since boot."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) / _TICKS for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    steal = values[7] if len(values) > 7 else 0.0
    total = sum(values[:8])
    return total - idle - steal, total, steal


@dataclass
class CpuSnapshot:
    at: float
    groups: dict[str, dict[int, float]] = field(default_factory=dict)
    machine: tuple[float, float, float] | None = None


class CpuProbe:
    """Snapshots CPU time of named process groups; :meth:`usage` turns two into percentages."""

    def __init__(self, groups: Mapping[str, Callable[[], Iterable[int]]]) -> None:
        self.groups = groups

    def snapshot(self) -> CpuSnapshot:
        snap = CpuSnapshot(at=time.perf_counter(), machine=machine_cpu())
        for name, pids in self.groups.items():
            times: dict[int, float] = {}
            for pid in pids():
                used = process_cpu(pid)
                if used is not None:
                    times[pid] = used
            snap.groups[name] = times
        return snap

    @staticmethod
    def usage(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, Any]:
        """CPU seconds per group over the interval, and the machine's busy/steal share."""
        wall = end.at - start.at
        out: dict[str, Any] = {"wall_s": wall, "cpu_s": {}}
        for name, times in end.groups.items():
            before = start.groups.get(name, {})
            # A process born inside the interval counts whole; one that died is lost.
            out["cpu_s"][name] = sum(t - before.get(pid, 0.0) for pid, t in times.items())
        if start.machine and end.machine:
            busy = end.machine[0] - start.machine[0]
            total = end.machine[1] - start.machine[1]
            steal = end.machine[2] - start.machine[2]
            if total > 0:
                out["machine_busy_pct"] = 100 * busy / total
                out["machine_steal_pct"] = 100 * steal / total
        return out


def serving_pids(port: int, attempts: int = 8) -> set[int]:
    """The processes that answer new connections to ``port`` (each worker of a server that
    shares one listening socket among several): ``attempts`` connections opened at once, a
    request on each, and ``ss`` asked who holds them."""
    import re
    import socket
    import subprocess

    conns = []
    try:
        for _ in range(attempts):
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            conns.append(conn)
        for conn in conns:
            conn.recv(4096)
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}
    finally:
        for conn in conns:
            conn.close()


def wait_for_workers(port: int, workers: int, timeout: float = 60.0) -> None:
    """Return once ``workers`` processes accept connections on ``port`` (a worker that is still
    starting accepts none, and keep-alive connections opened then all stay with the first)."""
    deadline = time.monotonic() + timeout
    while len(serving_pids(port)) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {workers} workers serve port {port}")
        time.sleep(0.5)
