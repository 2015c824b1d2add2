"""Optimisation experiments, applied to a gateway process by ``bench.launch --patch``.

Each patch prototypes one suggestion from BENCHMARKS.md by monkeypatching the running process
(never the files), so its effect can be measured end to end with the same harness:

* ``stable-rules``: build the QueryDepthLimiter / MaxAliasesLimiter rule classes once, so
  strawberry's ValidationCache key is the same for every request and validation is cached.
* ``per-field``: authorization per field in a schema extension, as before operation plans
  (the reference kept in ``tests/access/per_field.py``), to measure plans side by side.
* ``quiet-httpx``: httpx logs every agency call at INFO (two lines per resident lookup);
  raise its logger to WARNING.
* ``streams-http``: the HTTP agency adapter on a small keep-alive client over asyncio streams
  instead of httpx (same protocol, same records, same errors).
* ``listen-nodelay`` (for the demo agencies, ``--agency-nodelay``): TCP_NODELAY on listening
  sockets. ``gateway demo-agency`` binds its own socket, which uvicorn then serves without
  TCP_NODELAY, so every response waits ~40 ms for the client's delayed ACK (Nagle).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from adapters.base import AgencyFailure
from adapters.http import HTTPAdapter
from adapters.records import Dataset
from adapters.trust import optional_secret, static_header


@dataclass(frozen=True)
class Patch:
    name: str
    description: str
    apply: Callable[[], None]


# --------------------------------------------------------------------------------------------
# stable-rules


def _stable_rules() -> None:
    from strawberry.extensions import AddValidationRules

    import gateway.app
    import gateway.graphql_schema

    original = gateway.graphql_schema.build_schema

    @functools.wraps(original)
    def build_schema(*args: Any, **kwargs: Any) -> Any:
        schema = original(*args, **kwargs)
        extensions = []
        for ext in schema.extensions:
            made = ext() if callable(ext) and not isinstance(ext, type) else None
            if isinstance(made, AddValidationRules):
                # The same rule classes on every request: a stable ValidationCache key.
                ext = functools.partial(AddValidationRules, list(made.validation_rules))
            extensions.append(ext)
        schema.extensions = tuple(extensions)
        return schema

    gateway.graphql_schema.build_schema = build_schema
    gateway.app.build_schema = build_schema  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# quiet-httpx


def _quiet_httpx() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)


# --------------------------------------------------------------------------------------------
# streams-http


class StreamPool:
    """Keep-alive HTTP/1.1 connections to one host over asyncio streams, ``size`` at most.

    Requests carry ``Content-Length`` and answers must too (what uvicorn/Starlette send). A
    connection is reused only after a complete exchange and while it has been idle for less
    than ``max_idle_s`` (uvicorn closes idle keep-alive connections after 5 s); a request that
    fails on a reused connection before any answer arrives is retried once on a new one. One
    interrupted (timeout, cancellation, error) is closed.
    """

    def __init__(
        self, host: str, port: int, size: int, max_idle_s: float = 2.0, headers: str = ""
    ) -> None:
        self.host, self.port = host, port
        self.max_idle_s = max_idle_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.limit = asyncio.Semaphore(size)
        self._host_header = f"Host: {host}:{port}\r\n{headers}"

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < self.max_idle_s and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\n{self._host_header}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("ascii")
        async with self.limit:
            for attempt in (1, 2):
                pair = self._reusable() if attempt == 1 else None
                reused = pair is not None
                if pair is None:
                    pair = await asyncio.open_connection(self.host, self.port)
                reader, writer = pair
                try:
                    writer.write(head + body)
                    response = await reader.readuntil(b"\r\n\r\n")
                except (ConnectionError, asyncio.IncompleteReadError):
                    writer.close()
                    if reused:
                        continue  # the server had closed it: once more on a new connection
                    raise
                except BaseException:
                    writer.close()
                    raise
                try:
                    lowered = response.lower()
                    at = lowered.find(b"\r\ncontent-length:")
                    if at < 0:
                        raise AgencyFailure("answer without content-length")
                    at += 17
                    length = int(lowered[at : lowered.index(b"\r\n", at)])
                    data = await reader.readexactly(length)
                except BaseException:
                    writer.close()
                    raise
                if b"\r\nconnection: close" in lowered:
                    writer.close()
                else:
                    self.idle.append((reader, writer, time.monotonic()))
                return int(response[9:12]), data
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


class StreamsHTTPAdapter(HTTPAdapter):
    """:class:`adapters.http.HTTPAdapter` with httpx replaced by :class:`StreamPool`."""

    def __init__(self, agency: str, settings: Mapping[str, Any], **kw: Any) -> None:
        super().__init__(agency, settings, **kw)
        parts = urlsplit(self.url)
        self._prefix = parts.path.rstrip("/")
        # A static header (the demo agencies' credential); no TLS or OAuth2 here.
        header = optional_secret(settings, "auth_header", f"[agencies.{agency}]")
        extra = "" if header is None else "{}: {}\r\n".format(*static_header(header))
        self._pool = StreamPool(
            parts.hostname or "127.0.0.1", parts.port or 80, self.connections, headers=extra
        )

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._pool.close()

    async def ping(self) -> None:
        status, _ = await self._pool.request("GET", f"{self._prefix}/healthz")
        if status != 200:
            raise AgencyFailure(f"{self.agency} health check answered HTTP {status}")

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        body = json.dumps({"keys": list(keys)}).encode()
        try:
            status, data = await self._pool.request(
                "POST", f"{self._prefix}/v1/{dataset.name}:batch", body
            )
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise AgencyFailure(f"{self.agency}: {type(exc).__name__}") from exc
        if status != 200:
            raise AgencyFailure(f"{self.agency} answered HTTP {status}")
        try:
            entries = json.loads(data)["records"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AgencyFailure(f"{self.agency} answered something that is not a batch") from exc
        if not isinstance(entries, list) or len(entries) != len(keys):
            raise AgencyFailure(f"{self.agency} answered a batch of the wrong length")
        return [self._entry(dataset, entry) for entry in entries]


def _listen_nodelay() -> None:
    import socket

    original = socket.socket.listen

    def listen(self: socket.socket, *args: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and self.type == socket.SOCK_STREAM:
            # Linux hands the option down to every accepted connection.
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        original(self, *args)

    socket.socket.listen = listen  # type: ignore[method-assign,assignment]


def _streams_http() -> None:
    import gateway.agencies

    original = gateway.agencies.adapter_classes

    def adapter_classes() -> dict[str, Any]:
        return {**original(), "http": StreamsHTTPAdapter}

    gateway.agencies.adapter_classes = adapter_classes


# --------------------------------------------------------------------------------------------
# per-field


def _per_field() -> None:
    import gateway.app
    from tests.access.per_field import per_field_schema

    create_app = gateway.app.create_app

    @functools.wraps(create_app)
    def per_field_app(config: Any, schema: Any = None, **options: Any) -> Any:
        return create_app(config, schema or per_field_schema(config), **options)

    gateway.app.create_app = per_field_app


PATCHES: dict[str, Patch] = {
    p.name: p
    for p in (
        Patch("stable-rules", "validation rule classes built once", _stable_rules),
        Patch("quiet-httpx", "httpx logger at WARNING", _quiet_httpx),
        Patch("per-field", "authorization per field, no operation plans", _per_field),
        Patch("streams-http", "HTTP agencies over asyncio streams, not httpx", _streams_http),
        Patch(
            "listen-nodelay", "TCP_NODELAY on listening sockets (demo agencies)", _listen_nodelay
        ),
    )
}
