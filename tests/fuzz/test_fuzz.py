"""Property-based fuzzing of /graphql: documents generated from our schema (hypothesis-graphql,
valid and invalid), random bodies, bytes, content types, headers and variables.

Properties, for every request: no HTTP 5xx, no traceback in the response or the logs, no
ERROR record with exc_info, a JSON answer (the GraphiQL page aside) whose every error carries
``extensions.code`` from the contract, and never INTERNAL (an unexpected exception).

3,550 cases per run (BASE below). ``FUZZ_EXAMPLES=100000`` scales every test so the
total is about that many (see docs/fuzzing.md for the long run's figures).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import string
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from gateway.config import Config, DatabaseConfig, LimitsConfig
from gateway.graphql_schema import build_schema
from tests.conftest import (
    GatewayClient,
    ScratchDatabase,
    create_database,
    drop_database,
    gateway_client,
    token,
)
from tests.data import HEAD_RRN

#: The contract's error codes (CONTRACT.md, "Errors").
CODES = frozenset({
    "UNAUTHENTICATED", "FORBIDDEN", "CONSENT_REQUIRED", "INVALID_RRN", "AGENCY_UNAVAILABLE",
    "AGENCY_TIMEOUT", "QUERY_TOO_COMPLEX", "PERSISTED_QUERY_NOT_FOUND", "OPERATION_NOT_ALLOWED",
    "AUDIT_UNAVAILABLE", "RATE_LIMITED", "BAD_REQUEST", "INTERNAL",
})  # fmt: skip

#: Cases per test in a CI run; they add up to 3,550 (about 35 s on this 2-core machine; the
#: suite must stay under 5 minutes: long runs set FUZZ_EXAMPLES).
BASE = {
    "queries": 520,
    "invalid_queries": 390,
    "mutations": 260,
    "invalid_mutations": 200,
    "json_bodies": 520,
    "raw_bodies": 520,
    "headers": 550,
    "variables": 390,
    "introspection_off": 200,
}
TARGET = int(os.environ.get("FUZZ_EXAMPLES", sum(BASE.values())))
CASES: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()  # status and error codes seen, printed at the end


def examples(name: str) -> int:
    return max(1, round(BASE[name] * TARGET / sum(BASE.values())))


def fuzz(name: str) -> settings:
    return settings(
        max_examples=examples(name),
        deadline=None,
        database=None,  # nothing written to the work tree
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


SDL = graphql.print_schema(build_schema()._schema)
TESTER = token("tester")
# The test policy's roles: tester may do everything; with an rrn claim it is also a resident
# (me, consents); agency_system may call no query at all.
CITIZEN = token("tester", rrn=HEAD_RRN, sub="fuzz-resident")
SYSTEM = token("agency_system", agency="nts")
BEARERS = st.sampled_from([TESTER, CITIZEN, SYSTEM])
ACCEPTS = [
    None, "", "*/*", "application/json", "application/graphql-response+json",
    "application/graphql-response+json, application/json;q=0.9", "text/html",
    "application/xml", "application/json;q=0", "text/html, */*;q=0.8", "application/*",
]  # fmt: skip
CONTENT_TYPES = [
    None, "", "application/json", "application/json; charset=utf-8", "text/plain",
    "application/graphql", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
    "application/graphql-response+json", "application/jsonx", "json",
]  # fmt: skip
# Header values httpx can send: printable ASCII, and a little Latin-1.
HEADER_TEXT = st.text(
    alphabet=st.sampled_from(string.printable.strip() + " éü\t"), max_size=60
).map(str.strip)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    _containers,
    max_leaves=20,
)


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
async def store(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    """The gateway's own store for this module: fuzzed mutations and audit rows stay here."""
    db = await create_database(admin_dsn, prefix="gwfuzz")
    try:
        yield db
    finally:
        await drop_database(db)


@pytest.fixture(scope="module")
async def gateway(config: Config, store: ScratchDatabase) -> AsyncIterator[GatewayClient]:
    fuzzed = dataclasses.replace(config, database=DatabaseConfig(url=store.dsn))
    async with gateway_client(fuzzed) as client:
        yield client


@pytest.fixture(scope="module")
async def closed(
    gateway: GatewayClient, config: Config, store: ScratchDatabase
) -> AsyncIterator[GatewayClient]:
    """A second gateway, introspection off."""
    off = dataclasses.replace(
        config, database=DatabaseConfig(url=store.dsn), limits=LimitsConfig(introspection=False)
    )
    async with gateway_client(off) as client:
        yield client


@pytest.fixture(scope="module")
def logs() -> Iterator[Collected]:
    handler = Collected()
    gateway_logger = logging.getLogger("gateway")
    level = gateway_logger.level
    gateway_logger.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        gateway_logger.setLevel(level)


