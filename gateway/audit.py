"""The audit trail: one record per resident per request, committed before data leaves.

Records are chained: each row's ``hash`` is an HMAC over its content and the previous row's
hash, so changing, deleting or inserting a row breaks the chain at that row, and without the
audit key nobody can forge a consistent replacement. Concurrent requests share one
transaction (group commit): a single writer task drains the queue and writes everything
pending at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.errors import AuditUnavailable

log = logging.getLogger(__name__)

GENESIS = "0" * 64
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
COLUMNS = (
    "seq", "at", "request_id", "principal", "roles", "agency", "purpose", "subject",
    "disclosed", "denied", "prev_hash", "hash",
)  # fmt: skip
MAX_BATCH = 500


@dataclass(frozen=True)
class AuditRecord:
    at: dt.datetime
    request_id: str
    principal: str
    roles: str
    agency: str | None
    purpose: str
    subject: str
    disclosed: tuple[str, ...]
    denied: tuple[str, ...]


class AuditKeys:
    """Keys derived from the configured audit key: to hash RRNs, for the chain, for cursors."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an audit key is required")
        root = secret.encode()
        self._subject = hmac.new(root, b"subject", hashlib.sha256).digest()
        self._chain = hmac.new(root, b"chain", hashlib.sha256).digest()
        self.cursor_key = hmac.new(root, b"cursor", hashlib.sha256).digest()  # access-log cursors

    def subject(self, rrn: str) -> str:
        return hmac.new(self._subject, rrn.encode(), hashlib.sha256).hexdigest()

    def head(self, last_seq: int, last_hash: str, anchor_seq: int, anchor_hash: str) -> str:
        text = f"head:{last_seq}:{last_hash}:{anchor_seq}:{anchor_hash}".encode()
        return hmac.new(self._chain, text, hashlib.sha256).hexdigest()

    def chain(self, seq: int, record: AuditRecord, prev_hash: str) -> str:
        return hmac.new(self._chain, _canonical(seq, record, prev_hash), hashlib.sha256).hexdigest()


def _canonical(seq: int, r: AuditRecord, prev_hash: str) -> bytes:
    micros = (r.at - EPOCH) // dt.timedelta(microseconds=1)
    fields = [
        seq, micros, r.request_id, r.principal, r.roles, r.agency, r.purpose, r.subject,
        list(r.disclosed), list(r.denied), prev_hash,
    ]  # fmt: skip
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, keys: AuditKeys, write_timeout_s: float = 5.0) -> None:
        self.pool = pool
        self.keys = keys
        self.write_timeout_s = write_timeout_s
        self._queue: asyncio.Queue[tuple[list[AuditRecord], asyncio.Future[None]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.commits = 0
        self.records_written = 0

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def record(self, records: list[AuditRecord]) -> None:
        """Return once the records are committed; raise AuditUnavailable otherwise."""
        if not records:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((records, done))
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await asyncio.shield(done)
        except TimeoutError:
            raise AuditUnavailable("The access could not be recorded in time.") from None

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0][0])
            while not self._queue.empty() and count < MAX_BATCH:
                item = self._queue.get_nowait()
                batch.append(item)
                count += len(item[0])
            records = [r for records, _ in batch for r in records]
            try:
                await self._write(records)
            except Exception as exc:
                log.error("audit write failed (%s): %s", type(exc).__name__, exc)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(
                            AuditUnavailable("The access could not be recorded in the audit store.")
                        )
                continue
            self.commits += 1
            self.records_written += len(records)
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _write(self, records: Sequence[AuditRecord]) -> None:
        async with self.pool.acquire(timeout=self.write_timeout_s) as conn, conn.transaction():
            head = await conn.fetchrow("select * from gateway.audit_head where id = 1 for update")
            assert head is not None, "gateway.audit_head is missing its row"
            seq, prev = head["last_seq"], head["last_hash"]
            rows = []
            for record in records:
                seq += 1
                digest = self.keys.chain(seq, record, prev)
                rows.append(
                    (seq, record.at, record.request_id, record.principal, record.roles,
                     record.agency, record.purpose, record.subject, list(record.disclosed),
                     list(record.denied), prev, digest)
                )  # fmt: skip
                prev = digest
            await conn.copy_records_to_table(
                "audit_log", schema_name="gateway", records=rows, columns=COLUMNS
            )
            mac = self.keys.head(seq, prev, head["anchor_seq"], head["anchor_hash"])
            await conn.execute(
                "update gateway.audit_head set last_seq = $1, last_hash = $2, mac = $3"
                " where id = 1",
                seq,
                prev,
                mac,
            )

    async def entries_for(
        self, subject: str, first: int, before_seq: int | None
    ) -> list[asyncpg.Record]:
        """Newest first; ``first + 1`` rows so the caller can tell whether more exist."""
        return await self.pool.fetch(
            """select seq, at, roles, agency, purpose, disclosed, denied
               from gateway.audit_log
               where subject = $1 and ($2::bigint is null or seq < $2)
               order by seq desc limit $3""",
            subject,
            before_seq,
            first + 1,
        )

    async def purge(self, retention_days: int) -> int:
        return await purge(self.pool, self.keys, retention_days)


