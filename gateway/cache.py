"""The agency cache: the one module that knows aiocache.

Entries hold agency records (never authorization decisions) with the time they were
fetched, keyed ``<namespace>:<schema version>:<agency>:<dataset>:<key>``. An entry is *fresh*
within the agency's ``cache_ttl_s`` and may be served *stale* within ``stale_ttl_s`` while the
agency is failing.
In memory (the default) the cache is bounded; with Redis it is shared by every gateway process.
A cache that fails is a miss, never an error: the gateway keeps serving from the agencies.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from aiocache import RedisCache
from aiocache.serializers import JsonSerializer

from adapters.records import Dataset, record_from_mapping, record_to_json
from gateway.config import CacheConfig
from gateway.errors import CacheUnavailableError

log = logging.getLogger(__name__)

#: Bump when a record's shape changes, so old entries are never read as new ones.
SCHEMA_VERSION = "v1"
MEMORY_MAX_ENTRIES = 200_000
TOMBSTONE = ":invalidated"
CACHE_DOWN = "The cache could not apply the invalidation; send it again."
REDIS_OP_TIMEOUT_S = 0.25


@dataclass(frozen=True, slots=True)
class Entry:
    value: Any  # a record, a tuple of records, or None (the agency has none)
    fetched_at: float


class MemoryStore:
    """The in-process backend: bounded, with real TTLs, O(1) per key.

    Entries live in one dict in order of last write (a write re-inserts its key), each with
    its expiry time. Past ``max_entries`` the oldest write goes: the dict's first key, O(1)
    (aiocache's memory backend has no bound, and trimming it copied every key per write).
    An expired entry is never answered; it is dropped when read, and each write also drops
    expired entries from the oldest end, so tombstones and stale entries do not linger.
    It offers the few aiocache calls the gateway makes, without their per-call machinery.
    """

    #: Expired entries dropped from the oldest end per write, at most.
    SWEEP = 4

    def __init__(self, max_entries: int, clock: Any = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._store: dict[str, tuple[Any, float]] = {}

    def __len__(self) -> int:
        return len(self._store)

    async def get(self, key: str) -> Any:
        return self._get(key, self._clock())

    async def multi_get(self, keys: Sequence[str]) -> list[Any]:
        now = self._clock()
        return [self._get(key, now) for key in keys]

    def _get(self, key: str, now: float) -> Any:
        item = self._store.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self._store[key]
            return None
        return item[0]

    async def multi_set(self, pairs: Sequence[tuple[str, Any]], ttl: float | None = None) -> bool:
        store = self._store
        now = self._clock()
        expires = now + ttl if ttl else float("inf")
        for key, value in pairs:
            store.pop(key, None)  # re-insert, so the order is by last write
            store[key] = (value, expires)
        for _ in range(self.SWEEP):
            oldest = next(iter(store), None)
            if oldest is None or store[oldest][1] > now:
                break
            del store[oldest]
        while len(store) > self.max_entries:
            del store[next(iter(store))]
        return True

    async def delete(self, key: str) -> int:
        return 0 if self._store.pop(key, None) is None else 1

    async def clear(self, namespace: str | None = None) -> bool:
        if namespace is None:
            self._store.clear()
        else:
            # As aiocache's backends: the keys under ``namespace:`` (clearing agency nts
            # leaves nts2's keys alone).
            prefix = f"{namespace}:"
            for key in [k for k in self._store if k.startswith(prefix)]:
                del self._store[key]
        return True

    async def close(self) -> None:
        self._store.clear()


def _later(tomb: Any, cleared: Any) -> Any:
    """The later of a key's tombstone and its agency's (either may be None)."""
    if cleared is None:
        return tomb
    if tomb is None:
        return cleared
    return max(float(tomb), float(cleared))


def _backend(config: CacheConfig, max_entries: int) -> Any:
    if config.backend == "redis":
        url = urlparse(config.url)
        return RedisCache(
            endpoint=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            db=int((url.path or "/0").lstrip("/") or 0),
            password=url.password,
            serializer=JsonSerializer(),
            timeout=REDIS_OP_TIMEOUT_S,
            create_connection_timeout=REDIS_OP_TIMEOUT_S,
        )
    return MemoryStore(max_entries)


async def _close(cache: Any) -> None:
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        # aiocache's close() warns about a deprecated redis call; nothing to act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        await cache.close()


class TextCache:
    """Short texts by key (APQ documents), in the same backend as the agency cache: with
    Redis every gateway process sees what one of them stored. Bounded in memory; a failing
    backend is a miss (and a store that did not happen), never an error."""

    def __init__(self, config: CacheConfig, kind: str, max_entries: int) -> None:
        self.backend = config.backend
        self.prefix = f"{config.namespace}:{kind}:"
        self._cache = _backend(config, max_entries)

    async def get(self, key: str) -> str | None:
        try:
            value = await self._cache.get(self.prefix + key)
        except Exception as exc:
            log.warning("text cache (%s) failed: %s", self.backend, type(exc).__name__)
            return None
        return value if isinstance(value, str) else None

    async def set(self, key: str, value: str, ttl_s: int) -> bool:
        try:
            await self._cache.multi_set([(self.prefix + key, value)], ttl=ttl_s)
        except Exception as exc:
            log.warning("text cache (%s) failed: %s", self.backend, type(exc).__name__)
            return False
        return True

    async def close(self) -> None:
        await _close(self._cache)


class AgencyCache:
    def __init__(self, config: CacheConfig, max_entries: int = MEMORY_MAX_ENTRIES) -> None:
        self.backend = config.backend
        self.namespace = config.namespace
        self.healthy = True
        self._cache = _backend(config, max_entries)

    def key(self, agency: str, dataset: str, key: str) -> str:
        return f"{self.namespace}:{SCHEMA_VERSION}:{agency}:{dataset}:{key}"

    async def get_many(
        self, agency: str, dataset: Dataset, keys: Sequence[str], max_age_s: float
    ) -> list[Entry | None]:
        """Entries younger than ``max_age_s`` and than their key's last invalidation (or
        None), one per key, in order. One round trip: entries and tombstones together."""
        if not keys:
            return []
        names = [self.key(agency, dataset.name, k) for k in keys]
        # Invalidations name configured datasets: a part's entries (Dataset.narrowed) obey
        # the tombstones of the dataset they are a part of.
        tombs = [f"{self.key(agency, dataset.base, k)}{TOMBSTONE}" for k in keys]
        try:
            raw = await self._cache.multi_get([*names, *tombs, self._cleared_key(agency)])
        except Exception as exc:
            self._failed(exc)
            return [None] * len(keys)
        self._recovered()
        now = time.time()
        cleared = raw[-1]
        return [
            self._usable(dataset, item, _later(tomb, cleared), now, max_age_s)
            for item, tomb in zip(raw[: len(keys)], raw[len(keys) : -1], strict=True)
        ]

    def peek(self, agency: str, dataset: Dataset, key: str, max_age_s: float) -> Entry | None:
        """``get_many`` for one key, without awaiting: only the in-process store can answer
        so (None from any other backend, as from a miss). Same freshness and tombstone
        rules."""
        store = self._cache
        if not isinstance(store, MemoryStore):
            return None
        now = store._clock()
        name = self.key(agency, dataset.name, key)
        item = store._get(name, now)
        if item is None:
            return None
        tomb = store._get(f"{self.key(agency, dataset.base, key)}{TOMBSTONE}", now)
        cleared = store._get(self._cleared_key(agency), now)
        return self._usable(dataset, item, _later(tomb, cleared), time.time(), max_age_s)

    def _usable(
        self, dataset: Dataset, item: Any, tomb: Any, now: float, max_age_s: float
    ) -> Entry | None:
        """The entry stored as ``item``, if younger than ``max_age_s`` and than its key's
        last invalidation (``tomb``, when there was one)."""
        entry = self._decode(dataset, item)
        if entry is None or now - entry.fetched_at >= max_age_s:
            return None
        if tomb is not None and entry.fetched_at <= float(tomb):
            return None
        return entry

    async def set_many(
        self,
        agency: str,
        dataset: Dataset,
        items: Sequence[tuple[str, Any]],
        ttl_s: int,
        asked_at: float,
    ) -> None:
        """``asked_at`` is when the agency was asked: an invalidation after that time wins
        over this write, whichever process made it."""
        if not items:
            return
        pairs = [
            (self.key(agency, dataset.name, key), self._encode(dataset, Entry(value, asked_at)))
            for key, value in items
        ]
        try:
            await self._cache.multi_set(pairs, ttl=ttl_s)
        except Exception as exc:
            self._failed(exc)
        else:
            self._recovered()

    async def invalidate(
        self, agency: str, datasets: Sequence[str], keys: Sequence[str], ttl_s: int
    ) -> int:
        """Delete the entries and leave a tombstone per key, so that a read already in
        flight anywhere cannot write its older answer back. Raises CacheUnavailableError if this
        could not be done: the caller must not acknowledge an invalidation that did not
        happen."""
        names = [self.key(agency, dataset, key) for dataset in datasets for key in keys]
        now = time.time()
        deleted = 0
        try:
            await self._cache.multi_set([(f"{name}{TOMBSTONE}", now) for name in names], ttl=ttl_s)
            for name in names:
                deleted += int(await self._cache.delete(name))
        except Exception as exc:
            self._failed(exc)
            raise CacheUnavailableError(CACHE_DOWN) from exc
        self._recovered()
        return deleted

    async def clear_agency(self, agency: str, ttl_s: int) -> None:
        """Drop every entry of ``agency`` and leave one tombstone for all of them (kept
        ``ttl_s``, the entries' own TTL), so that a read already in flight cannot write its
        older answer back, as :meth:`invalidate` does per key."""
        try:
            await self._cache.multi_set([(self._cleared_key(agency), time.time())], ttl=ttl_s)
            await self._cache.clear(namespace=f"{self.namespace}:{SCHEMA_VERSION}:{agency}")
        except Exception as exc:
            self._failed(exc)
            raise CacheUnavailableError(CACHE_DOWN) from exc

    def _cleared_key(self, agency: str) -> str:
        # Beside the agency's namespace (``...:nts:``), not in it: clearing leaves this key.
        return f"{self.namespace}:{SCHEMA_VERSION}:{agency}~cleared"

    async def close(self) -> None:
        await _close(self._cache)

    def _encode(self, dataset: Dataset, entry: Entry) -> Any:
        if self.backend != "redis":
            return entry
        value = entry.value
        if value is None:
            encoded: Any = None
        elif dataset.many:
            encoded = [record_to_json(r) for r in value]
        else:
            encoded = record_to_json(value)
        return {"v": encoded, "t": entry.fetched_at}

    def _decode(self, dataset: Dataset, item: Any) -> Entry | None:
        if item is None:
            return None
        if isinstance(item, Entry):
            return item
        try:
            raw = item["v"]
            if raw is None:
                value: Any = None
            elif dataset.many:
                value = tuple(record_from_mapping(dataset.record, r) for r in raw)
            else:
                value = record_from_mapping(dataset.record, raw)
            return Entry(value, float(item["t"]))
        except (KeyError, TypeError, ValueError):
            return None  # an entry of another shape: a miss

    def _failed(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.healthy:
            log.warning(
                "agency cache (%s) failed, serving from the agencies until it recovers: %s",
                self.backend,
                reason,
            )
        self.healthy = False

    def _recovered(self) -> None:
        if not self.healthy:
            log.warning("agency cache (%s) is answering again", self.backend)
        self.healthy = True
