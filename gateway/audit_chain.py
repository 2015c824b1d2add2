"""The audit chain itself: records, keys, the canonical form each row's HMAC covers, and the
authenticated head row (the chain's end and its anchor after retention purges).

The head row is sealed (given its MAC) in the same statement that creates it, so a head
without a valid MAC is never a fresh store: it is tampering (or damage), and the gateway
withholds resident data until an operator runs ``gateway audit repair``.

The anchor is provable from the chain itself: every purge appends a row (purpose AUDIT_PURGE)
stating the anchor it moved the head to, and every repair a row (AUDIT_REPAIR) stating the
anchor it sealed; the newest such row always sits after the anchor it states. Nothing ever
takes the anchor from a head that failed its MAC.

A head that is genuine (its MAC verifies) may still be an old one restored by someone who can
write to the database: each gateway remembers the highest head it has seen (and, with
``[audit] head_file``, across restarts) and refuses a head that went back (``mark_problem``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import orjson

GENESIS = "0" * 64
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: The purpose of the chain row ``gateway audit repair`` appends (not a resident access).
REPAIR = "AUDIT_REPAIR"
#: The purpose of the chain row each retention purge appends, stating the new anchor.
PURGE = "AUDIT_PURGE"
#: The purpose of an analyst's aggregate query: no subject (no resident), what was asked in
#: its note (measure, grouping, filter), so it is in no citizen's access log.
STATISTICS = "STATISTICS"

Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"


@dataclass(frozen=True, slots=True)
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
    #: Only on records that concern no resident (a purge, a repair, statistics): JSON text.
    note: str | None = None


class AuditKeys:
    """Keys derived from the configured audit key: to hash RRNs, for the chain, for cursors."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("an audit key is required")
        root = secret.encode()
        self._subject = hmac.new(root, b"subject", hashlib.sha256).digest()
        self._chain = hmac.new(root, b"chain", hashlib.sha256).digest()
        # RRN -> its subject digest: a household's request asks for 20 of them, and the same
        # residents come back (the process holds their data in its cache as well).
        self._subjects: dict[str, str] = {}
        self.cursor_key = hmac.new(root, b"cursor", hashlib.sha256).digest()  # access-log cursors

    # hmac.digest: the one-shot C path, the same MAC as hmac.new(...) at a third of the cost.
    def subject(self, rrn: str) -> str:
        found = self._subjects.get(rrn)
        if found is None:
            found = hmac.digest(self._subject, rrn.encode(), "sha256").hex()
            if len(self._subjects) >= _SUBJECTS_KEPT:
                self._subjects.clear()  # a bound, not an LRU: residents come and go
            self._subjects[rrn] = found
        return found

    def head(self, last_seq: int, last_hash: str, anchor_seq: int, anchor_hash: str) -> str:
        text = f"head:{last_seq}:{last_hash}:{anchor_seq}:{anchor_hash}".encode()
        return hmac.digest(self._chain, text, "sha256").hex()

    def chain(self, seq: int, record: AuditRecord, prev_hash: str) -> str:
        return hmac.digest(self._chain, _canonical(seq, record, prev_hash), "sha256").hex()


def _canonical(seq: int, r: AuditRecord, prev_hash: str) -> bytes:
    micros = (r.at - EPOCH) // dt.timedelta(microseconds=1)
    fields = [
        seq, micros, r.request_id, r.principal, r.roles, r.agency, r.purpose, r.subject,
        list(r.disclosed), list(r.denied), prev_hash,
    ]  # fmt: skip
    if r.note is not None:  # rows without a note hash as they did before notes existed
        fields.append(r.note)
    # orjson writes what json.dumps does for printable ASCII without escapes (the common
    # case); anything else (a byte outside " ".."~", or an escape) is json.dumps's, so a
    # row's hash never depends on which was used.
    try:
        fast = orjson.dumps(fields)
    except TypeError:  # not UTF-8 (a lone surrogate), say
        fast = b"\x7f"
    if not _UNPRINTABLE.search(fast) and b"\\" not in fast:
        return fast
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


