"""The audit chain itself: records, keys, the canonical form each row's HMAC covers, and the
authenticated head row (the chain's end and its anchor after retention purges).

The head row is sealed (given its MAC) in the same statement that creates it, so a head
without a valid MAC is never a fresh store: it is tampering (or damage), and the gateway
withholds resident data until an operator runs ``gateway audit repair``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

GENESIS = "0" * 64
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: The purpose of the chain row ``gateway audit repair`` appends (not a resident access).
REPAIR = "AUDIT_REPAIR"

Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"


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
    #: Only on records the gateway writes about its own trail (a repair): JSON text.
    note: str | None = None


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
    if r.note is not None:  # rows without a note hash as they did before notes existed
        fields.append(r.note)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


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
