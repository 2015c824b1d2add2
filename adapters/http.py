"""An agency read over HTTP: one client per agency, many keys per request.

The wire protocol (what the demo agencies in ``gateway.demo.agencies`` serve)::

    POST {url}/v1/{dataset}:batch        {"keys": ["940812-1001751", ...]}
    200  {"records": [{...} | null | [{...}, ...], ...]}     one entry per key, in order

Agencies speaking another protocol get an adapter of their own (see ``adapters.base``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import aiohttp
import httpx
import orjson

from adapters.base import Adapter, AgencyFailure
from adapters.records import Dataset, record_from_mapping
from adapters.trust import OAuth2ClientCredentials, TrustError, http_client_options


class HTTPClientAdapter(Adapter):
    """What every adapter over httpx shares: one client per agency with the trust settings
    of :mod:`adapters.trust`, a connection limit, and requests that are never cancelled in
    flight (see :meth:`_send`). Subclasses add the protocol: ``fetch`` and ``ping``.

    Settings: ``url`` (required), ``max_concurrency`` (connection limit, default 10),
    ``timeout_ms`` (socket timeouts, default 2000), and ``ca_file``, ``client_cert``,
    ``client_key``, ``client_key_password``, ``oauth2_token_url``, ``oauth2_client_id``,
    ``oauth2_client_secret``, ``oauth2_scope``, ``auth_header``."""

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
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._requests: set[asyncio.Task[httpx.Response]] = set()
        self._auth: OAuth2ClientCredentials | None = None

    async def start(self) -> None:
        try:
            options = http_client_options(
                self.agency, self.settings, timeout=self.timeout, token_transport=self._transport
            )
        except TrustError as exc:
            raise AgencyFailure(str(exc)) from None
        self._auth = options.get("auth")
        if self.url_is_base:
            options["base_url"] = self.url
        self._client = httpx.AsyncClient(
            **options,
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=self.connections, max_keepalive_connections=self.connections
            ),
            transport=self._transport,
        )

    async def close(self) -> None:
        for request in list(self._requests):
            request.cancel()  # the pool closes next: nothing left to leak into
        await asyncio.gather(*self._requests, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._auth is not None:
            await self._auth.aclose()
            self._auth = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise AgencyFailure(f"{self.agency}: adapter used before start()")
        return self._client

    async def _send(self, request: Coroutine[Any, Any, httpx.Response]) -> httpx.Response:
        # httpcore keeps a pool slot for ever when a request is cancelled while it waits for
        # a connection (encode/httpcore#1093): after max_concurrency of the gateway's
        # timeouts every call fails with PoolTimeout. So a request is never cancelled: a
        # cancelled fetch abandons it, and it ends within the client's own timeout.
        task = asyncio.ensure_future(request)
        self._requests.add(task)
        task.add_done_callback(_forget(self._requests))
        return await asyncio.shield(task)


class HTTPAdapter(Adapter):
    """Our JSON batch protocol (above), over aiohttp's client with orjson: measured at about a
    quarter of httpx's CPU per call (``bench/http_clients.py``, BENCHMARKS.md). Settings:
    those of :class:`HTTPClientAdapter`, with the same trust features (private CA, mutual
    TLS, a static header, OAuth2 client credentials: :mod:`adapters.trust`)."""

    datasets = frozenset({"taxes", "military_service", "insurance", "pension"})
    #: Idle keep-alive connections are dropped before the agency drops them (uvicorn: 5 s).
    KEEPALIVE_S = 2.0

    def __init__(self, agency: str, settings: Mapping[str, Any]) -> None:
        super().__init__(agency, settings)
        self.url = str(settings["url"]).rstrip("/")
        self.connections = int(settings.get("max_concurrency", 10))
        self.timeout = int(settings.get("timeout_ms", 2000)) / 1000
        self._session: aiohttp.ClientSession | None = None
        self._auth: OAuth2ClientCredentials | None = None

    async def start(self) -> None:
        try:
            options = http_client_options(self.agency, self.settings, timeout=self.timeout)
        except TrustError as exc:
            raise AgencyFailure(str(exc)) from None
        self._auth = options.get("auth")
        context: ssl.SSLContext | None = options.get("verify")
        headers = {"Content-Type": "application/json", **options.get("headers", {})}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.connections,
                ssl=context if context is not None else True,
                keepalive_timeout=self.KEEPALIVE_S,
            ),
            headers=headers,
            # A TimeoutError goes up as it is: the gateway answers it as AGENCY_TIMEOUT.
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._auth is not None:
            await self._auth.aclose()
            self._auth = None

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
        status, content = await self._exchange("POST", f"/v1/{dataset.name}:batch", body)
        if status != 200:
            raise AgencyFailure(f"{self.agency} answered HTTP {status}", transient=status >= 500)
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
        headers = None if token is None else {"Authorization": f"Bearer {token}"}
        try:
            async with self.session.request(
                method, self.url + path, data=body, headers=headers
            ) as response:
                return response.status, await response.read()
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
    """The TLS reason when a handshake failed (never the error's text), else None."""
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


def _forget(
    requests: set[asyncio.Task[httpx.Response]],
) -> Callable[[asyncio.Task[httpx.Response]], None]:
    def done(task: asyncio.Task[httpx.Response]) -> None:
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
