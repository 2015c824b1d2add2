"""PostgreSQL LISTEN for agency change notifications, on a dedicated connection that
reconnects when it drops (a pooled connection would lose its listeners on release)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "gateway_invalidate"
RECONNECT_MAX_S = 5.0
KEEPALIVE_S = 15.0

Handler = Callable[[str, list[str]], Coroutine[Any, Any, None]]


class ChangeListener:
    """Calls ``handler(dataset, keys)`` for each notification on ``CHANNEL``."""

    def __init__(
        self,
        dsn: str,
        handler: Handler,
        name: str = "",
        on_reconnect: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.dsn = dsn
        self.handler = handler
        self.on_reconnect = on_reconnect
        self.name = name
        self.connected = asyncio.Event()
        self.received = 0
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN %s: cannot connect (%s); retrying", self.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            try:
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                if not first and self.on_reconnect is not None:
                    # Notifications sent while we were away are lost: forget what they
                    # might have invalidated.
                    try:
                        await self.on_reconnect()
                    except Exception as exc:
                        log.warning("LISTEN %s: could not flush after reconnecting: %s",
                                    self.name, exc)  # fmt: skip
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RECONNECT_MAX_S)
                        continue
                first = False
                self.connected.set()
                delay = 0.1
                log.info("LISTEN %s: listening on %s", self.name, CHANNEL)
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), KEEPALIVE_S)
                    except TimeoutError:
                        # A connection can die without telling us; ask it something.
                        try:
                            await conn.fetchval("select 1", timeout=5)
                        except Exception:
                            break
                log.warning("LISTEN %s: connection lost; reconnecting", self.name)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            event = json.loads(str(payload))
            dataset, keys = str(event["dataset"]), [str(k) for k in event["keys"]]
        except (ValueError, KeyError, TypeError):
            log.warning("LISTEN %s: ignoring a malformed notification", self.name)
            return
        self.received += 1
        task = asyncio.create_task(self.handler(dataset, keys))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
