"""Rate limits per principal: requests and cost per window.

A principal's key is its token's ``sub`` (``sub:<sub>``): every token of one subject shares
one budget, whatever its roles. A request whose token fails is charged to the client's address
(``ip:<addr>``), so guessing tokens is limited too.

Windows are fixed and start at a key's first charge: the counters live ``rate_window_s``
seconds, then start again from zero. ``Retry-After`` is the time left in the window.
With ``[cache] backend = "redis"`` the counters are in Redis, shared by every replica and
updated atomically by one Lua script (HINCRBY both counters, set the expiry on the first
charge, return both and the time left); otherwise they are in this process.

Every request is charged (``requests``) when it arrives, after authentication and before
parsing, refused ones included; its cost is charged after execution: the request context's
``cost`` when the cost analysis put one there, else 1. A request is refused when its
principal is past either limit. A Redis that fails lets requests through (logged): the
limiter protects capacity, and an outage of it should not take the gateway down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateway.config import CacheConfig, LimitsConfig
from gateway.errors import RateLimited

log = logging.getLogger(__name__)

REDIS_OP_TIMEOUT_S = 0.25
MEMORY_MAX_KEYS = 100_000

# KEYS[1] the counter hash; ARGV requests, cost, window in ms.
CHARGE_SCRIPT = """
local r = redis.call('HINCRBY', KEYS[1], 'r', ARGV[1])
local c = redis.call('HINCRBY', KEYS[1], 'c', ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  ttl = tonumber(ARGV[3])
end
return {r, c, ttl}
"""


@dataclass(frozen=True, slots=True)
class Usage:
    """A key's counters in its current window, after a charge."""

    requests: int
    cost: int
    reset_in_s: float


class RateLimiter:
    def __init__(self, limits: LimitsConfig, cache: CacheConfig) -> None:
        self.max_requests = limits.rate_requests
        self.max_cost = limits.rate_cost
        self.window_s = limits.rate_window_s
        self.prefix = f"{cache.namespace}:rate:"
        self._redis: aioredis.Redis | None = None
        self._script: Any = None
        self._memory: dict[str, list[float]] = {}  # key -> [requests, cost, window end]
        self._healthy = True
        if self.enabled and cache.backend == "redis":
            self._redis = aioredis.Redis.from_url(
                cache.url,
                socket_timeout=REDIS_OP_TIMEOUT_S,
                socket_connect_timeout=REDIS_OP_TIMEOUT_S,
            )
            self._script = self._redis.register_script(CHARGE_SCRIPT)

    @property
    def enabled(self) -> bool:
        return self.max_requests > 0 or self.max_cost > 0

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def charge(self, key: str, requests: int = 1, cost: int = 0) -> Usage | None:
        """Add to a key's counters; its usage after the charge (None when not limited, or the
        backend failed)."""
        if not self.enabled:
            return None
        if self._redis is None:
            return self._charge_memory(key, requests, cost)
        try:
            r, c, ttl_ms = await self._script(
                keys=[self.prefix + key], args=[requests, cost, self.window_s * 1000]
            )
        except Exception as exc:
            if self._healthy:
                log.warning("rate limiter: Redis failed, not limiting until it answers: %s",
                            type(exc).__name__)  # fmt: skip
            self._healthy = False
            return None
        if not self._healthy:
            log.warning("rate limiter: Redis answers again")
            self._healthy = True
        return Usage(int(r), int(c), int(ttl_ms) / 1000)

    async def admit(self, key: str, requests: int = 1, cost: int = 0) -> None:
        """Charge a request's arrival (and its measured cost, before it runs); raise
        RateLimited when the key is over a limit."""
        usage = await self.charge(key, requests=requests, cost=cost)
        if usage is not None and self.over(usage):
            raise RateLimited(max(1, math.ceil(usage.reset_in_s)))

    def over(self, usage: Usage) -> bool:
        return (0 < self.max_requests < usage.requests) or (0 < self.max_cost < usage.cost)

    def _charge_memory(self, key: str, requests: int, cost: int) -> Usage:
        now = time.monotonic()
        entry = self._memory.get(key)
        if entry is None or entry[2] <= now:
            if len(self._memory) >= MEMORY_MAX_KEYS:
                self._forget_expired(now)
            entry = self._memory[key] = [0, 0, now + self.window_s]
        entry[0] += requests
        entry[1] += cost
        return Usage(int(entry[0]), int(entry[1]), entry[2] - now)

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, v in self._memory.items() if v[2] <= now]:
            del self._memory[key]
        if len(self._memory) >= MEMORY_MAX_KEYS:  # all live: drop the oldest windows
            for key in list(self._memory)[: MEMORY_MAX_KEYS // 10]:
                del self._memory[key]


def principal_key(sub: str) -> str:
    return f"sub:{sub}"


def address_key(host: str | None) -> str:
    return f"ip:{host or 'unknown'}"
