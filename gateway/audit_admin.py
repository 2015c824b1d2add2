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
    PURGE,
    REPAIR,
    AuditKeys,
    AuditRecord,
    ChainAnchor,
    Conn,
    chain_anchor,
    head_problem,
    insert_row,
    mark_problem,
    note_of,
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
    #: Rows recorded missing by repairs (not problems: acknowledged, but never pristine).
    missing: int = 0


def parse_expect(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as printed by ``gateway audit head``."""
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        raise ValueError("expected SEQ:HASH (as `gateway audit head` prints it)")
    return int(seq), digest.lower()


async def verify(conn: Conn, keys: AuditKeys, expect: tuple[int, str] | None = None) -> Verdict:
    """Walk the chain from the anchor the chain itself states (the newest verifiable purge or
    repair row; genesis if none), never from the head's say-so; return rows checked, every
    problem and every note."""
    verdict = Verdict()
    head = await read_head(conn)
    anchor = await chain_anchor(conn, keys)
    if head is None:
        verdict.problems.append(Problem(0, "the chain head row is missing"))
    else:
        problem = head_problem(keys, head)
        if problem is not None:
            verdict.problems.append(Problem(head["last_seq"], problem))
        if (head["anchor_seq"], head["anchor_hash"]) != (anchor.seq, anchor.hash):
            stated = (
                f"row {anchor.row} states anchor {anchor.seq}"
                if anchor.row is not None
                else "no purge or repair row states any (the anchor is genesis, row 0)"
            )
            verdict.problems.append(
                Problem(
                    head["anchor_seq"],
                    f"the head's anchor is not recorded in the chain ({stated}): rows before"
                    " it were deleted, not purged",
                )
            )
    expected_seq, expected_prev = anchor.seq + 1, anchor.hash
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
                verdict.missing += _missing_count(repair)
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
    if head is not None:
        if head["last_seq"] >= expected_seq:
            verdict.problems.append(
                Problem(
                    head["last_seq"],
                    f"rows {expected_seq}..{head['last_seq']} were deleted at the end",
                )
            )
        elif head["last_seq"] != expected_seq - 1 or head["last_hash"] != expected_prev:
            verdict.problems.append(
                Problem(expected_seq - 1, "inserted: rows past the recorded end of the chain")
            )
    if expect is not None:
        last_seq = head["last_seq"] if head is not None else expected_seq - 1
        _check_expected(verdict, anchor, last_seq, expect, seen.get(expect[0]))
    return verdict


def _check_expected(
    verdict: Verdict,
    anchor: ChainAnchor,
    last_seq: int,
    expect: tuple[int, str],
    found: str | None,
) -> None:
    """An outside record of the head (``SEQ:HASH``) must still be part of this chain, or have
    been purged by retention: at or before the anchor an AUDIT_PURGE row states."""
    seq, digest = expect
    if seq > last_seq:
        verdict.problems.append(
            Problem(
                seq,
                f"recorded outside as the head, but the chain ends at row {last_seq}:"
                " rows were cut, or the database was rolled back to an older copy",
            )
        )
    elif seq < anchor.purged_seq:
        verdict.notes.append(
            Problem(
                seq,
                f"recorded outside; purged by retention since (row {anchor.purge_row} records"
                f" the purge up to row {anchor.purged_seq})",
            )
        )
    elif seq == anchor.purged_seq and found is None:
        if digest == anchor.purged_hash:
            verdict.notes.append(
                Problem(seq, "matches the head recorded outside (the anchor retention left)")
            )
        else:
            verdict.problems.append(Problem(seq, "not the row recorded outside (hash differs)"))
    elif found is None:
        verdict.problems.append(
            Problem(
                seq,
                "recorded outside as the head, now missing: deleted, not purged by retention"
                " (no AUDIT_PURGE row covers it)",
            )
        )
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
    if row["purpose"] != REPAIR:
        return None
    note = note_of(row)
    return note if note is not None and isinstance(note.get("missing"), list) else None


def _span(value: Any) -> tuple[int, int] | None:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0], value[1]
    return None


def _missing_count(note: dict[str, Any]) -> int:
    total = 0
    for key in ("missing_before", "missing"):
        span = _span(note.get(key))
        if span is not None:
            total += max(0, span[1] - span[0] + 1)
    return total


def _describe_repair(row: asyncpg.Record, note: dict[str, Any]) -> str:
    tail = _span(note["missing"]) or (0, -1)
    first, last = tail
    if first <= last:
        missing = f"MISSING rows {first}..{last} ({last - first + 1} rows missing)"
    else:
        missing = "no missing rows counted at the end"
    before = _span(note.get("missing_before"))
    if before is not None and before[0] <= before[1]:
        count = before[1] - before[0] + 1
        missing = (
            f"MISSING rows {before[0]}..{before[1]} ({count} rows missing) before the first"
            f" row present, not purged by retention; {missing}"
        )
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


async def purge_verified(
    pool: asyncpg.Pool, keys: AuditKeys, retention_days: int, by: str = "retention"
) -> PurgeResult:
    """Delete the oldest records past retention: only a prefix of the chain (from its anchor)
    in which every row verifies, follows the one before, and is stamped no earlier than the
    row before it; a row's own time alone never decides. In the same transaction it appends a
    chain row (purpose AUDIT_PURGE) stating the new anchor (the last row deleted), the count
    and the cutoff, and moves the head's anchor there (covered by its MAC): the anchor is
    provable from the chain itself, and ``verify`` proves nothing after it was removed."""
    now = dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=retention_days)
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
        status = await conn.execute(
            "delete from gateway.audit_log where seq > $1 and seq <= $2", anchor_seq, seq
        )
        deleted = int(status.split()[-1])
        note = {
            "anchor": [seq, prev],
            "previous_anchor_seq": anchor_seq,
            "deleted": deleted,
            "cutoff": cutoff.isoformat(),
            "retention_days": retention_days,
        }
        record = _admin_record(PURGE, by, "retention", note, at=now)
        row_seq = head["last_seq"] + 1
        digest = keys.chain(row_seq, record, head["last_hash"])
        await insert_row(conn, row_seq, record, head["last_hash"], digest)
        mac = keys.head(row_seq, digest, seq, prev)
        await conn.execute(
            """update gateway.audit_head set last_seq = $1, last_hash = $2, anchor_seq = $3,
                 anchor_hash = $4, mac = $5 where id = 1""",
            row_seq,
            digest,
            seq,
            prev,
            mac,
        )
    return PurgeResult(deleted, seq, stopped)


# --- repair ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepairResult:
    found: str | None  # what was wrong; None: nothing to repair
    seq: int = 0  # the repair row appended
    last_verified_seq: int = 0
    missing: tuple[int, int] = (0, -1)  # after the last row present
    missing_before: tuple[int, int] = (0, -1)  # between the chain's anchor and the first row
    head: tuple[int, str] | None = None  # the head sealed (to record outside)


async def repair(
    conn: Conn, keys: AuditKeys, by: str, recorded: tuple[int, str] | None = None
) -> RepairResult:
    """Record in the chain itself what is wrong with its head, then re-seal the head.

    Repairs a head that fails its MAC (or is missing), a head whose anchor no purge or repair
    row states, and a head that is not a successor of ``recorded`` (a head recorded outside
    the database, e.g. ``[audit] head_file``: an old genuine head restored). The anchor is
    never taken from the head: it is the one the chain states (the newest verifiable purge or
    repair row; genesis when there is none), and every row between it and the first row
    present is recorded as missing. Appends one row (purpose AUDIT_REPAIR) whose note states
    what was found, the head found, the anchor, the last row that verifies from it and the
    rows missing; ``verify`` lists that row ever after. Rows that fail verification are left
    as they are (evidence): ``verify`` keeps naming them."""
    async with conn.transaction():
        await conn.execute("lock table gateway.audit_head in exclusive mode")
        head = await read_head(conn)
        anchor = await chain_anchor(conn, keys)
        findings = []
        found_mac = head_problem(keys, head)
        if found_mac is not None:
            findings.append(found_mac)
        elif head is not None and (head["anchor_seq"], head["anchor_hash"]) != (
            anchor.seq,
            anchor.hash,
        ):
            findings.append(
                f"the head's anchor (row {head['anchor_seq']}) is not recorded in the chain"
            )
        rolled_back = None
        if recorded is not None and head is not None and found_mac is None:
            rolled_back = await mark_problem(
                conn,
                keys,
                head,
                recorded,
                "recorded outside the database",
                (anchor.purged_seq, anchor.purged_hash),
            )
            if rolled_back is not None:
                findings.append(rolled_back)
        if not findings:
            return RepairResult(None)
        first = await conn.fetchrow(
            "select seq, prev_hash from gateway.audit_log where seq > $1 order by seq limit 1",
            anchor.seq,
        )
        missing_before = (anchor.seq + 1, anchor.seq)
        anchor_seq, anchor_hash = anchor.seq, anchor.hash
        if first is not None and first["seq"] > anchor.seq + 1:
            # Rows deleted at the start, not by retention: recorded, and the anchor sealed
            # where the rows present start (so the rows after it still verify).
            missing_before = (anchor.seq + 1, first["seq"] - 1)
            anchor_seq, anchor_hash = first["seq"] - 1, first["prev_hash"]
        verified_seq, verified_hash = await _verified_prefix(conn, keys, anchor_seq, anchor_hash)
        last = await conn.fetchval("select max(seq) from gateway.audit_log")
        last_present = max(last or anchor_seq, anchor_seq)
        prev = await conn.fetchval(
            "select hash from gateway.audit_log where seq = $1", last_present
        )
        prev = prev if prev is not None else anchor_hash
        claimed_last = 0 if head is None else head["last_seq"]
        if recorded is not None:  # a row recorded outside existed (if present: no change)
            claimed_last = max(claimed_last, recorded[0])
        seq = max(claimed_last, last_present) + 1
        missing = (last_present + 1, seq - 1)
        note = {
            "found": "; ".join(findings),
            "found_head": None if head is None else {
                k: head[k] for k in ("last_seq", "last_hash", "anchor_seq", "anchor_hash", "mac")
            },
            "recorded_head": None if recorded is None else f"{recorded[0]}:{recorded[1]}",
            "chain_anchor": [anchor.seq, anchor.hash],
            "anchor": [anchor_seq, anchor_hash],
            "missing_before": list(missing_before),
            "last_verified_seq": verified_seq,
            "last_verified_hash": verified_hash,
            "missing": list(missing),
            "missing_count": max(0, missing[1] - missing[0] + 1)
            + max(0, missing_before[1] - missing_before[0] + 1),
            "after_head": "unknown: compare with the head recorded outside the database",
        }  # fmt: skip
        record = _admin_record(REPAIR, by, "operator", note)
        digest = keys.chain(seq, record, prev)
        await insert_row(conn, seq, record, prev, digest)
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
    found = "; ".join(findings)
    log.warning("audit head repaired: %s; recorded as row %d", found, seq)
    return RepairResult(found, seq, verified_seq, missing, missing_before, (seq, digest))


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


def _admin_record(
    purpose: str, by: str, roles: str, note: dict[str, Any], at: dt.datetime | None = None
) -> AuditRecord:
    """A chain row the gateway writes about the chain itself (a purge, a repair): no subject,
    nothing disclosed, what happened in its note."""
    return AuditRecord(
        at=at or dt.datetime.now(dt.UTC),
        request_id=f"{purpose.lower().removeprefix('audit_')}-{uuid.uuid4().hex}",
        principal=by,
        roles=roles,
        agency=None,
        purpose=purpose,
        subject="",
        disclosed=(),
        denied=(),
        note=json.dumps(note, sort_keys=True),
    )
