"""An agency that runs an Apollo Federation v2 subgraph, read through ``_entities``.

``[agencies.<code>] kind = "graphql"``, ``url = "https://vehicles.example/graphql"``. The
gateway reads the subgraph's SDL at start-up (``gateway.subgraph``) and makes one dataset,
named after the agency code, whose record holds the ``Resident`` fields the subgraph
contributes. A batch asks for ``dataset.part``, the selection the request forwards
(``gateway.forwarding``; Resident fields it leaves out are None in the record), or, for the
whole dataset, every field of every object type reached (``__selection__`` of the record
class, computed from the SDL). A batch is one request::

    POST {url}   {"query": "query($representations: [_Any!]!) { _entities(representations:
                  $representations) { ... on Resident { __typename rrn <selection> } } }",
                  "variables": {"representations": [{"__typename": "Resident", "rrn": k}, ...]}}

Every entity is asked for ``__typename rrn`` too: one that is not the ``Resident`` its
representation names (reordered, or another resident's) fails that key (AGENCY_UNAVAILABLE),
never shown as the asked resident's. An entity whose contributed fields are all null (or empty
lists) is "no record". A GraphQL
error whose ``path`` is ``["_entities", i, ...]`` fails key ``i`` only; any other error,
an HTTP error or a transport error fails the batch (AGENCY_UNAVAILABLE; a slow subgraph is
AGENCY_TIMEOUT). Trust settings are those of :mod:`adapters.trust`, as for ``kind = "http"``.

Like every adapter this module imports neither graphql-core nor strawberry: it sends text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from adapters.base import AgencyFailure
from adapters.http import HTTPClientAdapter, _transport_problem
from adapters.records import Dataset, record_from_mapping

ENTITIES = (
    "query($representations: [_Any!]!) { _entities(representations: $representations) "
    "{ ... on Resident { __typename rrn %s } } }"
)
#: Asked of every entity, to check it is the resident its representation names.
_IDENTITY = ("__typename", "rrn")
SDL_QUERY = "{ _service { sdl } }"


class SubgraphAdapter(HTTPClientAdapter):
    """Settings: ``url`` (the subgraph's GraphQL endpoint, required) and those of
    :class:`adapters.http.HTTPClientAdapter` (connections, timeout, trust). Serves one
    dataset, named after the agency code."""

    url_is_base = False  # the endpoint itself: every request is a POST to it

    def __init__(
        self,
        agency: str,
        settings: Mapping[str, Any],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(agency, settings, transport)
        self.datasets = frozenset({agency})

    async def ping(self) -> None:
        await self.query("{ __typename }", {})

    async def sdl(self) -> str:
        """The subgraph's SDL (``_service { sdl }``)."""
        data = await self.query(SDL_QUERY, {})
        try:
            sdl = data["_service"]["sdl"]
        except (KeyError, TypeError):
            sdl = None
        if not isinstance(sdl, str):
            raise AgencyFailure(f"{self.agency} answered no SDL for _service {{ sdl }}")
        return sdl

    async def query(self, query: str, variables: Mapping[str, Any]) -> Any:
        """``data`` of one GraphQL request; raises AgencyFailure on any error."""
        body = await self._post(query, variables)
        if body.get("errors"):
            raise AgencyFailure(f"{self.agency} answered {_errors(body['errors'])}")
        return body.get("data")

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        if not keys:
            return []
        selection = dataset.part or getattr(dataset.record, "__selection__", None)
        if not isinstance(selection, str) or dataset.base not in self.datasets:
            raise AgencyFailure(f"{self.agency} does not serve {dataset.base}")
        representations = [{"__typename": "Resident", "rrn": key} for key in keys]
        body = await self._post(ENTITIES % selection, {"representations": representations})
        failed: dict[int, str] = {}
        for error in body.get("errors") or ():
            index = _entity_index(error)
            if index is not None and 0 <= index < len(keys):
                failed.setdefault(index, _errors([error]))
                continue
            raise AgencyFailure(f"{self.agency} answered {_errors(body['errors'])}")
        data = body.get("data")
        entities = data.get("_entities") if isinstance(data, dict) else None
        if not isinstance(entities, list) or len(entities) != len(keys):
            raise AgencyFailure(f"{self.agency} answered something that is not an _entities list")
        return [
            AgencyFailure(f"{self.agency} answered {failed[i]}")
            if i in failed
            else self._entry(dataset, entity, key)
            for i, (entity, key) in enumerate(zip(entities, keys, strict=True))
        ]

    def _entry(self, dataset: Dataset, entity: Any, key: str) -> Any:
        if entity is None:
            return None
        if not isinstance(entity, dict):
            return AgencyFailure(f"{self.agency} sent a malformed {dataset.name} entity")
        if entity.get("__typename") != "Resident" or entity.get("rrn") != key:
            # Out of order, or another resident's: never shown (nor audited) as this one's.
            return AgencyFailure(
                f"{self.agency} answered an entity that is not the resident it was asked for"
            )
        entity = {k: v for k, v in entity.items() if k not in _IDENTITY}
        if all(value in (None, []) for value in entity.values()):
            return None  # the subgraph knows nothing about this resident
        try:  # the Resident fields this part did not select are None
            return record_from_mapping(dataset.record, defaultdict(lambda: None, entity))
        except (KeyError, TypeError, ValueError) as exc:
            problem = type(exc).__name__  # never the values: this text reaches operators
            return AgencyFailure(
                f"{self.agency} sent a malformed {dataset.name} entity ({problem})"
            )

    async def _post(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        request = self.client.post(self.url, json={"query": query, "variables": variables})
        try:
            response = await self._send(request)
        except httpx.TransportError as exc:
            transient = not isinstance(exc, httpx.TimeoutException)  # retried: see AgencyFailure
            problem = _transport_problem(exc)
            raise AgencyFailure(f"{self.agency}: {problem}", transient=transient) from exc
        if response.status_code != 200:
            raise AgencyFailure(
                f"{self.agency} answered HTTP {response.status_code}",
                transient=response.status_code >= 500,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise AgencyFailure(f"{self.agency} answered something that is not GraphQL")
        return body


def _entity_index(error: Any) -> int | None:
    """The entity a GraphQL error is about (its path is ``["_entities", i, ...]``), if any."""
    path = error.get("path") if isinstance(error, dict) else None
    if isinstance(path, list) and len(path) > 1 and path[0] == "_entities":
        index = path[1]
        return index if isinstance(index, int) else None
    return None


def _errors(errors: Any) -> str:
    """How many GraphQL errors, and the first one's code when it has one (never its
    message: it may quote the resident's data)."""
    count = len(errors) if isinstance(errors, list) else 1
    first = errors[0] if isinstance(errors, list) and errors else {}
    extensions = first.get("extensions") if isinstance(first, dict) else None
    code = extensions.get("code") if isinstance(extensions, dict) else None
    shown = f" ({code})" if isinstance(code, str) and code.isidentifier() else ""
    return f"{count} GraphQL error(s){shown}"
