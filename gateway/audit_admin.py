"""Operator work on the audit chain: verify, retention purge, repair, and the head to keep
outside the database (``gateway audit verify | purge | repair | head``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from gateway.audit_chain import (
    GENESIS,
    REPAIR,
    AuditKeys,
    AuditRecord,
    Conn,
    head_problem,
    read_head,
    row_hash_ok,
)

log = logging.getLogger(__name__)

#: Rows from several gateway processes commit in lock order, not in the order they were
#: stamped: a row may be this much older than the one before it without breaking the order.
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str

    def __str__(self) -> str:
        return f"row {self.seq}: {self.what}"


@dataclass
class Verdict:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: Not problems: recorded repairs (each gap they acknowledge) and outside anchors matched.
    notes: list[Problem] = field(default_factory=list)
    repairs: int = 0


def parse_expect(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as printed by ``gateway audit head``."""
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise ValueError("expected SEQ:HASH (as `gateway audit head` prints it)")
    return int(seq), digest.lower()


async def verify(conn: Conn, keys: AuditKeys, expect: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from its anchor; return rows checked, every problem and every note."""
    verdict = Verdict()
    head = await read_head(conn)
    problem = head_problem(keys, head)
    if head is None:
        verdict.problems.append(Problem(0, "the chain head row is missing"))
        return verdict
    if problem is not None:
        verdict.problems.append(Problem(head["last_seq"], problem))
    expected_seq, expected_prev = head["anchor_seq"] + 1, head["anchor_hash"]
    seen: dict[int, str] = {}
    async with conn.transaction(readonly=True):
        async for row in conn.cursor("select * from gateway.audit_log order by seq"):
            verdict.checked += 1
            seq = row["seq"]
            if expect is not None and seq == expect[0]:
                seen[seq] = row["hash"]
            if seq < expected_seq:
                verdict.problems.append(Problem(seq, "inserted: it precedes the chain's anchor"))
                continue
            hash_ok = row_hash_ok(keys, row)
            repair = _repair_note(row) if hash_ok else None
            if repair is not None:
                verdict.repairs += 1
                verdict.notes.append(Problem(seq, _describe_repair(row, repair)))
            if seq > expected_seq and not (
                repair is not None and repair["missing"] == [expected_seq, seq - 1]
            ):
                verdict.problems.append(
                    Problem(seq, f"rows {expected_seq}..{seq - 1} were deleted before this one")
                )
            if row["prev_hash"] != expected_prev:
                verdict.problems.append(
                    Problem(seq, "inserted or reordered: it does not follow the row before")
                )
            if not hash_ok:
                verdict.problems.append(
                    Problem(seq, "changed: its content does not match its hash")
                )
            expected_seq, expected_prev = seq + 1, row["hash"]
    if head["last_seq"] >= expected_seq:
        verdict.problems.append(
            Problem(
                head["last_seq"], f"rows {expected_seq}..{head['last_seq']} were deleted at the end"
            )
        )
    elif head["last_seq"] != expected_seq - 1 or head["last_hash"] != expected_prev:
        verdict.problems.append(
            Problem(expected_seq - 1, "inserted: rows past the recorded end of the chain")
        )
    if expect is not None:
        _check_expected(verdict, head, expect, seen.get(expect[0]))
    return verdict


def _check_expected(
    verdict: Verdict, head: asyncpg.Record, expect: tuple[int, str], found: str | None
) -> None:
    """An outside record of the head (``SEQ:HASH``) must still be part of this chain."""
    seq, digest = expect
    anchor_seq = head["anchor_seq"]
    if seq > head["last_seq"]:
        verdict.problems.append(
            Problem(
                seq,
                f"recorded outside as the head, but the chain ends at row {head['last_seq']}:"
                " rows were cut, or the database was rolled back to an older copy",
            )
        )
    elif seq < anchor_seq:
        verdict.notes.append(
            Problem(seq, f"recorded outside; purged by retention since (anchor {anchor_seq})")
        )
    elif seq == anchor_seq:
        if digest == head["anchor_hash"]:
            verdict.notes.append(Problem(seq, "matches the head recorded outside (the anchor)"))
        else:
            verdict.problems.append(Problem(seq, "not the row recorded outside (hash differs)"))
    elif found is None:
        verdict.problems.append(Problem(seq, "recorded outside as the head, now missing"))
    elif found != digest:
        verdict.problems.append(
            Problem(
                seq,
                "not the row recorded outside (hash differs): the chain was rewritten"
                " or rolled back",
            )
        )
    else:
        verdict.notes.append(Problem(seq, "matches the head recorded outside"))


def _repair_note(row: asyncpg.Record) -> dict[str, Any] | None:
    if row["purpose"] != REPAIR or row["note"] is None:
        return None
    try:
        note = json.loads(row["note"])
    except ValueError:
        return None
    return note if isinstance(note, dict) and isinstance(note.get("missing"), list) else None


def _describe_repair(row: asyncpg.Record, note: dict[str, Any]) -> str:
    first, last = note["missing"]
    missing = f"rows {first}..{last} missing" if first <= last else "no missing rows counted"
    return (
        f"audit repair recorded at {row['at']:%Y-%m-%d %H:%M:%S%z} by {row['principal']}:"
        f" {note.get('found')}; last verifiable row {note.get('last_verified_seq')};"
        f" {missing}; rows written after the head it found cannot be counted from inside"
        " the database (compare with the head recorded outside)"
    )


# --- retention ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    anchor_seq: int
    #: Why it stopped before the rows inside retention (tampering), or None.
    stopped: str | None = None


async def purge(pool: asyncpg.Pool, keys: AuditKeys, retention_days: int) -> int:
    """Apply retention (see ``purge_verified``); the number of records deleted."""
    result = await purge_verified(pool, keys, retention_days)
    if result.stopped:
        log.warning("audit retention stopped early: %s", result.stopped)
    return result.deleted


async def purge_verified(pool: asyncpg.Pool, keys: AuditKeys, retention_days: int) -> PurgeResult:
    """Delete the oldest records past retention: only a prefix of the chain (from its anchor)
    in which every row verifies, follows the one before, and is stamped no earlier than the
    row before it; a row's own time alone never decides. The head's anchor (covered by its
    MAC) moves to the last row deleted, so ``verify`` proves nothing after it was removed."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=retention_days)
    async with pool.acquire() as conn, conn.transaction():
        head = await read_head(conn, for_update=True)
        problem = head_problem(keys, head)
        if problem is not None or head is None:
            return PurgeResult(0, -1, f"nothing purged: {problem}")
        anchor_seq = seq = head["anchor_seq"]
        prev, newest, stopped = head["anchor_hash"], None, None
        rows = conn.cursor(
            "select * from gateway.audit_log where seq > $1 order by seq", anchor_seq
        )
        async for row in rows:
            if row["at"] >= cutoff:
                break
            if row["seq"] != seq + 1:
                stopped = f"row {seq + 1} is missing"
            elif row["prev_hash"] != prev or not row_hash_ok(keys, row):
                stopped = f"row {row['seq']} fails verification (changed or inserted)"
            elif newest is not None and row["at"] < newest - CLOCK_SKEW:
                stopped = f"row {row['seq']} is stamped earlier than the rows before it"
            if stopped:
                break
            seq, prev = row["seq"], row["hash"]
            newest = row["at"] if newest is None else max(newest, row["at"])
        if seq == anchor_seq:
            return PurgeResult(0, anchor_seq, stopped)
        deleted = await conn.execute(
            "delete from gateway.audit_log where seq > $1 and seq <= $2", anchor_seq, seq
        )
        mac = keys.head(head["last_seq"], head["last_hash"], seq, prev)
        await conn.execute(
            "update gateway.audit_head set anchor_seq = $1, anchor_hash = $2, mac = $3"
            " where id = 1",
            seq,
            prev,
            mac,
        )
    return PurgeResult(int(deleted.split()[-1]), seq, stopped)


# --- repair ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepairResult:
    found: str | None  # what was wrong with the head; None: nothing to repair
    seq: int = 0  # the repair row appended
    last_verified_seq: int = 0
    missing: tuple[int, int] = (0, -1)


async def repair(conn: Conn, keys: AuditKeys, by: str) -> RepairResult:
    """Record in the chain itself that its head could not be trusted, then re-seal the head.

    Appends one row (purpose AUDIT_REPAIR) whose note states the head found, the last row
    that verifies from the anchor, and the rows the head names that are missing; ``verify``
    lists that row ever after. Rows that fail verification are left as they are (evidence):
    ``verify`` keeps naming them."""
    async with conn.transaction():
        await conn.execute("lock table gateway.audit_head in exclusive mode")
        head = await read_head(conn)
        found = head_problem(keys, head)
        if found is None:
            return RepairResult(None)
        bounds = await conn.fetchrow(
            "select min(seq) as first, max(seq) as last from gateway.audit_log"
        )
        assert bounds is not None
        if head is not None:
            anchor_seq, anchor_hash = head["anchor_seq"], head["anchor_hash"]
            claimed_last = head["last_seq"]
        elif bounds["first"] is not None:  # no head at all: start where the rows start
            first = await conn.fetchrow(
                "select seq, prev_hash from gateway.audit_log where seq = $1", bounds["first"]
            )
            assert first is not None
            anchor_seq, anchor_hash, claimed_last = first["seq"] - 1, first["prev_hash"], 0
        else:
            anchor_seq, anchor_hash, claimed_last = 0, GENESIS, 0
        verified_seq, verified_hash = await _verified_prefix(conn, keys, anchor_seq, anchor_hash)
        last_present = max(bounds["last"] or anchor_seq, anchor_seq)
        prev = await conn.fetchval(
            "select hash from gateway.audit_log where seq = $1", last_present
        )
        prev = prev if prev is not None else anchor_hash
        seq = max(claimed_last, last_present) + 1
        missing = (last_present + 1, seq - 1)
        note = {
            "found": found,
            "found_head": None if head is None else {
                k: head[k] for k in ("last_seq", "last_hash", "anchor_seq", "anchor_hash", "mac")
            },
            "last_verified_seq": verified_seq,
            "last_verified_hash": verified_hash,
            "missing": list(missing),
            "missing_count": max(0, missing[1] - missing[0] + 1),
            "after_head": "unknown: compare with the head recorded outside the database",
        }  # fmt: skip
        record = AuditRecord(
            at=dt.datetime.now(dt.UTC),
            request_id=f"repair-{uuid.uuid4().hex}",
            principal=by,
            roles="operator",
            agency=None,
            purpose=REPAIR,
            subject="",
            disclosed=(),
            denied=(),
            note=json.dumps(note, sort_keys=True),
        )
        digest = keys.chain(seq, record, prev)
        await conn.execute(
            """insert into gateway.audit_log (seq, at, request_id, principal, roles, agency,
                 purpose, subject, disclosed, denied, prev_hash, hash, note)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
            seq, record.at, record.request_id, record.principal, record.roles, record.agency,
            record.purpose, record.subject, [], [], prev, digest, record.note,
        )  # fmt: skip
        mac = keys.head(seq, digest, anchor_seq, anchor_hash)
        await conn.execute(
            """insert into gateway.audit_head values (1, $1, $2, $3, $4, $5)
               on conflict (id) do update set last_seq = $1, last_hash = $2, anchor_seq = $3,
                 anchor_hash = $4, mac = $5""",
            seq,
            digest,
            anchor_seq,
            anchor_hash,
            mac,
        )
    log.warning("audit head repaired: %s; recorded as row %d", found, seq)
    return RepairResult(found, seq, verified_seq, missing)


async def _verified_prefix(
    conn: Conn, keys: AuditKeys, anchor_seq: int, anchor_hash: str
) -> tuple[int, str]:
    """The last row of the unbroken, verifying run of rows after the anchor."""
    seq, prev = anchor_seq, anchor_hash
    rows = conn.cursor("select * from gateway.audit_log where seq > $1 order by seq", anchor_seq)
    async for row in rows:
        if row["seq"] != seq + 1 or row["prev_hash"] != prev or not row_hash_ok(keys, row):
            break
        seq, prev = row["seq"], row["hash"]
    return seq, prev
