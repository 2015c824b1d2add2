"""The configured agencies: adapters found by entry point, wrapped with the gateway's
timeout and concurrency limit, and counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from adapters.base import Adapter
from adapters.records import DATASETS, Dataset
from gateway.config import AgencyConfig, ConfigError
from gateway.errors import AgencyError, AgencyTimeout

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gateway.adapters"

# Which agency serves which dataset. The schema asks for datasets; this says where they live.
AGENCY_DATASETS: dict[str, tuple[str, ...]] = {
    "registry": ("resident", "household"),
    "nhis": ("insurance",),
    "nts": ("taxes",),
    "nps": ("pension",),
    "mma": ("military_service",),
}
DATASET_AGENCY = {ds: agency for agency, names in AGENCY_DATASETS.items() for ds in names}


def adapter_classes() -> dict[str, type[Adapter]]:
    """Every adapter kind installed, ours and integrators' alike."""
    found: dict[str, type[Adapter]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Adapter)):
            raise ConfigError(f"entry point {ep.name} = {ep.value} is not an Adapter subclass")
        found[ep.name] = cls
    return found


@dataclass
class AgencyStats:
    calls: int = 0
    keys: int = 0
    failures: int = 0
    timeouts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


class Agency:
    """One agency as the gateway uses it: its adapter behind a timeout and a FIFO limit."""

    def __init__(self, config: AgencyConfig, adapter: Adapter) -> None:
        self.code = config.code
        self.config = config
        self.adapter = adapter
        self.timeout = config.timeout_ms / 1000
        # asyncio.Semaphore wakes waiters in FIFO order, which keeps tail latency flat when
        # many requests queue for a small pool.
        self.limit = asyncio.Semaphore(config.max_concurrency)
        self.stats = AgencyStats()

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> list[Any]:
        """One entry per key: record, None, or a GatewayError for that key."""
        self.stats.calls += 1
        self.stats.keys += len(keys)
        try:
            async with asyncio.timeout(self.timeout):
                async with self.limit:
                    entries = await self.adapter.fetch(dataset, keys)
        except TimeoutError:
            self._failed("timeout")
            self.stats.timeouts += 1
            return [AgencyTimeout(self.code, self.config.timeout_ms)] * len(keys)
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            log.warning("agency %s failed a %s batch: %s", self.code, dataset.name, exc)
            return [AgencyError(self.code)] * len(keys)
        if len(entries) != len(keys):
            self._failed(f"adapter returned {len(entries)} entries for {len(keys)} keys")
            return [AgencyError(self.code)] * len(keys)
        out: list[Any] = []
        for entry in entries:
            if isinstance(entry, BaseException):
                self._failed(f"{type(entry).__name__}: {entry}")
                entry = AgencyError(self.code)
            out.append(entry)
        return out

    def _failed(self, reason: str) -> None:
        self.stats.failures += 1
        self.stats.last_error = reason
        self.stats.last_error_at = time.time()

    async def ping(self, within: float = 1.0) -> str | None:
        """None when reachable, else the reason."""
        try:
            async with asyncio.timeout(within):
                await self.adapter.ping()
        except TimeoutError:
            return "timeout"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


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

    def __init__(self, configs: Mapping[str, AgencyConfig]) -> None:
        self.configs = configs
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
            self.by_code[code] = Agency(config, adapter)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def for_dataset(self, dataset: str) -> tuple[Agency, Dataset] | None:
        agency = self.by_code.get(DATASET_AGENCY[dataset])
        return None if agency is None else (agency, DATASETS[dataset])
