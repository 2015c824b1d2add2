"""The configured agencies: adapters found by entry point, wrapped with the gateway's
timeout and concurrency limit, and counted."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from adapters.aggregates import AggregateQuery, check_answer
from adapters.base import Adapter, AgencyFailure, supports_aggregates
from adapters.records import Dataset
from adapters.trust import TrustError, check_agency, redact
from gateway import federation, observe
from gateway.breaker import CircuitBreaker
from gateway.cache import AgencyCache, Entry
from gateway.config import DEFAULT_DATASETS, AgencyConfig, Config, ConfigError, sources
from gateway.errors import AgencyError, AgencyTimeout, GatewayError
from gateway.logs import mask_rrns

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gateway.adapters"


def adapter_classes() -> dict[str, type[Adapter]]:
    """Every adapter kind installed, ours and integrators' alike."""
    found: dict[str, type[Adapter]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            raise ConfigError(f"entry point {ep.name} = {ep.value} is not an Adapter subclass")
        found[ep.name] = cls
    return found


def check_adapters(config: Config, kinds: Mapping[str, type[Adapter]] | None = None) -> None:
    """Every agency's kind is installed and its adapter serves the datasets it is given
    (``Adapter.datasets``); raises ConfigError naming the first that is not."""
    kinds = adapter_classes() if kinds is None else kinds
    found = sources(config, complete=False)
    for code, agency in config.agencies.items():
        cls = kinds.get(agency.kind)
        if cls is None:
            raise ConfigError(
                f"[agencies.{code}] kind {agency.kind!r} is not installed "
                f"(installed: {', '.join(sorted(kinds))})"
            )
        try:  # TLS, OAuth2 and secret references: files exist, references resolve
            check_agency(agency.kind, code, adapter_settings(agency))
        except TrustError as exc:
            raise ConfigError(str(exc)) from None
        given = [ds for ds, owner in found.items() if owner == code]
        # A GraphQL subgraph serves one dataset, named after its code (gateway.subgraph).
        served = frozenset({code}) if agency.kind == "graphql" else cls.datasets
        refused = [ds for ds in given if ds not in served]
        if refused:
            offered = ", ".join(sorted(served)) or "none"
            raise ConfigError(
                f"[agencies.{code}]: kind {agency.kind!r} does not serve {', '.join(refused)} "
                f"(it serves: {offered})"
            )


def unserved_name(dataset: str) -> str:
    """The agency named in errors for a dataset no agency serves: its default owner."""
    return next((code for code, names in DEFAULT_DATASETS.items() if dataset in names), dataset)


@dataclass
class AgencyStats:
    calls: int = 0
    keys: int = 0
    failures: int = 0
    timeouts: int = 0
    retries: int = 0
    rejected: int = 0  # answered at once because the circuit was open
    stale_served: int = 0
    coalesced: int = 0  # calls that carried the keys of several requests
    cache_hits: int = 0
    cache_misses: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Sourced:
    """An agency's answer for one key, and where and when it came from."""

    value: Any
    agency: str
    #: The value was read from the agency no earlier than this (epoch seconds). For a cached
    #: agency it is a bound, never the read time itself, which would tell one caller when
    #: another looked the resident up (see ``Agency.no_older_than``).
    as_of: float
    stale: bool = False


Outcome = Sourced | GatewayError


@dataclass
class _Waiting:
    """Keys of several requests waiting together for a free slot (see Agency._coalesced)."""

    keys: list[str]
    done: asyncio.Future[list[Any]]
    requests: int = 1


class _Queued(AgencyTimeout):
    """Timed out waiting for a free slot in front of the agency (its breaker is not told)."""


BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0


class Agency:
    """One agency as the gateway uses it: cache, single flight, circuit breaker, retries,
    a timeout per attempt and a FIFO concurrency limit in front of its adapter."""

    def __init__(self, config: AgencyConfig, adapter: Adapter, cache: AgencyCache | None) -> None:
        self.code = config.code
        self.config = config
        self.adapter = adapter
        self.cache = cache if config.cache else None
        self.timeout = config.timeout_ms / 1000
        # asyncio.Semaphore wakes waiters in FIFO order, which keeps tail latency flat when
        # many requests queue for a small pool.
        self.limit = asyncio.Semaphore(config.max_concurrency)
        self.breaker = CircuitBreaker(
            threshold=int(config.settings.get("breaker_threshold", 5)),
            reset_after_s=float(config.settings.get("breaker_reset_s", 10)),
        )
        self.stats = AgencyStats()
        self._inflight: dict[tuple[str, str], asyncio.Future[Outcome]] = {}
        self._waiting: dict[str, _Waiting] = {}

    async def fetch(
        self, dataset: Dataset, keys: Sequence[str], deadline: float | None = None
    ) -> list[Outcome]:
        """One outcome per key, in order. ``deadline`` is the request's (monotonic clock)."""
        results: dict[str, Outcome] = {}
        stale: dict[str, Entry] = {}
        pending = list(keys)
        if self.cache is not None:
            fresh_s, stale_s = self.config.cache_ttl_s, self.config.stale_ttl_s
            entries = await self.cache.get_many(
                self.code, dataset, keys, max_age_s=max(fresh_s, stale_s)
            )
            now = time.time()
            pending = []
            for key, entry in zip(keys, entries, strict=True):
                age = None if entry is None else now - entry.fetched_at
                if entry is not None and age is not None and age < fresh_s:
                    results[key] = Sourced(entry.value, self.code, self.no_older_than(now))
                else:
                    if entry is not None and age is not None and age < stale_s:
                        stale[key] = entry
                    pending.append(key)
            self.stats.cache_hits += len(keys) - len(pending)
            self.stats.cache_misses += len(pending)
            observe.cache_lookup(self.code, dataset.name, len(keys) - len(pending), len(pending))

        # Single flight: a key another request is already fetching is awaited, not re-asked.
        waiting = {k: f for k in pending if (f := self._inflight.get((dataset.name, k)))}
        mine = [k for k in pending if k not in waiting]
        if mine:
            results.update(await self._fetch_once(dataset, mine, deadline, stale))
        for key, future in waiting.items():
            outcome = await asyncio.shield(future)
            if isinstance(outcome, GatewayError) and key in stale:
                outcome = self._stale(stale[key])
            results[key] = outcome
        return [results[key] for key in keys]

    async def _fetch_once(
        self, dataset: Dataset, keys: list[str], deadline: float | None, stale: dict[str, Entry]
    ) -> dict[str, Outcome]:
        loop = asyncio.get_running_loop()
        futures = {key: loop.create_future() for key in keys}
        for key, future in futures.items():
            self._inflight[(dataset.name, key)] = future
        results: dict[str, Outcome] = {}
        asked_at = time.time()
        try:
            answers = await self._coalesced(dataset, keys, deadline)
            now = time.time()
            fresh: list[tuple[str, Any]] = []
            for key, answer in zip(keys, answers, strict=True):
                if isinstance(answer, GatewayError):
                    results[key] = self._stale(stale[key]) if key in stale else answer
                else:
                    results[key] = Sourced(answer, self.code, self.no_older_than(now))
                    fresh.append((key, answer))
            if self.cache is not None:
                await self.cache.set_many(self.code, dataset, fresh, self.cache_ttl, asked_at)
        finally:
            for key, future in futures.items():
                del self._inflight[(dataset.name, key)]
                if not future.done():
                    future.set_result(results.get(key) or AgencyError(self.code))
        return results

    @property
    def cache_ttl(self) -> int:
        """How long anything about this agency stays in the cache, fresh or stale."""
        return max(self.config.stale_ttl_s, self.config.cache_ttl_s, 1)

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

    async def _coalesced(
        self, dataset: Dataset, keys: list[str], deadline: float | None
    ) -> list[Any]:
        """Call at once when a slot is free. When every slot is busy, the batches of all
        requests waiting for this dataset are merged into one call: under load the agency
        gets fewer, larger batches instead of a queue of small ones."""
        if not self.limit.locked():
            return await self._call(dataset, keys, deadline)
        waiting = self._waiting.get(dataset.name)
        if waiting is not None:
            start = len(waiting.keys)
            waiting.keys.extend(keys)
            waiting.requests += 1
            merged = await asyncio.shield(waiting.done)
            return merged[start : start + len(keys)]
        waiting = self._waiting[dataset.name] = _Waiting(
            list(keys), asyncio.get_running_loop().create_future()
        )
        answers: list[Any] = []
        try:
            answers = await self._lead(dataset, waiting, deadline)
        finally:
            if self._waiting.get(dataset.name) is waiting:
                del self._waiting[dataset.name]
            if not waiting.done.done():  # answered, or the leader was cancelled
                waiting.done.set_result(answers or [AgencyError(self.code)] * len(waiting.keys))
        return answers[: len(keys)]

    async def _lead(self, dataset: Dataset, waiting: _Waiting, deadline: float | None) -> list[Any]:
        """Wait for a slot for the whole merged batch, then call with it."""
        try:
            async with asyncio.timeout(self._slot_timeout(deadline)):
                await self.limit.acquire()
        except TimeoutError:
            self.stats.timeouts += 1
            observe.agency_refused(self.code, dataset.name, len(waiting.keys), "AGENCY_TIMEOUT",
                                   "queue_timeout")  # fmt: skip
            return [_Queued(self.code, self.config.timeout_ms)] * len(waiting.keys)
        del self._waiting[dataset.name]  # sealed: later arrivals start the next batch
        if waiting.requests > 1:
            self.stats.coalesced += 1
        return await self._call(dataset, waiting.keys, deadline, slot_held=True)

    def _slot_timeout(self, deadline: float | None) -> float:
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        return max(timeout, 0.001)

    async def _call(
        self, dataset: Dataset, keys: list[str], deadline: float | None, slot_held: bool = False
    ) -> list[Any]:
        """The adapter's answers (or a GatewayError per key), with retries and the breaker."""
        if not self.breaker.allow():
            if slot_held:
                self.limit.release()
            self.stats.rejected += 1
            observe.agency_refused(self.code, dataset.name, len(keys), "AGENCY_UNAVAILABLE",
                                   "circuit_open")  # fmt: skip
            refusal = AgencyError(self.code, f"The {self.code} agency is failing; not asking it.")
            return [refusal] * len(keys)
        attempt = 0
        while True:
            self.stats.calls += 1
            self.stats.keys += len(keys)
            error = await self._attempt(dataset, keys, deadline, slot_held)
            slot_held = False
            if not isinstance(error, GatewayError):
                self.breaker.succeeded()
                return error
            if not isinstance(error, _Queued):
                self.breaker.failed()
            attempt += 1
            backoff = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            out_of_time = deadline is not None and time.monotonic() + backoff >= deadline
            if attempt > self.config.retries or out_of_time or not self.breaker.allow():
                return [error] * len(keys)
            self.stats.retries += 1
            observe.agency_retry(self.code)
            await asyncio.sleep(backoff)

    async def _attempt(
        self, dataset: Dataset, keys: list[str], deadline: float | None, slot_held: bool = False
    ) -> list[Any] | GatewayError:
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
        if timeout <= 0:
            if slot_held:
                self.limit.release()
            return AgencyTimeout(self.code, self.config.timeout_ms)
        if not slot_held:
            try:
                async with asyncio.timeout(timeout):
                    await self.limit.acquire()
            except TimeoutError:
                # Our own queue was full for the whole timeout: not the agency's failure.
                self.stats.timeouts += 1
                observe.agency_refused(self.code, dataset.name, len(keys), "AGENCY_TIMEOUT",
                                       "queue_timeout")  # fmt: skip
                return _Queued(self.code, self.config.timeout_ms)
        try:
            # The agency gets its whole timeout once it is asked (within the deadline).
            if deadline is not None:
                timeout = min(self.timeout, deadline - time.monotonic())
            with observe.agency_call(self.code, dataset.name, len(keys)) as call:
                async with asyncio.timeout(max(timeout, 0.001)):
                    entries = await self.adapter.fetch(dataset, keys)
                call.answered(entries, len(keys))
        except TimeoutError:
            self.stats.timeouts += 1
            self._failed("timeout")
            return AgencyTimeout(self.code, self.config.timeout_ms)
        except Exception as exc:
            # Our adapters' own failures say what went wrong; anything else may quote data
            # (a driver's message), so operators see only its kind; the log has the rest.
            shown = str(exc) if isinstance(exc, AgencyFailure) else type(exc).__name__
            self._failed(shown)
            log.warning("agency %s failed a %s batch: %s", self.code, dataset.name, exc)
            return AgencyError(self.code)
        finally:
            self.limit.release()
        if len(entries) != len(keys):
            self._failed(f"adapter returned {len(entries)} entries for {len(keys)} keys")
            return AgencyError(self.code)
        out: list[Any] = []
        for entry in entries:
            if entry is None and dataset.many:
                entry = ()  # the contract: None for a many dataset means no records
            elif isinstance(entry, BaseException):
                self._failed(
                    str(entry) if isinstance(entry, AgencyFailure) else type(entry).__name__
                )
                entry = AgencyError(self.code)
            out.append(entry)
        return out

    async def aggregate(
        self, query: AggregateQuery, deadline: float | None = None
    ) -> dict[tuple[str, ...], int]:
        """The agency's counts for ``query``: never cached, never retried (a statistics
        query is not worth a second GROUP BY); the breaker, the concurrency limit and the
        timeout apply as to lookups."""
        if not supports_aggregates(self.adapter):
            raise AgencyError(
                self.code,
                f"The {self.code} agency does not compute statistics (its adapter has no "
                "aggregate method).",
            )
        if not self.breaker.allow():
            self.stats.rejected += 1
            raise AgencyError(self.code, f"The {self.code} agency is failing; not asking it.")
        timeout = self._slot_timeout(deadline)
        self.stats.calls += 1
        try:
            async with asyncio.timeout(timeout):
                async with self.limit:
                    answer = await self.adapter.aggregate(query)
        except TimeoutError:
            self.stats.timeouts += 1
            self.breaker.failed()
            self._failed("timeout")
            raise AgencyTimeout(self.code, self.config.timeout_ms) from None
        except Exception as exc:
            shown = str(exc) if isinstance(exc, AgencyFailure) else type(exc).__name__
            self.breaker.failed()
            self._failed(shown)
            log.warning("agency %s failed a %s aggregate: %s", self.code, query.dataset, exc)
            raise AgencyError(self.code) from None
        try:
            counts = check_answer(query, answer)
        except ValueError as exc:  # our own words, never the agency's values
            self.breaker.failed()
            self._failed(f"malformed statistics: {exc}")
            message = f"The {self.code} agency sent malformed statistics."
            raise AgencyError(self.code, message) from None
        self.breaker.succeeded()
        return counts

    def _failed(self, reason: str) -> None:
        self.stats.failures += 1
        # Shown to operators (Query.agencies): never a full RRN, whatever the agency said.
        self.stats.last_error = mask_rrns(redact(reason))

    async def ping(self, within: float = 1.0) -> str | None:
        """None when reachable, else the reason."""
        try:
            async with asyncio.timeout(within):
                await self.adapter.ping()
        except TimeoutError:
            return "timeout"
        except Exception as exc:
            return redact(f"{type(exc).__name__}: {exc}")
        return None

    @property
    def cache_hit_ratio(self) -> float | None:
        looked_up = self.stats.cache_hits + self.stats.cache_misses
        return None if looked_up == 0 else self.stats.cache_hits / looked_up

    def describe(self) -> dict[str, Any]:
        """State for /readyz and Query.agencies."""
        ratio = self.cache_hit_ratio
        return {
            "kind": self.config.kind,
            "circuit": self.breaker.state.value,
            "failures": self.stats.failures,
            "cache": "off" if self.cache is None else self.cache.backend,
            "cache_hit_ratio": None if ratio is None else round(ratio, 4),
        }


def adapter_settings(config: AgencyConfig) -> dict[str, Any]:
    """The agency's whole table, with the contract's keys filled in from their defaults."""
    typed = {
        "kind": config.kind,
        "dsn": config.dsn,
        "url": config.url,
        "timeout_ms": config.timeout_ms,
        "max_concurrency": config.max_concurrency,
    }
    return {**config.settings, **typed}


class Agencies:
    """All configured agencies, opened and closed together."""

    def __init__(
        self, configs: Mapping[str, AgencyConfig], cache: AgencyCache | None = None
    ) -> None:
        self.configs = configs
        self.cache = cache
        #: Dataset -> the code of the agency serving it (``[agencies.<code>] datasets``).
        self.sources = sources(Config(agencies=configs), complete=False)
        #: Every known dataset, ours and contributed (``gateway.federation``).
        self.datasets = federation.datasets(Config(agencies=configs))
        self.by_code: dict[str, Agency] = {}
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Agencies:
        kinds = adapter_classes()
        for code, config in self.configs.items():
            cls = kinds.get(config.kind)
            if cls is None:
                raise ConfigError(
                    f"[agencies.{code}] kind {config.kind!r} is not installed "
                    f"(installed: {', '.join(sorted(kinds))})"
                )
            adapter = await self._stack.enter_async_context(cls(code, adapter_settings(config)))
            self.by_code[code] = Agency(config, adapter, self.cache)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def for_dataset(self, dataset: str) -> tuple[Agency, Dataset] | None:
        """The agency serving ``dataset``; None when no agency does ([sources] unserved)."""
        code = self.sources.get(dataset)
        agency = None if code is None else self.by_code.get(code)
        return None if agency is None else (agency, self.datasets[dataset])

    def datasets_of(self, agency: str) -> tuple[str, ...]:
        """The datasets ``agency`` serves, as configured."""
        return tuple(ds for ds, code in self.sources.items() if code == agency)

    async def invalidate(
        self, agency: str, keys: Sequence[str], datasets: Sequence[str] | None = None
    ) -> int:
        """Drop cached records of ``agency`` for ``keys``; returns how many entries went."""
        member = self.by_code.get(agency)
        if self.cache is None or member is None:
            return 0
        names = list(datasets or self.datasets_of(agency))
        return await self.cache.invalidate(agency, names, keys, member.cache_ttl)

    async def forget(self, agency: str) -> None:
        """Drop everything cached for an agency (after missing its change notifications)."""
        if self.cache is not None and agency in self.by_code:
            await self.cache.clear_agency(agency)