def check(response: httpx.Response, logs: Collected) -> None:
    """The properties every response keeps."""
    OUTCOMES[f"HTTP {response.status_code}"] += 1
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text, response.text
    for record in logs.records:
        text = record.getMessage()
        assert "Traceback" not in text, text
        assert not (record.levelno >= logging.ERROR and record.exc_info), (
            text,
            record.exc_info,
        )
        assert record.levelno < logging.ERROR, text
    logs.records.clear()
    if response.headers.get("content-type", "").startswith("text/html"):
        return  # the GraphiQL page
    body = response.json()
    assert isinstance(body, dict), body
    assert "errors" in body or "data" in body, body
    for error in body.get("errors", []):
        assert isinstance(error["message"], str), error
        assert error["message"], error
        code = error["extensions"]["code"]
        OUTCOMES[code] += 1
        assert code in CODES, error
        assert code != "INTERNAL", error


def headers(
    bearer: str | None, accept: str | None = None, **more: str | None
) -> dict[bytes, bytes]:
    """Header values as Latin-1 bytes (httpx would insist on ASCII for str)."""
    out = {"authorization": f"Bearer {bearer}"} if bearer else {}
    if accept is not None:
        out["accept"] = accept
    out.update({k.replace("_", "-"): v for k, v in more.items() if v is not None})
    return {name.encode(): value.encode("latin-1") for name, value in out.items()}


async def send_document(
    gateway: GatewayClient, logs: Collected, document: str, bearer: str, accept: str | None,
    via_get: bool, name: str,
) -> None:  # fmt: skip
    CASES[name] += 1
    if via_get:
        response = await gateway.http.get(
            "/graphql", params={"query": document}, headers=headers(bearer, accept)
        )
    else:
        response = await gateway.http.post(
            "/graphql", json={"query": document}, headers=headers(bearer, accept)
        )
    check(response, logs)


@fuzz("queries")
@given(
    document=queries(SDL, mode=Mode.POSITIVE),
    accept=st.sampled_from(ACCEPTS),
    via_get=st.booleans(),
    bearer=BEARERS,
)
async def test_queries(
    gateway: GatewayClient, logs: Collected, document: str, accept: str | None, via_get: bool,
    bearer: str,
) -> None:  # fmt: skip
    await send_document(gateway, logs, document, bearer, accept, via_get, "queries")


@fuzz("invalid_queries")
@given(document=queries(SDL, mode=Mode.NEGATIVE), accept=st.sampled_from(ACCEPTS))
async def test_invalid_queries(
    gateway: GatewayClient, logs: Collected, document: str, accept: str | None
) -> None:
    await send_document(gateway, logs, document, TESTER, accept, False, "invalid_queries")


@fuzz("mutations")
@given(
    document=mutations(SDL, mode=Mode.POSITIVE),
    accept=st.sampled_from(ACCEPTS),
    via_get=st.booleans(),
    bearer=BEARERS,
)
async def test_mutations(
    gateway: GatewayClient, logs: Collected, document: str, accept: str | None, via_get: bool,
    bearer: str,
) -> None:  # fmt: skip
    await send_document(gateway, logs, document, bearer, accept, via_get, "mutations")


@fuzz("invalid_mutations")
@given(document=mutations(SDL, mode=Mode.NEGATIVE), accept=st.sampled_from(ACCEPTS))
async def test_invalid_mutations(
    gateway: GatewayClient, logs: Collected, document: str, accept: str | None
) -> None:
    await send_document(gateway, logs, document, CITIZEN, accept, False, "invalid_mutations")


@fuzz("json_bodies")
@given(
    body=JSON_VALUES
    | st.fixed_dictionaries(
        {},
        optional={
            "query": JSON_VALUES | st.sampled_from(["{ __typename }", "{ agencies { code } }"]),
            "variables": JSON_VALUES,
            "operationName": JSON_VALUES,
            "extensions": JSON_VALUES | st.just({"provenance": True}),
        },
    ),
    accept=st.sampled_from(ACCEPTS),
)
async def test_json_bodies(
    gateway: GatewayClient, logs: Collected, body: Any, accept: str | None
) -> None:
    CASES["json_bodies"] += 1
    content = json.dumps(body).encode()
    response = await gateway.http.post(
        "/graphql",
        content=content,
        headers=headers(TESTER, accept, content_type="application/json"),
    )
    check(response, logs)


@fuzz("raw_bodies")
@given(
    content=st.binary(max_size=300)
    | st.text(max_size=200).map(str.encode)
    | st.sampled_from([b"", b"{", b"[]", b"null", b'{"query": "{ __typename }"}', b"\xff\xfe"]),
    content_type=st.sampled_from(CONTENT_TYPES) | HEADER_TEXT,
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
)
async def test_raw_bodies(
    gateway: GatewayClient, logs: Collected, content: bytes, content_type: str | None, method: str
) -> None:
    CASES["raw_bodies"] += 1
    response = await gateway.http.request(
        method,
        "/graphql",
        content=content,
        headers=headers(TESTER, None, content_type=content_type),
    )
    if method not in ("GET", "POST"):
        assert response.status_code == 405
        assert "POST" in response.headers["allow"]
        logs.records.clear()
        return
    check(response, logs)


