"""Agency answers read within bounds: at most ``max_bytes`` of body, and the whole exchange
(connection, request, answer) within a deadline, whether or not anyone still waits for it.

httpx's timeouts are per socket operation: an agency that sends a byte now and then, or an
endless body fast enough, is never timed out, and ``response.json()`` reads all of it into
memory. :class:`AnswerBounds` closes both holes for every request an ``httpx.AsyncClient``
sends, whether the caller streams or not:

* ``client = httpx.AsyncClient(event_hooks=bounds.event_hooks(), ...)`` caps every answer's
  body (a longer one fails while being read, its connection closed) and asks for answers
  that are not compressed (a compressed one is refused: its size would not be its size);
* ``await bounds.run(client.post(...))`` runs a request under the deadline.

A client of another library (``adapters.http.HTTPAdapter``, aiohttp) uses the same parts:
``run(..., armed=True)`` (the deadline counts at once: no pool slot can leak),
:meth:`AnswerBounds.check_headers` and :meth:`AnswerBounds.read`.

The deadline counts from the moment the request holds a connection (the first httpcore trace
event, or the answer's headers): a request cancelled while it waits for a pool slot leaks
the slot for ever (encode/httpcore#1093), so that wait is bounded by httpx's pool timeout
only, and an exchange lasts at most the pool timeout plus ``timeout``. Cancelling later is
safe: httpcore closes the connection.

Exceeding the cap is an :class:`~adapters.base.AgencyFailure` naming the agency (the gateway
shows AGENCY_UNAVAILABLE); exceeding the deadline is an :class:`AnswerTimeout`, which is also
a ``TimeoutError`` (AGENCY_TIMEOUT).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from adapters.base import AgencyFailure

#: The default cap on one answer's body (``[agencies.<code>] max_response_bytes``).
DEFAULT_MAX_RESPONSE_BYTES = 16 << 20

T = TypeVar("T")


class AnswerTimeout(AgencyFailure, TimeoutError):
    """An agency's answer did not arrive whole within the deadline."""


@dataclass
class _Deadline:
    scope: asyncio.Timeout
    seconds: float

    def arm(self) -> None:
        if self.scope.when() is None:
            self.scope.reschedule(asyncio.get_running_loop().time() + self.seconds)


#: The deadline of the request running in this task (set by :meth:`AnswerBounds.run`).
_current: ContextVar[_Deadline | None] = ContextVar("adapters_bounded_deadline", default=None)


def _arm() -> None:
    deadline = _current.get()
    if deadline is not None:
        deadline.arm()


async def _arm_on_trace(event: str, info: dict[str, Any]) -> None:
    # Every httpcore trace event happens on a connection the request already holds.
    _arm()


class AnswerBounds:
    """The bounds on one agency's answers: ``max_bytes`` of body, ``timeout`` seconds for a
    whole exchange (see the module's docstring). ``agency`` starts every failure's message;
    ``setting`` (the key that raises the cap) ends the one for a body too large."""

    def __init__(
        self,
        agency: str,
        max_bytes: int,
        timeout: float,
        *,
        setting: str | None = "max_response_bytes",
    ) -> None:
        self.agency, self.max_bytes, self.timeout = agency, max_bytes, timeout
        self.setting = setting

    def event_hooks(self) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
        """``event_hooks`` for the agency's ``httpx.AsyncClient``."""
        return {"request": [self._on_request], "response": [self._on_response]}

    async def run(self, work: Coroutine[Any, Any, T], *, armed: bool = False) -> T:
        """``await work`` (a request of a client with :meth:`event_hooks`) within the
        deadline; raises :class:`AnswerTimeout` when it passes. ``armed``: the deadline
        counts from now, not from when the request holds a connection."""
        scope = asyncio.timeout(None)
        try:
            async with scope:
                deadline = _Deadline(scope, self.timeout)
                if armed:
                    deadline.arm()
                token = _current.set(deadline)
                try:
                    return await work
                finally:
                    _current.reset(token)
        except TimeoutError:
            if not scope.expired():
                raise  # not ours: a token endpoint's deadline, say
            raise AnswerTimeout(
                f"{self.agency} did not answer whole within {round(self.timeout * 1000)} ms"
            ) from None

    async def _on_request(self, request: httpx.Request) -> None:
        request.headers["Accept-Encoding"] = "identity"
        if "trace" not in request.extensions:
            request.extensions["trace"] = _arm_on_trace

    async def _on_response(self, response: httpx.Response) -> None:
        _arm()
        self.check_headers(response.headers)
        response.stream = _Capped(response.stream, self)

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """Refuse an answer that is compressed or says it is longer than the cap."""
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise AgencyFailure(
                f"{self.agency} answered compressed content ({encoding[:20]}) though asked not to"
            )
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise self._too_large()

    async def capped(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """``chunks``, failing once they pass the cap (stop reading then: close the answer)."""
        seen = 0
        async for chunk in chunks:
            seen += len(chunk)
            if seen > self.max_bytes:
                raise self._too_large()
            yield chunk

    async def read(self, chunks: AsyncIterable[bytes]) -> bytes:
        """A whole body of at most ``max_bytes``."""
        return b"".join([chunk async for chunk in self.capped(chunks)])

    def _too_large(self) -> AgencyFailure:
        shown = f" ({self.setting})" if self.setting else ""
        return AgencyFailure(f"{self.agency} answered more than {self.max_bytes} bytes{shown}")


class _Capped(httpx.AsyncByteStream):
    """A body that fails once it passes the cap (httpx then closes the connection)."""

    def __init__(self, stream: Any, bounds: AnswerBounds) -> None:
        self._stream, self._bounds = stream, bounds

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._bounds.capped(self._stream):
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()
