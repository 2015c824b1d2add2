"""Summaries of a cProfile dump of the gateway process: where its CPU time goes.

Own time (``tottime``) is grouped by *area* (the library or project package a function lives
in) and listed per function; cumulative time is given for a few landmark functions (parse,
validate, execute, JSON, the agency calls). cProfile inflates call-heavy pure-Python code
relative to C, so read shares as "roughly", not to the percent.
"""

from __future__ import annotations

import pstats
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (area label, landmark function regex on "file:function") for cumulative times.
LANDMARKS: tuple[tuple[str, str], ...] = (
    ("GatewayView.__call__ (whole /graphql request)", r"gateway/view\.py:__call__$"),
    ("authenticate (JWT)", r"gateway/auth\.py:authenticate$"),
    ("strawberry AsyncBaseHTTPView.run", r"strawberry/http/async_base_view\.py:run$"),
    ("Schema.execute (strawberry)", r"strawberry/schema/schema\.py:execute$"),
    ("parse (graphql-core)", r"graphql/language/parser\.py:parse$"),
    ("validate (graphql-core)", r"graphql/validation/validate\.py:validate$"),
    ("execute_operation (graphql-core)", r"graphql/execution/execute\.py:execute_operation$"),
    ("planned field resolvers (every field)", r"gateway/access\.py:resolved$"),
    ("process_result (audit wait, errors)", r"gateway/view\.py:process_result$"),
    ("AuditLog._write (group commit)", r"gateway/audit\.py:_write$"),
    ("DataLoader dispatch_batch", r"strawberry/dataloader\.py:dispatch_batch$"),
    ("Agency.fetch (gateway)", r"gateway/agencies\.py:fetch$"),
    ("SQLAdapter.fetch", r"adapters/sql\.py:fetch$"),
    ("HTTPAdapter.fetch", r"adapters/http\.py:fetch$"),
    ("httpx AsyncClient.send", r"httpx/_client\.py:send$"),
    ("record_from_mapping", r"adapters/records\.py:record_from_mapping$"),
    ("json.dumps", r"json/__init__\.py:dumps$"),
    ("json.loads", r"json/__init__\.py:loads$"),
    ("logging (Logger.callHandlers)", r"logging/__init__\.py:callHandlers$"),
)


_SITE = re.compile(r"site-packages/([^/]+)/")
_STDLIB = re.compile(r"/python3\.\d+/([^/]+?)(?:\.py)?(?:/|$)")
_PROJECT = ("gateway", "adapters", "resolvers", "schema", "bench", "tests")
_IDLE = re.compile(r"run_until_complete|run_forever|select\.epoll|'poll'|method 'control'")


def area(filename: str, function: str) -> str:
    """Which library or package a profiled function belongs to."""
    if filename == "~":  # a C function: the name says whose
        text = function
        for lib in (
            "asyncpg",
            "uvloop",
            "httptools",
            "_json",
            "orjson",
            "_contextvars",
            "_asyncio",
        ):
            if lib in text:
                return {"_json": "json (C)", "_asyncio": "asyncio (C)"}.get(lib, lib)
        if _IDLE.search(text):
            return "event loop (incl. idle)"
        return "builtins (C)"
    match = _SITE.search(filename)
    if match:
        package = match.group(1)
        return package.removesuffix(".py")
    parts = Path(filename).parts
    for name in _PROJECT:
        if name in parts:
            return f"{name}/ (project)"
    match = _STDLIB.search(filename)
    if match:
        return f"stdlib {match.group(1)}"
    return "other"


@dataclass
class ProfileSummary:
    total_s: float
    idle_s: float
    areas: list[tuple[str, float]] = field(default_factory=list)  # own time, busy only
    top_own: list[dict[str, Any]] = field(default_factory=list)
    landmarks: list[tuple[str, float, int]] = field(default_factory=list)  # cum s, calls

    @property
    def busy_s(self) -> float:
        return self.total_s - self.idle_s

    def as_json(self) -> dict[str, Any]:
        return {
            "total_s": self.total_s,
            "idle_s": self.idle_s,
            "busy_s": self.busy_s,
            "areas": [{"area": a, "own_s": s} for a, s in self.areas],
            "top_own": self.top_own,
            "landmarks": [{"name": n, "cum_s": s, "calls": c} for n, s, c in self.landmarks],
        }

    def markdown(self, requests: int, top: int = 20) -> str:
        busy = self.busy_s or 1.0
        per_req = 1000 * busy / requests if requests else float("nan")
        lines = [
            f"Profiled busy CPU: {self.busy_s:.2f} s for {requests:,} requests "
            f"({per_req:.2f} ms/request under cProfile; event-loop idle "
            f"{self.idle_s:.2f} s excluded).",
            "",
            "| area | own time | share |",
            "| --- | ---: | ---: |",
        ]
        lines += [
            f"| {name} | {sec:.2f} s | {100 * sec / busy:.1f} % |"
            for name, sec in self.areas
            if sec / busy >= 0.005
        ]
        lines += [
            "",
            "| landmark (cumulative) | time | share | calls/request |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, sec, calls in self.landmarks:
            per = calls / requests if requests else float("nan")
            lines.append(f"| {name} | {sec:.2f} s | {100 * sec / busy:.1f} % | {per:.2f} |")
        lines += [
            "",
            "| function (own time) | own | share | calls/request |",
            "| --- | ---: | ---: | ---: |",
        ]
        for row in self.top_own[:top]:
            per = row["calls"] / requests if requests else float("nan")
            lines.append(
                f"| `{row['function']}` | {row['own_s']:.2f} s | "
                f"{100 * row['own_s'] / busy:.1f} % | {per:.1f} |"
            )
        return "\n".join(lines)


def _short(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    match = _SITE.search(filename)
    if match:
        filename = filename[match.start(1) :]
    else:
        for name in _PROJECT:
            marker = f"/{name}/"
            if marker in filename:
                filename = filename[filename.index(marker) + 1 :]
                break
        else:
            std = _STDLIB.search(filename)
            if std:
                filename = filename[std.start(1) :]
    return f"{filename}:{line}:{function}"


def summarize(path: Path, top: int = 40) -> ProfileSummary:
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    areas: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    total = idle = 0.0
    landmark_re = [(name, re.compile(pattern)) for name, pattern in LANDMARKS]
    landmark_hits: dict[str, tuple[float, int]] = {}
    for (filename, line, function), (_cc, calls, own, cum, _callers) in stats.items():
        total += own
        kind = area(filename, function)
        if kind == "event loop (incl. idle)":
            idle += own
            continue
        areas[kind] = areas.get(kind, 0.0) + own
        rows.append(
            {
                "function": _short(filename, line, function),
                "area": kind,
                "own_s": own,
                "cum_s": cum,
                "calls": calls,
            }
        )
        key = f"{filename}:{function}"
        for name, pattern in landmark_re:
            if pattern.search(key):
                seen = landmark_hits.get(name, (0.0, 0))
                landmark_hits[name] = (seen[0] + cum, seen[1] + calls)
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return ProfileSummary(
        total_s=total,
        idle_s=idle,
        areas=sorted(areas.items(), key=lambda kv: kv[1], reverse=True),
        top_own=rows[:top],
        landmarks=[(name, *landmark_hits[name]) for name, _ in LANDMARKS if name in landmark_hits],
    )
