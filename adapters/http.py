"""An agency read over HTTP: one client per agency, many keys per request.

The wire protocol (what the demo agencies in ``gateway.demo.agencies`` serve)::

    POST {url}/v1/{dataset}:batch        {"keys": ["940812-1001751", ...]}
    200  {"records": [{...} | null | [{...}, ...], ...]}     one entry per key, in order

    POST {url}/v1/{dataset}:aggregate    {"dimensions": ["region", ...], "taxYear": null}
    200  {"cells": [{"key": ["Seoul", ...], "count": 1234}, ...]}   counts, never records

Agencies speaking another protocol get an adapter of their own (see ``adapters.base``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import httpx
import orjson
from opentelemetry import propagate

from adapters.aggregates import AggregateQuery, Counts
from adapters.base import Adapter, AgencyFailure
from adapters.bounded import DEFAULT_MAX_RESPONSE_BYTES, AnswerBounds
from adapters.records import Dataset, record_from_mapping
from adapters.trust import OAuth2ClientCredentials, TrustError, http_client_options

T = TypeVar("T")


class BoundedHTTP(Adapter):
    """What both HTTP clients share (httpx: :class:`HTTPClientAdapter`; aiohttp:
    :class:`HTTPAdapter`): the settings, the bounds on answers (:mod:`adapters.bounded`),
    and requests in tasks of their own that a cancelled caller abandons (:meth:`_shielded`)
    and ``close`` ends.

    Settings: ``url`` (required), ``max_concurrency`` (connection limit, default 10),
    ``timeout_ms`` (socket timeouts, and the deadline of a whole exchange, default 2000),
    ``max_response_bytes`` (cap on an answer's body, default 16 MiB), and ``ca_file``,
    ``client_cert``, ``client_key``, ``client_key_password``, ``oauth2_token_url``,
    ``oauth2_client_id``, ``oauth2_client_secret``, ``oauth2_scope``, ``auth_header``.
    ``transport``: an httpx transport (tests); for :class:`HTTPAdapter` it carries the
    OAuth2 token endpoint's requests only."""

    #: Whether ``url`` is the client's base URL (paths below it) or the one endpoint itself.
    url_is_base = True

    def __init__(
        self,
        agency: str,
        settings: Mapping[str, Any],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(agency, settings)
        url = str(settings["url"])
        self.url = url.rstrip("/") if self.url_is_base else url
        self.connections = int(settings.get("max_concurrency", 10))
        self.timeout = int(settings.get("timeout_ms", 2000)) / 1000
        max_bytes = int(settings.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES))
        self.bounds = AnswerBounds(agency, max_bytes, self.timeout)
        self._transport = transport
        self._requests: set[asyncio.Task[Any]] = set()
        self._auth: OAuth2ClientCredentials | None = None

    def _options(self) -> dict[str, Any]:
        """The client options of :func:`adapters.trust.http_client_options` (and the
        OAuth2 auth kept, to close); a trust problem is an AgencyFailure."""
        try:
            options = http_client_options(
                self.agency, self.settings, timeout=self.timeout, token_transport=self._transport
            )
        except TrustError as exc:
            raise AgencyFailure(str(exc)) from None
        self._auth = options.get("auth")
        return options

    async def _shielded(self, work: Coroutine[Any, Any, T], *, armed: bool = False) -> T:
        """``work`` (one request) in a task of its own, within ``bounds``: a cancelled caller
        abandons it, and it still ends within its deadline, having read at most
        ``max_response_bytes``. ``armed``: see :meth:`AnswerBounds.run`."""
        task = asyncio.ensure_future(self.bounds.run(work, armed=armed))
        self._requests.add(task)
        task.add_done_callback(_forget(self._requests))
        return await asyncio.shield(task)

    async def _end_requests(self) -> None:
        """Before the client closes: the requests still running end (nothing left to leak
        into), and the token endpoint's client closes."""
        for request in list(self._requests):
            request.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
        if self._auth is not None:
            await self._auth.aclose()
            self._auth = None


class HTTPClientAdapter(BoundedHTTP):
    """What every adapter over httpx shares: one client per agency with the trust settings
    of :mod:`adapters.trust`, a connection limit, and requests that are never cancelled in
    flight (see :meth:`_send`), and the W3C trace context of the gateway's span on every
    request while tracing is on. Subclasses add the protocol: ``fetch`` and ``ping``.
    Settings: those of :class:`BoundedHTTP`."""

    _client: httpx.AsyncClient | None = None  # from start() to close()

    async def start(self) -> None:
        options = self._options()
        if self.url_is_base:
            options["base_url"] = self.url
        hooks = self.bounds.event_hooks()
        hooks["request"] = [_trace_context, *hooks.get("request", [])]
        self._client = httpx.AsyncClient(
            **options,
            event_hooks=hooks,
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=self.connections, max_keepalive_connections=self.connections
            ),
            transport=self._transport,
        )

    async def close(self) -> None:
        await self._end_requests()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise AgencyFailure(f"{self.agency}: adapter used before start()")
        return self._client

    async def _send(self, request: Coroutine[Any, Any, httpx.Response]) -> httpx.Response:
        # httpcore keeps a pool slot for ever when a request is cancelled while it waits for
        # a connection (encode/httpcore#1093): after max_concurrency of the gateway's
        # timeouts every call fails with PoolTimeout. So a request is never cancelled by its
        # caller: a cancelled fetch abandons it. It ends within its own deadline and reads at
        # most max_response_bytes (adapters.bounded), whether or not anyone still waits.
        return await self._shielded(request)