@fuzz("headers")
@given(
    authorization=st.sampled_from([
        None, "", "Bearer", "Bearer ", f"Bearer {TESTER}", f"bearer {TESTER}", f"Basic {TESTER}",
        f"Bearer {TESTER}x", f"Bearer {TESTER[:-4]}", f"Bearer {TESTER} {TESTER}",
        "Bearer a.b.c", "Bearer ...", "Bearer eyJhbGciOiJub25lIn0.e30.",
    ]) | HEADER_TEXT | HEADER_TEXT.map(lambda t: f"Bearer {t}"),
    accept=st.sampled_from(ACCEPTS) | HEADER_TEXT,
    content_type=st.sampled_from(CONTENT_TYPES) | HEADER_TEXT,
    request_id=st.none() | HEADER_TEXT,
    via_get=st.booleans(),
)  # fmt: skip
async def test_headers(
    gateway: GatewayClient, logs: Collected, authorization: str | None, accept: str | None,
    content_type: str | None, request_id: str | None, via_get: bool,
) -> None:  # fmt: skip
    CASES["headers"] += 1
    sent = headers(None, accept, authorization=authorization, content_type=content_type,
                   x_request_id=request_id)  # fmt: skip
    if via_get:
        response = await gateway.http.get(
            "/graphql", params={"query": "{ agencies { code } }"}, headers=sent
        )
    else:
        response = await gateway.http.post(
            "/graphql", content=b'{"query": "{ agencies { code } }"}', headers=sent
        )
    check(response, logs)


VARIABLE_DOCUMENTS = [
    "query($r: String!, $p: Purpose!) { resident(rrn: $r, purpose: $p) { rrn name } }",
    "query($r: [String!]!, $p: Purpose!) { residents(rrns: $r, purpose: $p) { name } }",
    "query($f: Int, $a: String) { myAccessLog(first: $f, after: $a) { edges { cursor } } }",
    "query($y: [Int!]) { me { taxes(years: $y) { year } } }",
    "mutation($p: Purpose!, $a: String!, $d: Int!) "
    "{ grantConsent(purpose: $p, agency: $a, days: $d) { id } }",
    "mutation($i: ID!) { revokeConsent(id: $i) { id } }",
    "query($x: Boolean!) { agencies @include(if: $x) { code } }",
]
PURPOSES = ["WELFARE_ELIGIBILITY", "TAX_ADMINISTRATION", "CIVIL_PETITION", "SHOPPING"]
RRNS = st.sampled_from([HEAD_RRN, "9408121001751", "941312-1001751", "", "x" * 30]) | st.text(
    max_size=16
)
VARIABLE_VALUES = JSON_VALUES | RRNS | st.sampled_from(PURPOSES) | st.lists(RRNS, max_size=5)


@fuzz("variables")
@given(
    document=st.sampled_from(VARIABLE_DOCUMENTS),
    variables=st.dictionaries(
        st.sampled_from(["r", "p", "f", "a", "y", "d", "i", "x", "zz"]), VARIABLE_VALUES,
        max_size=4,
    ) | JSON_VALUES,
    bearer=BEARERS,
    accept=st.sampled_from(ACCEPTS),
)  # fmt: skip
async def test_variables(
    gateway: GatewayClient, logs: Collected, document: str, variables: Any, bearer: str,
    accept: str | None,
) -> None:  # fmt: skip
    CASES["variables"] += 1
    # json.dumps, not httpx's json=: NaN and Infinity go out as Python writes them.
    response = await gateway.http.post(
        "/graphql",
        content=json.dumps({"query": document, "variables": variables}).encode(),
        headers=headers(bearer, accept, content_type="application/json"),
    )
    check(response, logs)


@fuzz("introspection_off")
@given(document=queries(SDL, mode=Mode.NEGATIVE) | queries(SDL), accept=st.sampled_from(ACCEPTS))
async def test_introspection_off(
    closed: GatewayClient, logs: Collected, document: str, accept: str | None
) -> None:
    """With introspection off no message names a schema member the caller did not write."""
    CASES["introspection_off"] += 1
    response = await closed.http.post(
        "/graphql", json={"query": document}, headers=headers(TESTER, accept)
    )
    check(response, logs)
    assert "Did you mean" not in response.text


def test_case_count() -> None:
    """Runs last: every fuzz test that ran tried its share of cases (hypothesis stops early
    only when it runs out of distinct inputs); a whole run tries at least 5,000."""
    total = sum(CASES.values())
    print(f"fuzz cases: {total} {dict(CASES)}; outcomes {dict(OUTCOMES.most_common())}")
    scale = TARGET / sum(BASE.values())
    short = {name: n for name, n in CASES.items() if n < BASE[name] * scale * 0.5}
    assert not short, f"fuzz tests that tried under half their cases: {short}"
    if set(CASES) == set(BASE):
        assert total >= min(TARGET, 5000)
