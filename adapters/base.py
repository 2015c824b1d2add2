"""The adapter contract: how an agency's system is read by the gateway."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from adapters.aggregates import AggregateQuery, Counts
from adapters.records import Dataset


class AgencyFailure(Exception):
    """An agency could not answer for a key (or for a whole batch).

    ``transient=True`` says asking again may work: the agency could not be reached (connection
    refused or reset) or answered a server error (HTTP 5xx). The gateway retries only those
    (and connection errors raised as ``OSError``); anything else, a timeout included, is
    answered at once."""

    def __init__(self, *args: object, transient: bool = False) -> None:
        super().__init__(*args)
        self.transient = transient


class AggregatesNotSupported(AgencyFailure):
    """The adapter has no :meth:`Adapter.aggregate`: it serves records, not statistics."""


def supports_aggregates(adapter: Adapter) -> bool:
    """Whether the adapter's class overrides :meth:`Adapter.aggregate`."""
    return type(adapter).aggregate is not Adapter.aggregate


class Adapter(abc.ABC):
    """Reads one agency's records, many keys at a time.

    To connect a new agency, subclass this, implement :meth:`fetch`, and register the
    class under the ``gateway.adapters`` entry-point group in your package::

        [project.entry-points."gateway.adapters"]
        myagency = "my_package.adapter:MyAgencyAdapter"

    then name it in ``gateway.toml``: ``[agencies.nhis] kind = "myagency"``. Every key of
    that table reaches your adapter in ``settings``.

    The gateway guarantees:

    * one adapter instance per agency, used as an async context manager: open pools and
      clients in :meth:`start`, release them in :meth:`close`;
    * :meth:`fetch` is called with a batch of distinct keys collected from one request
      (often one per resident of a household), concurrently with other batches;
    * timeouts, concurrency limits, caching, retries and authorization are the gateway's
      job: an adapter just reads.

    An adapter must:

    * return exactly one entry per key, in the order of ``keys``: the record (a
      ``dataset.record`` instance; for ``dataset.many`` a tuple of them), ``None`` when the
      agency has no record for that key (for ``dataset.many``, ``None`` and ``()`` both
      mean no records: the gateway serves an empty list), or an exception instance when
      that key failed;
    * declare in :attr:`datasets` every dataset it can serve: start-up and ``gateway
      check-config`` refuse an agency configured (``datasets = [...]``) for any other;
    * raise :class:`AgencyFailure` (or any exception) when the whole batch failed;
    * never import GraphQL or the gateway: records in, records out.

    Statistics (optional): override :meth:`aggregate` to count records where they live, so
    that analysts' ``Query.statistics`` can use this agency; without it, statistics over its
    datasets answer ``AGENCY_UNAVAILABLE``. See ``docs/adapters.md``.

    ``adapters.contract`` holds a test suite any adapter can run to prove all of this.
    """

    #: The datasets this adapter can serve; start-up and ``gateway check-config`` refuse an
    #: agency configured for a dataset not listed here.
    datasets: frozenset[str] = frozenset()

    def __init__(self, agency: str, settings: Mapping[str, Any]) -> None:
        self.agency = agency
        self.settings = settings

    async def start(self) -> None:
        """Open connections. Called once before the first fetch."""

    async def close(self) -> None:
        """Release connections. Called once at shutdown."""

    async def ping(self) -> None:
        """Raise if the agency cannot be reached (used by ``/readyz``)."""

    @abc.abstractmethod
    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        """One entry per key, in key order: a record, ``None``, or an exception."""

    async def aggregate(self, query: AggregateQuery) -> Counts:
        """Optional: counts of ``query.dataset``'s records grouped by ``query.dimensions``,
        one entry per combination present (absent ones count 0), keys in the order of
        ``query.dimensions`` and drawn from ``adapters.aggregates.CATEGORIES``. Computed by
        the agency (``GROUP BY``): never return or fetch records to count them here."""
        raise AggregatesNotSupported(f"{self.agency}: this adapter does not compute statistics")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
