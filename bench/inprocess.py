"""The gateway app measured in this process: requests through httpx's ASGI transport (no
sockets, no load generator), this process's CPU time per request (``time.process_time``),
and what the cycle collector did meanwhile. Shared by ``bench.plans_cpu`` and
``bench.pipeline_cpu``."""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import json
import logging
import time
import tomllib
from collections.abc import Callable
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from bench.scenarios import CACHE_OFF, FULL_QUERY, HOUSEHOLD_QUERY
from bench.stack import BenchStack, to_toml
from gateway import logs
from gateway.config import Config, from_dict


class Pauses:
    """The cycle collector's runs while ``on``: their durations."""

    def __init__(self) -> None:
        self.on = False
        self.durations: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.durations.append(time.perf_counter() - self._started)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


async def measure(
    app: Any,
    token: str,
    bodies: list[bytes],
    rounds: int,
    n: int,
    *,
    concurrency: int = 1,
    pauses: Pauses | None = None,
    profile: cProfile.Profile | None = None,
    before_round: Callable[[int], None] | None = None,
) -> list[float]:
    """Milliseconds of CPU per request, one figure per round of ``n`` requests (``bodies``
    in turn, ``concurrency`` in flight), after one request of each body (warm-up, and the
    agency cache primed where it is on). ``before_round(i)`` runs before round ``i`` (to
    switch something between rounds of the same app)."""
    out = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            for body in bodies:
                response = await http.post("/graphql", content=body, headers=headers)
                assert response.status_code == 200, response.text
                assert "errors" not in response.json(), response.text

            async def client(first: int) -> None:
                for i in range(first, n, concurrency):
                    await http.post("/graphql", content=bodies[i % len(bodies)], headers=headers)

            for i in range(rounds):
                if before_round is not None:
                    before_round(i)
                if profile is not None:
                    profile.enable()
                if pauses is not None:
                    pauses.on = True
                started = time.process_time()
                await asyncio.gather(*(client(k) for k in range(concurrency)))
                out.append((time.process_time() - started) / n * 1000)
                if pauses is not None:
                    pauses.on = False
                if profile is not None:
                    profile.disable()
    return out


def request_log_to_memory() -> None:
    """The request log as a deployment writes it (JSON, the RRN filter), into a string
    buffer: its cost counted, nothing printed."""
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logs.formatter("json"))
    logs.install_filter(handler)
    request_log = logging.getLogger("gateway.request")
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


def seeded_scenarios(
    stack: BenchStack, residents: int, cold: bool
) -> tuple[Config, dict[str, list[bytes]]]:
    """Seed ``residents`` into ``stack``; the gateway's config (the agency cache off when
    ``cold``, else in memory) and the request bodies of the in-process scenarios: ``full`` over
    100 residents and ``household-rotating`` over 50 households (``-warm`` when not cold)."""
    stack.setup(residents)
    sample, _, households = stack.keys(100)
    suffix = "" if cold else "-warm"
    overrides = CACHE_OFF if cold else {"cache": {"backend": "memory"}}
    config = from_dict(tomllib.loads(to_toml(stack.gateway_config(overrides))))
    scenarios = {
        f"full{suffix}": (FULL_QUERY, sample),
        f"household-rotating{suffix}": (HOUSEHOLD_QUERY, households[:50]),
    }
    return config, {
        name: [json.dumps({"query": query, "variables": {"rrn": k}}).encode() for k in keys]
        for name, (query, keys) in scenarios.items()
    }