_UNPRINTABLE = re.compile(rb"[^ -~]")
_SUBJECTS_KEPT = 65_536


def record_of(row: asyncpg.Record) -> AuditRecord:
    return AuditRecord(
        at=row["at"], request_id=row["request_id"], principal=row["principal"],
        roles=row["roles"], agency=row["agency"], purpose=row["purpose"],
        subject=row["subject"], disclosed=tuple(row["disclosed"]),
        denied=tuple(row["denied"]), note=row["note"],
    )  # fmt: skip


def row_hash_ok(keys: AuditKeys, row: asyncpg.Record) -> bool:
    expected = keys.chain(row["seq"], record_of(row), row["prev_hash"])
    return hmac.compare_digest(expected, row["hash"])


def head_problem(keys: AuditKeys, head: asyncpg.Record | None) -> str | None:
    """Why the head row cannot be trusted, or None when its MAC is right."""
    if head is None:
        return "the chain head row is missing"
    expected = keys.head(
        head["last_seq"], head["last_hash"], head["anchor_seq"], head["anchor_hash"]
    )
    if not hmac.compare_digest(head["mac"], expected):
        if head["mac"] == "":
            return "the chain head has no MAC (it was blanked: a head is sealed when created)"
        return "the chain head was rewritten (its MAC does not match)"
    return None