class HTTPAdapter(BoundedHTTP):
    """Our JSON batch protocol (above), over aiohttp's client with orjson: measured at about a
    quarter of httpx's CPU per call (``bench/http_clients.py``, BENCHMARKS.md). Settings and
    guarantees: those of :class:`HTTPClientAdapter`, with the same trust features (private
    CA, mutual TLS, a static header, OAuth2 client credentials: :mod:`adapters.trust`), the
    same bounds on answers (:mod:`adapters.bounded`: ``max_response_bytes``, the whole
    exchange within ``timeout_ms`` whether or not anyone still waits, compressed answers
    refused) and the W3C trace context on every request while tracing is on."""

    datasets = frozenset({"taxes", "military_service", "insurance", "pension"})
    #: Idle keep-alive connections are dropped before the agency drops them (uvicorn: 5 s).
    KEEPALIVE_S = 2.0
    #: Bytes read from an answer at a time (each counted against the cap).
    CHUNK_BYTES = 64 << 10

    _session: aiohttp.ClientSession | None = None  # from start() to close()

    async def start(self) -> None:
        options = self._options()
        context: ssl.SSLContext | None = options.get("verify")
        headers = {
            "Content-Type": "application/json",
            **options.get("headers", {}),
            "Accept-Encoding": "identity",  # a compressed answer's size is not its size
        }
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.connections,
                ssl=context if context is not None else True,
                keepalive_timeout=self.KEEPALIVE_S,
            ),
            headers=headers,
            auto_decompress=False,
            # Per socket operation, as httpx's; the whole exchange has the deadline of
            # ``bounds`` (see _send). A TimeoutError goes up as it is: AGENCY_TIMEOUT.
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout, sock_read=self.timeout
            ),
        )

    async def close(self) -> None:
        await self._end_requests()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise AgencyFailure(f"{self.agency}: adapter used before start()")
        return self._session

    async def ping(self) -> None:
        status, _ = await self._exchange("GET", "/healthz")
        if status != 200:
            raise AgencyFailure(f"{self.agency} answered HTTP {status}")

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        body = orjson.dumps({"keys": list(keys)})
        content = await self._post(f"/v1/{dataset.name}:batch", body)
        try:
            entries = orjson.loads(content)["records"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AgencyFailure(f"{self.agency} answered something that is not a batch") from exc
        if not isinstance(entries, list):
            # {"records": null} or another non-list: a failed batch, never a TypeError.
            raise AgencyFailure(f"{self.agency} answered something that is not a batch")
        if len(entries) != len(keys):
            raise AgencyFailure(f"{self.agency} answered {len(entries)} entries for {len(keys)}")
        return [self._entry(dataset, entry) for entry in entries]

    async def aggregate(self, query: AggregateQuery) -> Counts:
        body = orjson.dumps({"dimensions": list(query.dimensions), "taxYear": query.tax_year})
        content = await self._post(f"/v1/{query.dataset}:aggregate", body)
        try:
            cells = orjson.loads(content)["cells"]
            return {tuple(cell["key"]): cell["count"] for cell in cells}
        except (ValueError, KeyError, TypeError) as exc:
            raise AgencyFailure(f"{self.agency} answered something that is not a table") from exc

    async def _post(self, path: str, body: bytes) -> bytes:
        """The body of a 200 answer; any other status is a failure (a 5xx a transient one)."""
        status, content = await self._exchange("POST", path, body)
        if status != 200:
            raise AgencyFailure(f"{self.agency} answered HTTP {status}", transient=status >= 500)
        return content

    async def _exchange(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """Status and body; with OAuth2, a bearer token, and a 401 makes one refresh and one
        retry (as ``OAuth2ClientCredentials`` does for httpx)."""
        token = None if self._auth is None else await self._auth.token()
        status, content = await self._send(method, path, body, token)
        if status == 401 and token is not None and self._auth is not None:
            token = await self._auth.token(stale=token)
            status, content = await self._send(method, path, body, token)
        return status, content

    async def _send(
        self, method: str, path: str, body: bytes | None, token: str | None
    ) -> tuple[int, bytes]:
        """One request, in a task of its own that a cancelled caller abandons (as
        :meth:`HTTPClientAdapter._send`): it ends within ``timeout_ms`` and reads at most
        ``max_response_bytes`` (adapters.bounded), whether or not anyone still waits."""
        headers: dict[str, str] = {}
        propagate.inject(headers)  # the W3C trace context of the current span, if any
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self._shielded(
            self._request(method, self.url + path, body, headers), armed=True
        )

    async def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        try:
            async with self.session.request(method, url, data=body, headers=headers) as response:
                try:
                    self.bounds.check_headers(response.headers)
                    chunks = response.content.iter_chunked(self.CHUNK_BYTES)
                    return response.status, await self.bounds.read(chunks)
                except BaseException:
                    response.close()  # not read to its end: the connection goes, not reused
                    raise
        except TimeoutError:
            raise  # aiohttp's ServerTimeoutError is a ClientError too: a timeout, not a retry
        except aiohttp.ClientError as exc:
            tls = _tls_reason(exc)
            if tls is not None:
                raise AgencyFailure(
                    f"{self.agency}: {type(exc).__name__}: TLS failed ({tls})"
                ) from exc
            # Not reached, or the connection broke: worth one more try (AgencyFailure).
            raise AgencyFailure(f"{self.agency}: {type(exc).__name__}", transient=True) from exc

    def _entry(self, dataset: Dataset, entry: Any) -> Any:
        try:
            if entry is None:
                return () if dataset.many else None
            if dataset.many:
                return tuple(record_from_mapping(dataset.record, item) for item in entry)
            return record_from_mapping(dataset.record, entry)
        except (KeyError, TypeError, ValueError) as exc:
            # Name the problem, never the values: this text reaches operators.
            problem = type(exc).__name__
            return AgencyFailure(
                f"{self.agency} sent a malformed {dataset.name} record ({problem})"
            )


def _tls_reason(exc: BaseException) -> str | None:
    """The TLS reason when an aiohttp handshake failed (never the error's text), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        inner = getattr(seen, "certificate_error", None) or getattr(seen, "os_error", None)
        if isinstance(seen, ssl.SSLError) and getattr(seen, "reason", None):
            return str(seen.reason)
        if isinstance(inner, ssl.SSLError):
            return str(inner.reason or type(inner).__name__)
        if isinstance(seen, ssl.SSLError):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


async def _trace_context(request: httpx.Request) -> None:
    """The W3C ``traceparent`` of the current span (the gateway's span for this batch), so
    the agency's own traces join the caller's. Nothing is added while tracing is off."""
    propagate.inject(request.headers)


def _forget(requests: set[asyncio.Task[T]]) -> Callable[[asyncio.Task[T]], None]:
    def done(task: asyncio.Task[T]) -> None:
        requests.discard(task)
        if not task.cancelled():
            task.exception()  # an abandoned request's failure is nobody's to raise

    return done


def _transport_problem(exc: BaseException) -> str:
    """The error's kind, and the TLS reason when a handshake failed (never its text)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return f"{type(exc).__name__}: TLS failed ({seen.reason or type(seen).__name__})"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__
