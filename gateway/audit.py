"""The audit trail: one record per resident per request, committed before data leaves.

Records are chained (see ``gateway.audit_chain``): each row's ``hash`` is an HMAC over its
content and the previous row's hash, so changing, deleting or inserting a row breaks the chain
at that row, and without the audit key nobody can forge a consistent replacement. Concurrent
requests share one transaction (group commit): a single writer task drains the queue and
writes everything pending at once.

- The writer checks the head row's MAC in every transaction (it locks that row anyway) and
  writes nothing while it is wrong: resident data is withheld until ``gateway audit repair``.
- A genuine but old head (saved earlier and restored after the rows behind it were cut) has a
  valid MAC, so the writer also keeps the highest head this process has seen or written (its
  "mark") and refuses a head that went back from it, or no longer contains it. With
  ``[audit] head_file`` the mark is recorded outside the database (at most about once a
  second, and on close) and read back at start-up, so the check survives restarts.
- A record the database cannot take (a NUL in a text, say) fails its own request only: a
  failed group is written again one request at a time.
- A request that gave up waiting (timed out, or went away) before the writer took its records
  is left out of the transaction: the trail holds only records of responses that could be
  released. The writer takes ("claims") a request's records after it holds the head lock and
  has checked the head; from then on the request waits for that transaction's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from gateway import observe
from gateway.audit_admin import Problem, purge, verify
from gateway.audit_chain import (
    GENESIS,
    AuditKeys,
    AuditRecord,
    Conn,
    head_problem,
    mark_problem,
    read_head,
    read_head_file,
    row_hash_ok,
    write_head_file,
)
from gateway.errors import AuditUnavailable

__all__ = ["GENESIS", "AuditKeys", "AuditLog", "AuditRecord", "Problem", "purge", "verify"]

log = logging.getLogger(__name__)

COLUMNS = (
    "seq", "at", "request_id", "principal", "roles", "agency", "purpose", "subject",
    "disclosed", "denied", "prev_hash", "hash", "note",
)  # fmt: skip
MAX_BATCH = 500
#: Commits taken on the locked path after the one-statement commit found the head moved.
LOCKED_AFTER_MISS = 64
#: Groups of more records take the locked path: COPY writes many rows for less than the
#: statement's arrays, and their round trips are shared by more records (measured: a group of
#: 4 records 0.44 against 1.19 ms of CPU, 300 records 13.9 against 14.1 ms but 3.5 ms longer).
#: With 64, households (21 records a request) came out 6-10 % worse with it than without in
#: two noisy runs (bench.ab --switch append, another process busy): commits that end sooner
#: may gather smaller groups. With 16, 1.04 x better on both profiles in a quiet run.
APPEND_MAX_RECORDS = 16

#: One statement: the head moves from the row this process last left (every column compared)
#: to the new one, and the records go in only if it did; in the same snapshot, so either both
#: happen or neither. A head row another transaction holds is skipped, never waited for (that
#: writer may move it; and the requests are claimed already, see ``_write``): the commit goes
#: the locked way. $1-$3: the new head; $4-$8: the expected one; then one array a column.
APPEND = """
with expected as (
    select 1 from gateway.audit_head
    where id = 1 and last_seq = $4 and last_hash = $5 and mac = $6
      and anchor_seq = $7 and anchor_hash = $8
    for update skip locked
), moved as (
    update gateway.audit_head set last_seq = $1, last_hash = $2, mac = $3
    where id = 1 and exists (select 1 from expected)
    returning 1
)
insert into gateway.audit_log (seq, at, request_id, principal, roles, agency, purpose,
                               subject, disclosed, denied, prev_hash, hash, note)
select r.seq, r.at, r.request_id, r.principal, r.roles, r.agency, r.purpose, r.subject,
       array(select jsonb_array_elements_text(r.disclosed)),
       array(select jsonb_array_elements_text(r.denied)),
       r.prev_hash, r.hash, r.note
