"""The configured agencies: adapters found by entry point, each wrapped in the gateway's
layers (``gateway.layers``: cache, single flight, coalescing, resilient call) and counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from importlib.metadata import entry_points
from typing import Any

from adapters.aggregates import AggregateQuery, check_answer
from adapters.base import Adapter, supports_aggregates
from adapters.records import Dataset
from adapters.trust import TrustError, check_agency, redact
from gateway import federation
from gateway.breaker import CircuitBreaker
from gateway.cache import AgencyCache
from gateway.config import DEFAULT_DATASETS, AgencyConfig, Config, ConfigError, sources
from gateway.errors import AgencyError
from gateway.layers import AgencyStats, Answer, Outcome, Sourced
from gateway.layers.cached import CacheLayer
from gateway.layers.coalesce import Coalescer
from gateway.layers.resilient import Limit, ResilientCall
from gateway.layers.single_flight import SingleFlight

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gateway.adapters"
#: Failed calls within ``breaker_window_s`` (at ``breaker_failure_rate`` or more) that open
#: an agency's circuit.
BREAKER_THRESHOLD = 3

__all__ = ["Agencies", "Agency", "AgencyStats", "Outcome", "Sourced"]


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in {"1", "true", "yes"}


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


class Agency:
    """One agency as the gateway uses it, in layers (``gateway.layers``): cache, single
    flight, coalescing, and the resilient call (circuit breaker, retries, a timeout per
    attempt and a FIFO concurrency limit) in front of its adapter."""

    def __init__(self, config: AgencyConfig, adapter: Adapter, cache: AgencyCache | None) -> None:
        self.code = config.code
        self.config = config
        self.adapter = adapter
        self.timeout = config.timeout_ms / 1000
        self.stats = AgencyStats()
        settings = config.settings
        self.breaker = CircuitBreaker(
            threshold=int(settings.get("breaker_threshold", BREAKER_THRESHOLD)),
            reset_after_s=float(settings.get("breaker_reset_s", 10)),
            window_s=float(settings.get("breaker_window_s", 30)),
            failure_rate=float(settings.get("breaker_failure_rate", 0.5)),
        )
        self.limit = Limit(config.max_concurrency)
        self.call = ResilientCall(
            self.code,
            adapter,
            limit=self.limit,
            breaker=self.breaker,
            stats=self.stats,
            timeout_ms=config.timeout_ms,
            retries=config.retries,
            retry_timeouts=_flag(settings.get("retry_timeouts", False)),
        )
        self.coalescer = Coalescer(self.code, self.call, self.limit, self.stats, config.timeout_ms)
        self.single_flight = SingleFlight(lambda: AgencyError(self.code))
        self.cached = CacheLayer(config, cache, self.stats)
        self.cache = self.cached.cache

    async def fetch(
        self, dataset: Dataset, keys: Sequence[str], deadline: float | None = None
    ) -> list[Outcome]:
        """One outcome per key, in order. ``deadline`` is the request's (monotonic clock)."""
        if self.cache is None:  # nothing to look up or keep: straight to the agency
            answers = await self.single_flight.run(
                dataset.name, keys, lambda mine: self.coalescer.fetch(dataset, mine, deadline)
            )
            now = time.time()
            outcome = self.cached.outcome
            return [outcome(answer, None, now) for answer in answers]
        found, stale, pending = await self.cached.lookup(dataset, keys)
        if pending:

            async def read(mine: list[str]) -> list[Answer]:
                asked_at = time.time()
                answers = await self.coalescer.fetch(dataset, mine, deadline)
                await self.cached.store(dataset, mine, answers, asked_at)
                return answers

            answers = await self.single_flight.run(dataset.name, pending, read)
            now = time.time()
            for key, answer in zip(pending, answers, strict=True):
                found[key] = self.cached.outcome(answer, stale.get(key), now)
        return [found[key] for key in keys]

    @property
    def cache_ttl(self) -> int:
        """How long anything about this agency stays in the cache, fresh or stale."""
        return self.cached.ttl

    def no_older_than(self, now: float, *, stale: bool = False) -> float:
        """See ``CacheLayer.no_older_than``."""
        return self.cached.no_older_than(now, stale=stale)

    async def aggregate(
        self, query: AggregateQuery, deadline: float | None = None
    ) -> dict[tuple[str, ...], int]:
        """The agency's counts for ``query``: never cached, never retried (a statistics
        query is not worth a second GROUP BY); the breaker, the concurrency limit and the
        timeout apply as to lookups (``ResilientCall.once``)."""
        if not supports_aggregates(self.adapter):
            raise AgencyError(
                self.code,
                f"The {self.code} agency does not compute statistics (its adapter has no "
                "aggregate method).",
            )

        async def ask(budget: float) -> object:
            self.stats.calls += 1
            async with asyncio.timeout(budget):
                return await self.adapter.aggregate(query)

        return await self.call.once(
            ask,
            deadline,
            what="statistics",
            check=lambda answer: check_answer(query, answer),
        )

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
        member = self.by_code.get(agency)
        if self.cache is not None and member is not None:
            await self.cache.clear_agency(agency, member.cache_ttl)