async def read_head(conn: Conn, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " for update" if for_update else ""
    return await conn.fetchrow(f"select * from gateway.audit_head where id = 1{lock}")


async def ensure_head(conn: Conn, keys: AuditKeys) -> str | None:
    """Create the head row, sealed, if the store is new; return what is wrong with it, if
    anything. Never seals an existing head: a head without a valid MAC stays refused until
    ``gateway audit repair`` records what was found in the chain itself."""
    async with conn.transaction():
        await conn.execute("lock table gateway.audit_head in exclusive mode")
        head = await read_head(conn)
        if head is None and await conn.fetchval("select count(*) from gateway.audit_log") == 0:
            mac = keys.head(0, GENESIS, 0, GENESIS)
            await conn.execute(
                "insert into gateway.audit_head values (1, 0, $1, 0, $1, $2)", GENESIS, mac
            )
            return None
    return head_problem(keys, head)


async def insert_row(conn: Conn, seq: int, record: AuditRecord, prev: str, digest: str) -> None:
    """Append one record the gateway writes about its own trail (a purge, a repair)."""
    await conn.execute(
        """insert into gateway.audit_log (seq, at, request_id, principal, roles, agency,
             purpose, subject, disclosed, denied, prev_hash, hash, note)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
        seq, record.at, record.request_id, record.principal, record.roles, record.agency,
        record.purpose, record.subject, list(record.disclosed), list(record.denied), prev,
        digest, record.note,
    )  # fmt: skip


def note_of(row: asyncpg.Record) -> dict[str, Any] | None:
    """The JSON note of a purge or repair row, or None (access rows, unreadable notes)."""
    if row["purpose"] not in (PURGE, REPAIR) or row["note"] is None:
        return None
    try:
        note = json.loads(row["note"])
    except ValueError:
        return None
    return note if isinstance(note, dict) else None


def stated_anchor(note: dict[str, Any] | None) -> tuple[int, str] | None:
    """The anchor a purge or repair note states (``"anchor": [seq, hash]``), if any."""
    anchor = None if note is None else note.get("anchor")
    if (
        isinstance(anchor, list)
        and len(anchor) == 2
        and isinstance(anchor[0], int)
        and not isinstance(anchor[0], bool)
        and isinstance(anchor[1], str)
    ):
        return anchor[0], anchor[1]
    return None


@dataclass(frozen=True)
class ChainAnchor:
    """Where the chain itself says it starts, and how far retention is proven to have purged.

    ``seq``/``hash``: the anchor stated by the newest verifiable purge or repair row (genesis
    when there is none). ``purged_seq``/``purged_hash``: the anchor stated by the newest
    verifiable purge row: rows up to it were deleted by retention, nothing else is."""

    seq: int = 0
    hash: str = GENESIS
    row: int | None = None  # the row stating it
    purged_seq: int = 0
    purged_hash: str = GENESIS
    purge_row: int | None = None


async def chain_anchor(conn: Conn, keys: AuditKeys) -> ChainAnchor:
    """Read the anchor from the chain (never from the head): deleting rows can only make it
    older, so rows deleted at the start show as a gap after it."""
    stated: tuple[int, str, int] | None = None
    before: int | None = None
    while True:
        rows = await conn.fetch(
            """select * from gateway.audit_log
               where purpose in ('AUDIT_PURGE', 'AUDIT_REPAIR')
                 and ($1::bigint is null or seq < $1)
               order by seq desc limit 64""",
            before,
        )
        for row in rows:
            anchor = stated_anchor(note_of(row))
            if anchor is None or not row_hash_ok(keys, row):
                continue
            if stated is None:
                stated = (*anchor, row["seq"])
            if row["purpose"] == PURGE:
                return ChainAnchor(
                    stated[0], stated[1], stated[2], anchor[0], anchor[1], row["seq"]
                )
        if len(rows) < 64:
            break
        before = rows[-1]["seq"]
    if stated is None:
        return ChainAnchor()
    return ChainAnchor(stated[0], stated[1], stated[2])


async def mark_problem(
    conn: Conn,
    keys: AuditKeys,
    head: asyncpg.Record,
    mark: tuple[int, str],
    where: str,
    purged: tuple[int, str] | None = None,
) -> str | None:
    """Why a sealed head is not a successor of ``mark`` (a head seen earlier, recorded
    ``where``), or None. The mark is still in the chain when its row is there with its hash,
    or it was purged (at or before the anchor: the head's, or ``purged``), or a repair row has
    since recorded what happened."""
    seq, digest = mark
    last_seq, last_hash = head["last_seq"], head["last_hash"]
    if last_seq < seq:
        return (
            f"the chain head went back to row {last_seq} from row {seq} ({where}): an older"
            " head was restored, or the database rolled back"
        )
    if last_seq == seq:
        if hmac.compare_digest(last_hash, digest):
            return None
        return f"the chain head at row {seq} is not the row {where} (its hash differs)"
    anchor_seq, anchor_hash = purged or (head["anchor_seq"], head["anchor_hash"])
    if seq < anchor_seq or (seq == anchor_seq and hmac.compare_digest(anchor_hash, digest)):
        return None
    found = await conn.fetchval("select hash from gateway.audit_log where seq = $1", seq)
    if found is not None and hmac.compare_digest(found, digest):
        return None
    repairs = await conn.fetch(
        "select * from gateway.audit_log where purpose = 'AUDIT_REPAIR' and seq > $1", seq
    )
    if any(row_hash_ok(keys, row) for row in repairs):
        return None  # an operator repaired since, and the chain records what was found
    return (
        f"row {seq} ({where}) is no longer in the chain: rows were cut or rewritten and an"
        " older head restored"
    )


def read_head_file(path: str) -> tuple[int, str] | None:
    """The head recorded in ``[audit] head_file`` (``SEQ:HASH``), None if there is no file
    yet; ValueError if it cannot be read as one."""
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        return None
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise ValueError(f"{path} does not hold SEQ:HASH")
    return int(seq), digest.lower()


def write_head_file(path: str, head: tuple[int, str]) -> bool:
    """Record the head atomically: a temporary file beside it, then a rename. Never a head
    behind the one recorded: the workers of one gateway share the file, each writing the
    head it saw last (a lock file beside it orders them)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(target.with_name(f".{target.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            recorded = read_head_file(path)
        except ValueError:
            recorded = None  # unreadable: replaced (start-up refused it already)
        if recorded is not None and recorded[0] >= head[0]:
            return False
        with open(tmp, "w") as out:
            out.write(f"{head[0]}:{head[1]}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    return True