from unnest($9::bigint[], $10::timestamptz[], $11::text[], $12::text[], $13::text[],
            $14::text[], $15::text[], $16::text[], $17::jsonb[], $18::jsonb[], $19::text[],
            $20::text[], $21::text[])
     as r(seq, at, request_id, principal, roles, agency, purpose, subject, disclosed,
          denied, prev_hash, hash, note)
where exists (select 1 from moved)
"""


@dataclass(frozen=True)
class Head:
    """The chain's head row, every column of it."""

    last_seq: int
    last_hash: str
    mac: str
    anchor_seq: int
    anchor_hash: str

    @classmethod
    def of(cls, row: asyncpg.Record) -> Head:
        return cls(
            row["last_seq"], row["last_hash"], row["mac"], row["anchor_seq"], row["anchor_hash"]
        )
#: This many audit commits failing in a row (none succeeding between) make ``failing`` say so,
#: and /readyz take the replica out of its pool: one record the database cannot take fails
#: alone, a store that refuses every commit (a row forged at the chain's next place, say) does not.
FAILING_AFTER = 3
#: The head file is rewritten at most this often (and once more on close).
HEAD_FILE_EVERY_S = 1.0
#: Errors that say the store is unreachable, not that one record is unwritable: a failed
#: group is not retried request by request for these.
STORE_DOWN = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


class AuditStoreRefused(Exception):
    """The chain head cannot be trusted; nothing is written until an operator repairs it."""


class State(enum.Enum):
    WAITING = "waiting"
    CLAIMED = "claimed"  # in the writer's open transaction: the request awaits its outcome
    ABANDONED = "abandoned"  # the request gave up first: its records are never written


@dataclass(eq=False)
class Pending:
    records: list[AuditRecord]
    done: asyncio.Future[None]
    state: State = State.WAITING

    def waiting(self) -> bool:
        """Not (or no longer) taken by the writer: the state moves while the request waits."""
        return self.state is State.WAITING


