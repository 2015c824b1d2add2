"""What one request carries through resolvers: who asks, and the request's DataLoaders."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from adapters.records import Dataset
from gateway.agencies import Agencies, Agency, Sourced, unserved_name
from gateway.config import LimitsConfig, StatisticsConfig
from gateway.errors import AgencyError
from gateway.principal import Principal

if TYPE_CHECKING:
    from gateway.access import Access
    from gateway.audit import AuditKeys, AuditLog
    from gateway.certificates import Certificates
    from gateway.consent import Consents


class Loaders:
    """One DataLoader per dataset, created on first use, living for one request."""

    def __init__(self, agencies: Agencies, deadline: float | None = None) -> None:
        self._agencies = agencies
        self.deadline = deadline
        self._loaders: dict[tuple[str, str], DataLoader[str, Any]] = {}
        #: What a request forwards to each GraphQL subgraph, per view (``gateway.subgraph``).
        self.parts: dict[tuple[str, str, bool], str] = {}

    def __getitem__(self, dataset: str) -> DataLoader[str, Any]:
        return self.get(dataset)

    def get(self, dataset: str, part: str = "") -> DataLoader[str, Any]:
        """The loader of ``dataset``, or of only ``part`` of its records (a GraphQL
        subgraph's selection, see ``adapters.records.Dataset.narrowed``)."""
        loader = self._loaders.get((dataset, part))
        if loader is None:
            loader = self._loaders[(dataset, part)] = self._make(dataset, part)
        return loader

    def _make(self, dataset: str, part: str) -> DataLoader[str, Any]:
        found = self._agencies.for_dataset(dataset)
        if found is None:
            # Only for datasets listed in [sources] unserved: start-up refuses any other
            # dataset without an agency.
            agency = unserved_name(dataset)

            async def unconfigured(keys: Sequence[str]) -> list[Any]:
                error = AgencyError(
                    agency, f"The {agency} agency is not configured (no agency serves {dataset})."
                )
                return [error] * len(keys)

            return DataLoader(load_fn=unconfigured)
        agency_client, spec = found
        if part:
            spec = spec.narrowed(part)
        return AgencyLoader(agency_client, spec, self.deadline)


async def _fetch(
    agency: Agency, dataset: Dataset, deadline: float | None, keys: Sequence[str]
) -> list[Any]:
    return await agency.fetch(dataset, keys, deadline)


class AgencyLoader(DataLoader[str, Any]):
    """A request's DataLoader of one dataset. A key the in-process cache holds fresh is
    answered at once (a done future, ``CacheLayer.peek``): no batch, task or coroutine for
    it. Every other key is batched and fetched as before (``Agency.fetch``: cache, single
    flight, coalescing, the resilient call)."""

    def __init__(self, agency: Agency, dataset: Dataset, deadline: float | None) -> None:
        # load_fn must not hold the loader (a bound method would): a loader in a reference
        # cycle takes every future, record and batch of the request with it into the cyclic
        # garbage, freed only by the collector (and walked by it until then). The running
        # loop is asked once (strawberry asks get_event_loop() per loader).
        super().__init__(
            load_fn=functools.partial(_fetch, agency, dataset, deadline),
            loop=asyncio.get_running_loop(),
        )
        self._peek = agency.cached.peek if agency.cache is not None else None
        self.dataset = dataset

    def load(self, key: str) -> Any:
        if self._peek is None:  # no cache for this agency
            return super().load(key)
        known = self.cache_map.get(key)
        if known is not None and not known.cancelled():
            return known
        hit = self._peek(self.dataset, key)
        if hit is None:
            return super().load(key)
        future = self.loop.create_future()
        future.set_result(hit)
        self.cache_map.set(key, future)
        return future


class Provenance:
    """Where each agency-backed value came from: kept when the client asks for it, and
    always for stale data."""

    def __init__(self, wanted: bool) -> None:
        self.wanted = wanted
        self.entries: list[dict[str, Any]] = []

    def note(self, path: list[str | int], sourced: Sourced) -> None:
        if self.wanted or sourced.stale:
            as_of = dt.datetime.fromtimestamp(sourced.as_of, dt.UTC).isoformat()
            self.entries.append(
                {"path": path, "agency": sourced.agency, "asOf": as_of, "stale": sourced.stale}
            )


@dataclass
class Context:
    request: Request
    response: Response
    request_id: str
    agencies: Agencies
    limits: LimitsConfig
    loaders: Loaders
    principal: Principal
    access: Access
    keys: AuditKeys
    audit: AuditLog
    consents: Consents
    provenance: Provenance
    certificates: Certificates
    cost: int | None = None  # measured before execution (gateway.limits); rate limits charge it
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    audit_enabled: bool = True  # [audit] enabled
    certificate_mutations: int = 0  # certificates issued or revoked by this request (one)
