"""The layers an agency call goes through, outermost first (``gateway.agencies.Agency``
composes them):

- ``cached``: fresh answers from the cache; stale copies kept for when the agency fails;
- ``single_flight``: a key another request is already fetching is awaited, not asked again;
- ``coalesce``: when every slot is busy, the batches waiting for a dataset merge into one call;
- ``resilient``: the call itself, through the circuit breaker, the FIFO concurrency limit, a
  timeout per attempt and bounded retries.

Each layer is small, knows only the one below it through a function or object it is given,
and is tested on its own against ``adapters.memory.InMemoryAdapter`` (``tests/layers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError

#: What the layers below the cache answer per key: the agency's entry (a record, a tuple of
#: records, or None: no record) or the GatewayError the field will carry.
Answer = Any


@dataclass
class AgencyStats:
    """One agency's counters, shared by its layers (``Query.agencies`` and ``/metrics``)."""

    calls: int = 0  # batches the adapter was actually asked for
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
    #: another looked the resident up (see ``CacheLayer.no_older_than``).
    as_of: float
    stale: bool = False


Outcome = Sourced | GatewayError