class AuditLog:
    def __init__(
        self,
        pool: asyncpg.Pool,
        keys: AuditKeys,
        write_timeout_s: float = 5.0,
        head_file: str | None = None,
    ) -> None:
        self.pool = pool
        self.keys = keys
        self.write_timeout_s = write_timeout_s
        self.head_file = head_file or None
        self._queue: asyncio.Queue[Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        #: The highest head (last_seq, last_hash) seen or written, and where it came from.
        self.mark: tuple[int, str] | None = None
        self._mark_from = "seen by this gateway"
        self._mark_problem: str | None = None  # the head file could not be read
        self._saved: tuple[int, str] | None = None
        self._dirty = asyncio.Event()
        self.commits = 0
        self.records_written = 0
        self.abandoned = 0
        self._failed_in_a_row = 0
        self._last_failure = ""
        #: The head row exactly as this process's last commit left it (every column), while
        #: nothing has gone wrong since: the one-statement commit's expectation (see
        #: ``_write_appending``). None: take the locked path.
        self._known: Head | None = None
        self._locked_only = 0  # commits left on the locked path after a missed expectation
        self.fast_commits = 0

    async def start(self) -> None:
        if self.head_file is not None:
            try:
                self.mark = await asyncio.to_thread(read_head_file, self.head_file)
            except (OSError, ValueError) as exc:
                self._mark_problem = f"the head file cannot be read ({exc})"
            if self.mark is not None:
                self._mark_from = f"recorded in {self.head_file}"
                self._saved = self.mark
            elif self._mark_problem is None:
                log.warning("audit head file %s does not exist yet: starting it",
                            self.head_file)  # fmt: skip
            self._saver = asyncio.create_task(self._save_loop(), name="audit-head-file")
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    async def close(self) -> None:
        for task in (self._writer, self._saver):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._save()

    async def _save_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._save()
            except OSError as exc:
                log.error("audit head file %s not written: %s", self.head_file, exc)
            await asyncio.sleep(HEAD_FILE_EVERY_S)

    async def _save(self) -> None:
        mark = self.mark
        if self.head_file is None or mark is None or mark == self._saved:
            return
        await asyncio.to_thread(write_head_file, self.head_file, mark)
        self._saved = mark

    def _advance(self, head: tuple[int, str]) -> None:
        if self.mark is None or head[0] > self.mark[0]:
            self.mark = head
            self._mark_from = "seen by this gateway"
            self._dirty.set()

    async def _check_mark(self, conn: Conn, head: asyncpg.Record) -> None:
        """Refuse a sealed head that is not a successor of the highest head seen."""
        if self._mark_problem is not None:
            raise AuditStoreRefused(self._mark_problem)
        if self.mark is not None and (head["last_seq"], head["last_hash"]) != self.mark:
            problem = await mark_problem(conn, self.keys, head, self.mark, self._mark_from)
            if problem is not None:
                raise AuditStoreRefused(problem)
        self._advance((head["last_seq"], head["last_hash"]))

    async def record(self, records: list[AuditRecord]) -> None:
        """Return once the records are committed; raise AuditUnavailable otherwise."""
        if not records:
            return
        item = Pending(records, asyncio.get_running_loop().create_future())
        await self._queue.put(item)
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await asyncio.shield(item.done)
                return
        except TimeoutError:
            if item.state is not State.CLAIMED:
                raise AuditUnavailable("The access could not be recorded in time.") from None
        finally:
            if item.state is State.WAITING:  # timed out or cancelled: never write these
                item.state = State.ABANDONED
        # The writer holds these records in an open transaction: its outcome decides.
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await asyncio.shield(item.done)
        except TimeoutError:
            if item.waiting():
                # Released again by a one-statement commit that missed (see _write) and not
                # yet taken under the lock: it never will be now.
                item.state = State.ABANDONED
                raise AuditUnavailable("The access could not be recorded in time.") from None
            log.error(
                "audit commit outcome unknown for request %s: withheld; if the commit went"
                " through, its records name a disclosure that was not released",
                records[0].request_id,
            )
            raise AuditUnavailable("The access could not be recorded in time.") from None

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            count = len(batch[0].records)
            while not self._queue.empty() and count < MAX_BATCH:
                item = self._queue.get_nowait()
                batch.append(item)
                count += len(item.records)
            await self._commit(batch)

    @property
    def failing(self) -> str | None:
        """Why the last commits all failed, once ``FAILING_AFTER`` of them did; else None."""
        if self._failed_in_a_row < FAILING_AFTER:
            return None
        return f"the last {self._failed_in_a_row} audit commits failed ({self._last_failure})"

    async def _commit(self, batch: list[Pending]) -> None:
        started = time.perf_counter()
        try:
            written = await self._write(batch)
        except AuditStoreRefused as exc:
            self._count_failure(exc)
            observe.audit_failed()
            log.error("audit store refused: %s; resident data is withheld until an operator"
                      " runs `gateway audit repair`", exc)  # fmt: skip
            _fail(batch)
            return
        except Exception as exc:
            self._count_failure(exc)
            if len(batch) > 1 and not isinstance(exc, STORE_DOWN):
                log.warning("audit group of %d requests failed (%s); writing them one by one",
                            len(batch), type(exc).__name__)  # fmt: skip
                for item in batch:
                    await self._commit([item])
                return
            log.error("audit write failed (%s): %s", type(exc).__name__, exc)
            observe.audit_failed()
            _fail(batch)
            return
        self._failed_in_a_row = 0
        if written:
            self.commits += 1
            self.records_written += sum(len(item.records) for item in written)
            observe.audit_committed(
                time.perf_counter() - started, sum(len(item.records) for item in written)
            )
        for item in written:
            if not item.done.done():
                item.done.set_result(None)

    def _count_failure(self, exc: Exception) -> None:
        self._failed_in_a_row += 1
        self._last_failure = type(exc).__name__  # never its text: it may quote a record

    async def _write(self, batch: Sequence[Pending]) -> list[Pending]:
        """Write the records of every request still waiting; return those requests.

        In one statement when the head row is still the one this process's last commit left
        (``_write_appending``), else in a transaction that locks and checks the head
        (``_write_locked``)."""
        known, self._known = self._known, None  # re-set only by a commit that went through
        # The mark may have moved past this process's last commit (``head_problem`` saw
        # another worker's head: /readyz, the purge): then the head it expects may be one the
        # locked path refuses (rolled back behind the mark), so it is checked under the lock.
        if (
            known is not None
            and self._mark_problem is None
            and self._locked_only <= 0
            and self.mark == (known.last_seq, known.last_hash)
        ):
            live = self._claim(batch)
            if not live:
                self._known = known
                return live
            if sum(len(item.records) for item in live) <= APPEND_MAX_RECORDS:
                if await self._write_appending(live, known):
                    self.fast_commits += 1
                    return live
                # Another writer (a worker, `gateway audit purge`, a DBA) moved the head or
                # holds it: check it under the lock, and leave the fast path alone for a while
                # (several writers on one chain would keep missing each other). Released
                # from their claim: the locked path claims a request only once it holds the
                # head, so one that gives up while it waits for the lock is left out.
                self._locked_only = LOCKED_AFTER_MISS
                for item in live:
                    item.state = State.WAITING
            batch = live  # claimed (the abandoned ones counted) already
        self._locked_only = max(self._locked_only - 1, 0)
        return await self._write_locked(batch)

    def _claim(self, batch: Sequence[Pending]) -> list[Pending]:
        live = [item for item in batch if item.state is not State.ABANDONED]
        if len(live) < len(batch):
            self.abandoned += len(batch) - len(live)
            log.warning("%d request(s) gave up before their audit records were written;"
                        " their records are left out (nothing was released)",
                        len(batch) - len(live))  # fmt: skip
        for item in live:
            item.state = State.CLAIMED
        return live

    async def _write_appending(self, live: Sequence[Pending], known: Head) -> bool:
        """The records appended and the head moved in one statement, on condition that the
        head row is, every column of it, the one this process's last commit left (so it is
        sealed and a successor of every head seen, as ``_write_locked`` checks). False, and
        nothing written, when it is not."""
        seq, prev = known.last_seq, known.last_hash
        columns: list[list[Any]] = [[] for _ in COLUMNS]
        for record in (r for item in live for r in item.records):
            seq += 1
            digest = self.keys.chain(seq, record, prev)
            row = (
                seq, record.at, record.request_id, record.principal, record.roles,
                record.agency, record.purpose, record.subject,
                orjson.dumps(list(record.disclosed)).decode(),
                orjson.dumps(list(record.denied)).decode(), prev, digest, record.note,
            )  # fmt: skip
            for column, value in zip(columns, row, strict=True):
                column.append(value)
            prev = digest
        mac = self.keys.head(seq, prev, known.anchor_seq, known.anchor_hash)
        async with self.pool.acquire(timeout=self.write_timeout_s) as conn:
            status = await conn.execute(
                APPEND,
                seq, prev, mac,
                known.last_seq, known.last_hash, known.mac, known.anchor_seq, known.anchor_hash,
                *columns,
            )  # fmt: skip
        if status == "INSERT 0 0":
            return False  # the head was not the expected one: nothing written
        if status != f"INSERT 0 {len(columns[0])}":
            # The head moved and some rows went in, others not (a trigger dropped them): no
            # miss to write again (every record twice); refused, and verify names the gap.
            raise AuditStoreRefused(f"the store took part of a group ({status})")
        self._known = Head(seq, prev, mac, known.anchor_seq, known.anchor_hash)
        self._advance((seq, prev))
        return True

    async def _write_locked(self, batch: Sequence[Pending]) -> list[Pending]:
        """``_write`` in a transaction holding the head row's lock: the head checked (its MAC,
        and a successor of every head seen), the records copied, the head moved."""
        async with self.pool.acquire(timeout=self.write_timeout_s) as conn, conn.transaction():
            head = await read_head(conn, for_update=True)
            problem = head_problem(self.keys, head)
            if problem is not None:
                raise AuditStoreRefused(problem)
            assert head is not None
            await self._check_mark(conn, head)
            live = self._claim(batch)
            if not live:
                self._known = Head.of(head)
                return live
            seq, prev = head["last_seq"], head["last_hash"]
            rows = []
            for record in (r for item in live for r in item.records):
                seq += 1
                digest = self.keys.chain(seq, record, prev)
                rows.append(
                    (seq, record.at, record.request_id, record.principal, record.roles,
                     record.agency, record.purpose, record.subject, list(record.disclosed),
                     list(record.denied), prev, digest, record.note)
                )  # fmt: skip
                prev = digest
            copied = await conn.copy_records_to_table(
                "audit_log", schema_name="gateway", records=rows, columns=COLUMNS
            )
            if copied != f"COPY {len(rows)}":  # rows dropped (a trigger): roll back, no release
                raise RuntimeError(f"the store took part of a group ({copied})")
            mac = self.keys.head(seq, prev, head["anchor_seq"], head["anchor_hash"])
            await conn.execute(
                "update gateway.audit_head set last_seq = $1, last_hash = $2, mac = $3"
                " where id = 1",
                seq,
                prev,
                mac,
            )
        self._advance((seq, prev))  # committed
        self._known = Head(seq, prev, mac, head["anchor_seq"], head["anchor_hash"])
        return live

    async def entries_for(
        self, subject: str, first: int, before_seq: int | None
    ) -> list[asyncpg.Record]:
        """Newest first; ``first + 1`` rows so the caller can tell whether more exist.

        Only the chain's rows: the gateway's role may append rows (so may a DBA), and a row
        that no request wrote lies past the sealed head or at or before its anchor (every seq
        in between is taken). While the head is refused, only rows whose own hash verifies."""
        async with self.pool.acquire(timeout=self.write_timeout_s) as conn:
            head = await read_head(conn)
            if head_problem(self.keys, head) is None:
                assert head is not None
                return await conn.fetch(
                    """select seq, at, roles, agency, purpose, disclosed, denied, note
                       from gateway.audit_log
                       where subject = $1 and ($2::bigint is null or seq < $2)
                         and seq > $4 and seq <= $5
                       order by seq desc limit $3""",
                    subject,
                    before_seq,
                    first + 1,
                    head["anchor_seq"],
                    head["last_seq"],
                )
            found: list[asyncpg.Record] = []
            async with conn.transaction(readonly=True):
                async for row in conn.cursor(
                    """select * from gateway.audit_log
                       where subject = $1 and ($2::bigint is null or seq < $2) and seq > 0
                       order by seq desc""",
                    subject,
                    before_seq,
                    prefetch=first + 1,
                ):
                    if row_hash_ok(self.keys, row):
                        found.append(row)
                        if len(found) > first:
                            break
            return found

    async def purge(self, retention_days: int) -> int:
        problem = await self.head_problem()
        if problem is not None:
            log.warning("audit retention skipped: %s", problem)
            return 0
        return await purge(self.pool, self.keys, retention_days)

    async def head_problem(self) -> str | None:
        """What is wrong with the chain head right now (None: it is sealed, valid, and not
        behind the highest head this gateway has seen or recorded)."""
        async with self.pool.acquire(timeout=self.write_timeout_s) as conn:
            head = await read_head(conn)
            problem = head_problem(self.keys, head)
            if problem is not None or head is None:
                return problem
            try:
                await self._check_mark(conn, head)
            except AuditStoreRefused as exc:
                return str(exc)
            return None


def _fail(batch: Sequence[Pending]) -> None:
    for item in batch:
        # A request that gave up awaits nothing: an exception set there is never retrieved.
        if item.state is not State.ABANDONED and not item.done.done():
            item.done.set_exception(
                AuditUnavailable("The access could not be recorded in the audit store.")
            )