async def seal_head(
    conn: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any], keys: AuditKeys
) -> None:
    """Give a new (or pre-MAC) head row its MAC; a sealed head is left alone."""
    head = await conn.fetchrow("select * from gateway.audit_head where id = 1 for update")
    if head is not None and head["mac"] == "":
        if head["last_seq"] > 0:
            log.warning("audit head had no MAC (an older store); sealing it as it stands")
        mac = keys.head(
            head["last_seq"], head["last_hash"], head["anchor_seq"], head["anchor_hash"]
        )
        await conn.execute("update gateway.audit_head set mac = $1 where id = 1", mac)


async def purge(pool: asyncpg.Pool, keys: AuditKeys, retention_days: int) -> int:
    """Delete records older than the retention period, moving the chain's anchor past them."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=retention_days)
    async with pool.acquire() as conn, conn.transaction():
        head = await conn.fetchrow("select * from gateway.audit_head where id = 1 for update")
        assert head is not None, "gateway.audit_head is missing its row"
        last = await conn.fetchrow(
            """select seq, hash from gateway.audit_log where at < $1
               order by seq desc limit 1""",
            cutoff,
        )
        if last is None:
            return 0
        deleted = await conn.execute("delete from gateway.audit_log where seq <= $1", last["seq"])
        mac = keys.head(head["last_seq"], head["last_hash"], last["seq"], last["hash"])
        await conn.execute(
            "update gateway.audit_head set anchor_seq = $1, anchor_hash = $2, mac = $3"
            " where id = 1",
            last["seq"],
            last["hash"],
            mac,
        )
    return int(deleted.split()[-1])


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str

    def __str__(self) -> str:
        return f"row {self.seq}: {self.what}"


async def verify(conn: asyncpg.Connection, keys: AuditKeys) -> tuple[int, list[Problem]]:
    """Walk the chain from its anchor; return rows checked and every problem found."""
    head = await conn.fetchrow("select * from gateway.audit_head where id = 1")
    if head is None:
        return 0, [Problem(0, "the chain head row is missing")]
    problems: list[Problem] = []
    expected_mac = keys.head(
        head["last_seq"], head["last_hash"], head["anchor_seq"], head["anchor_hash"]
    )
    if not hmac.compare_digest(head["mac"], expected_mac):
        problems.append(
            Problem(head["last_seq"], "the chain head was rewritten (its MAC does not match)")
        )
    expected_seq, expected_prev = head["anchor_seq"] + 1, head["anchor_hash"]
    checked = 0
    async with conn.transaction(readonly=True):
        async for row in conn.cursor("select * from gateway.audit_log order by seq"):
            checked += 1
            seq = row["seq"]
            record = AuditRecord(
                at=row["at"], request_id=row["request_id"], principal=row["principal"],
                roles=row["roles"], agency=row["agency"], purpose=row["purpose"],
                subject=row["subject"], disclosed=tuple(row["disclosed"]),
                denied=tuple(row["denied"]),
            )  # fmt: skip
            if seq < expected_seq:
                problems.append(Problem(seq, "inserted: it precedes the chain's anchor"))
                continue
            if seq > expected_seq:
                problems.append(
                    Problem(seq, f"rows {expected_seq}..{seq - 1} were deleted before this one")
                )
            if row["prev_hash"] != expected_prev:
                problems.append(
                    Problem(seq, "inserted or reordered: it does not follow the row before")
                )
            if keys.chain(seq, record, row["prev_hash"]) != row["hash"]:
                problems.append(Problem(seq, "changed: its content does not match its hash"))
            expected_seq, expected_prev = seq + 1, row["hash"]
    if head["last_seq"] >= expected_seq:
        problems.append(
            Problem(
                head["last_seq"], f"rows {expected_seq}..{head['last_seq']} were deleted at the end"
            )
        )
    elif head["last_seq"] != expected_seq - 1 or head["last_hash"] != expected_prev:
        problems.append(
            Problem(expected_seq - 1, "inserted: rows past the recorded end of the chain")
        )
    return checked, problems
