"""A row's chain hash does not depend on which JSON encoder wrote its canonical form: the
fast one (orjson) is used only where it writes the very bytes ``json.dumps`` does, so rows
written before and after it verify alike."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import open_store
from gateway.audit_chain import EPOCH, AuditKeys, AuditRecord, _canonical
from tests.access.conftest import scratch_store

KEYS = AuditKeys("test-secret")
texts = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)),  # the common case
    st.text(),  # anything: quotes, backslashes, control characters, Hangul, surrogates
)


def reference(seq: int, r: AuditRecord, prev_hash: str) -> bytes:
    """The canonical form as the chain has always been hashed (json.dumps only)."""
    micros = (r.at - EPOCH) // dt.timedelta(microseconds=1)
    fields = [
        seq, micros, r.request_id, r.principal, r.roles, r.agency, r.purpose, r.subject,
        list(r.disclosed), list(r.denied), prev_hash,
    ]  # fmt: skip
    if r.note is not None:
        fields.append(r.note)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


@settings(max_examples=400, deadline=None)
@given(
    seq=st.integers(min_value=1, max_value=2**62),
    at=st.datetimes(min_value=dt.datetime(2000, 1, 1), timezones=st.just(dt.UTC)),
    fields=st.tuples(texts, texts, texts, st.none() | texts, texts, texts, texts),
    disclosed=st.lists(texts, max_size=4),
    denied=st.lists(texts, max_size=4),
    note=st.none() | texts,
)
def test_the_canonical_form_is_json_dumps_byte_for_byte(
    seq: int,
    at: dt.datetime,
    fields: tuple[str, str, str, str | None, str, str, str],
    disclosed: list[str],
    denied: list[str],
    note: str | None,
) -> None:
    request_id, principal, roles, agency, purpose, subject, prev = fields
    record = AuditRecord(
        at, request_id, principal, roles, agency, purpose, subject, tuple(disclosed),
        tuple(denied), note,
    )  # fmt: skip
    assert _canonical(seq, record, prev) == reference(seq, record, prev)


def test_a_subject_digest_is_the_same_from_the_cache() -> None:
    first = KEYS.subject("900101-1234567")
    assert KEYS.subject("900101-1234567") == first
    assert AuditKeys("test-secret").subject("900101-1234567") == first
    assert AuditKeys("other").subject("900101-1234567") != first


async def test_a_store_connection_comes_back_from_the_pool_outside_any_transaction(
    admin_dsn: str,
) -> None:
    """The store pool releases without asyncpg's full reset (``keep_session``); what that
    relies on holds: a transaction left open is still rolled back, its writes gone."""
    async with scratch_store(admin_dsn) as db:
        pool = await open_store(db.dsn, KEYS)
        try:
            async with pool.acquire() as conn:
                await conn.execute("create table gateway.scratch (n int)")
                await conn.execute("begin")
                await conn.execute("insert into gateway.scratch values (1)")
                pid = await conn.fetchval("select pg_backend_pid()")
            async with pool.acquire() as conn:
                assert await conn.fetchval("select pg_backend_pid()") == pid  # the same one
                assert not conn.is_in_transaction()
                assert await conn.fetchval("select count(*) from gateway.scratch") == 0
        finally:
            await pool.close()
