"""The cache layer: fresh answers from the agency cache, stale copies kept for when the agency
fails, and what provenance may say about a value's age. The store itself (memory or Redis)
is ``gateway.cache.AgencyCache``; a cache that fails is a miss."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from adapters.records import Dataset
from gateway import observe
from gateway.cache import AgencyCache, Entry
from gateway.config import AgencyConfig
from gateway.errors import GatewayError
from gateway.layers import AgencyStats, Answer, Outcome, Sourced


class CacheLayer:
    def __init__(self, config: AgencyConfig, cache: AgencyCache | None, stats: AgencyStats) -> None:
        self.code = config.code
        self.config = config
        self.cache = cache if config.cache else None
        self.stats = stats

    @property
    def ttl(self) -> int:
        """How long anything about this agency stays in the cache, fresh or stale."""
        return max(self.config.stale_ttl_s, self.config.cache_ttl_s, 1)

    async def lookup(
        self, dataset: Dataset, keys: Sequence[str]
    ) -> tuple[dict[str, Outcome], dict[str, Entry], list[str]]:
        """(fresh answers by key, stale copies by key, the keys to ask the agency for)."""
        if self.cache is None:
            return {}, {}, list(keys)
        fresh_s, stale_s = self.config.cache_ttl_s, self.config.stale_ttl_s
        entries = await self.cache.get_many(
            self.code, dataset, keys, max_age_s=max(fresh_s, stale_s)
        )
        now = time.time()
        found: dict[str, Outcome] = {}
        stale: dict[str, Entry] = {}
        pending: list[str] = []
        for key, entry in zip(keys, entries, strict=True):
            age = None if entry is None else now - entry.fetched_at
            if entry is not None and age is not None and age < fresh_s:
                found[key] = Sourced(entry.value, self.code, self.no_older_than(now))
            else:
                if entry is not None and age is not None and age < stale_s:
                    stale[key] = entry
                pending.append(key)
        self._counted(dataset, len(keys) - len(pending), len(pending))
        return found, stale, pending

    def peek(self, dataset: Dataset, key: str) -> Sourced | None:
        """A fresh answer for ``key`` from the in-process cache, without awaiting (counted
        as a hit); None otherwise, counting nothing: ``lookup`` decides and counts then."""
        if self.cache is None:
            return None
        fresh_s = self.config.cache_ttl_s
        entry = self.cache.peek(self.code, dataset, key, fresh_s)
        if entry is None:
            return None
        now = time.time()
        self._counted(dataset, 1, 0)
        return Sourced(entry.value, self.code, self.no_older_than(now))

    def _counted(self, dataset: Dataset, hits: int, misses: int) -> None:
        """The one place cache hits and misses are counted."""
        self.stats.cache_hits += hits
        self.stats.cache_misses += misses
        observe.cache_lookup(self.code, dataset.name, hits, misses)

    async def store(
        self, dataset: Dataset, keys: Sequence[str], answers: Sequence[Answer], asked_at: float
    ) -> None:
        """Keep the agency's answers (never its errors); ``asked_at``: when it was asked."""
        if self.cache is None:
            return
        fresh: list[tuple[str, Any]] = [
            (key, answer)
            for key, answer in zip(keys, answers, strict=True)
            if not isinstance(answer, GatewayError)
        ]
        await self.cache.set_many(self.code, dataset, fresh, self.ttl, asked_at)

    def outcome(self, answer: Answer, stale: Entry | None, now: float) -> Outcome:
        """What a field gets for an agency's answer: the value with its provenance, the
        stale copy when the agency failed and one is kept, else the error."""
        if isinstance(answer, GatewayError):
            return answer if stale is None else self._stale(stale)
        return Sourced(answer, self.code, self.no_older_than(now))

    def no_older_than(self, now: float, *, stale: bool = False) -> float:
        """What provenance says of a value's age: the start of the minute from which every
        value this agency serves is younger. A cached value and a fresh read get the same
        answer, so ``asOf`` never tells whether, or when, someone else read it before.
        Without a cache every answer is the caller's own read: its time is no secret."""
        if self.cache is None:
            return now
        age = self.config.stale_ttl_s if stale else self.config.cache_ttl_s
        return (now - age) // 60 * 60

    def _stale(self, entry: Entry) -> Sourced:
        self.stats.stale_served += 1
        observe.agency_stale(self.code)
        return Sourced(entry.value, self.code, self.no_older_than(time.time(), stale=True), True)
