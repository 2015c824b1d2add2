"""Differential probe of the direct lane (gateway/direct.py): every request below is sent to
one gateway twice, once with ``view.direct = True`` and once with ``False`` (strawberry's
request path), and everything a client, an auditor or an operator can observe must match:
status, headers, the body (errors order-normalised), the audit rows, the rate limiter's
charges, and the request's log/metric fields (``RequestSeen.fields``). Requests chosen to
probe the lane's decision (what it must leave to strawberry) and its execution.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tomllib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import metrics
from gateway import policy as policy_module
from gateway.app import create_app
from gateway.config import LimitsConfig, PersistedConfig
from gateway.graphql_schema import PURPOSES
from gateway.persisted import sha256_hex
from tests.access.conftest import demo_config, fetch, scratch_store
from tests.access.test_planned import requests as planned_requests
from tests.access.test_property import AGENCY, FIELDS, RESIDENT_TYPES, tomllib_dumps
from tests.conftest import ScratchDatabase, note_direct_lane, token
from tests.data import HEAD_RRN

AUDITED = "principal, roles, agency, purpose, subject, disclosed, denied"
OFFICER = token("welfare_officer", agency="welfare")
CITIZEN = token("citizen", rrn=HEAD_RRN, sub="citizen-probe")
ANALYST = token("analyst")
R = f'resident(rrn: "{HEAD_RRN}", purpose: CIVIL_PETITION)'
LIMITS = LimitsConfig(
    introspection=False, max_depth=4, max_aliases=3, max_tokens=200, max_cost=400,
    rate_requests=10_000, rate_cost=10_000_000,
)  # fmt: skip


@dataclasses.dataclass
class Probe:
    http: httpx.AsyncClient
    app: Any
    store: ScratchDatabase
    direct: list[bool]
    admitted: list[tuple[Any, ...]]
    seen: list[dict[str, Any]]


@contextlib.asynccontextmanager
async def probing(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str], limits: LimitsConfig
) -> AsyncIterator[Probe]:
    async with scratch_store(admin_dsn) as store:
        config = demo_config(agency_db, http_agencies, store.dsn, limits=limits)
        config = dataclasses.replace(config, persisted=PersistedConfig(mode="apq"))
        app = create_app(config)
        view = app.state.view
        direct: list[bool] = []
        admitted: list[tuple[Any, ...]] = []
        seen: list[dict[str, Any]] = []
        note_direct_lane(view, direct)
        async with LifespanManager(app) as manager:
            limiter = view.rate_limiter
            admit = limiter.admit

            async def charged(key: Any, requests: int = 1, cost: int = 0) -> Any:
                admitted.append((key, requests, cost))
                return await admit(key, requests=requests, cost=cost)

            limiter.admit = charged
            finish = view.observer._finish

            def finished(one: Any, span: Any) -> None:
                fields = one.fields("", "", 0.0)
                fields.pop("request_id")
                fields.pop("duration_ms")
                fields["label"] = view.observer.names.label(one.operations)
                fields["outcome"] = metrics.outcome(one.codes)
                seen.append(fields)
                finish(one, span)

            view.observer._finish = finished
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                yield Probe(http, app, store, direct, admitted, seen)


@pytest.fixture(scope="module")
async def probe(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> AsyncIterator[Probe]:
    async with probing(admin_dsn, agency_db, http_agencies, LIMITS) as one:
        yield one


@pytest.fixture(scope="module")
async def roomy(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> AsyncIterator[Probe]:
    limits = LimitsConfig(introspection=False, max_cost=200_000, rate_requests=1_000_000,
                          rate_cost=1_000_000_000)  # fmt: skip
    async with probing(admin_dsn, agency_db, http_agencies, limits) as one:
        yield one


async def send(
    probe: Probe, on: bool, body: Any, bearer: str, headers: dict[str, str] | None
) -> dict[str, Any]:
    probe.app.state.view.direct = on
    probe.direct.clear()
    probe.admitted.clear()
    probe.seen.clear()
    sent = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    sent.update(headers or {})
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await probe.http.post("/graphql", content=content, headers=sent)
    request_id = response.headers["x-request-id"]
    rows = await fetch(
        probe.store.dsn,
        f"select {AUDITED} from gateway.audit_log where request_id = $1 order by seq",
        request_id,
    )
    try:
        parsed = response.json()
    except ValueError:
        parsed = response.text
    if isinstance(parsed, dict):
        for entry in (parsed.get("extensions") or {}).get("provenance", []):
            entry.pop("asOf", None)  # a clock reading
        if isinstance(parsed.get("data"), dict) and isinstance(
            parsed["data"].get("grantConsent"), dict
        ):
            parsed["data"]["grantConsent"]["id"] = "<new id>"
    if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
        parsed["errors"] = sorted(parsed["errors"], key=json.dumps)
    headers_seen = {
        k: v for k, v in response.headers.items() if k not in ("x-request-id", "content-length")
    }
    return {
        "status": response.status_code,
        "headers": headers_seen,
        "body": parsed,
        "audit": sorted(tuple(r) for r in rows),
        "charged": [(k, n, c) for k, n, c in probe.admitted],
        "seen": list(probe.seen),
        "lane": any(probe.direct),
    }


Q_NAME = f"{{ {R} {{ name }} }}"
MUT = 'mutation M { grantConsent(purpose: CIVIL_PETITION, agency: "welfare", days: 1) { id } }'
# (body, bearer, extra headers)
CASES: dict[str, tuple[Any, str, dict[str, str] | None]] = {
    "plain": ({"query": Q_NAME}, OFFICER, None),
    "charset": ({"query": Q_NAME}, OFFICER, {"Content-Type": "application/json; charset=utf-8"}),
    "text-json": ({"query": Q_NAME}, OFFICER, {"Content-Type": "text/json"}),
    "gql-response-ct": (
        {"query": Q_NAME},
        OFFICER,
        {"Content-Type": "application/graphql-response+json"},
    ),
    "accept-gql-response": (
        {"query": Q_NAME},
        OFFICER,
        {"Accept": "application/graphql-response+json"},
    ),
    "accept-multipart": (
        {"query": Q_NAME},
        OFFICER,
        {"Accept": 'multipart/mixed;subscriptionSpec="1.0", application/json'},
    ),
    "accept-sse": ({"query": Q_NAME}, OFFICER, {"Accept": "text/event-stream, application/json"}),
    "cost-ext": ({"query": Q_NAME, "extensions": {"cost": True}}, OFFICER, None),
    "cost-ext-str": ({"query": Q_NAME, "extensions": {"cost": "true"}}, OFFICER, None),
    "provenance": ({"query": Q_NAME, "extensions": {"provenance": True}}, OFFICER, None),
    "two-ops-no-name": (
        {"query": f"query A {{ {R} {{ name }} }} query B {{ {R} {{ birthDate }} }}"},
        OFFICER,
        None,
    ),
    "two-ops-name-B": (
        {
            "query": f"query A {{ {R} {{ name }} }} query B {{ {R} {{ birthDate }} }}",
            "operationName": "B",
        },
        OFFICER,
        None,
    ),
    "query-then-mutation": ({"query": f"query A {{ {R} {{ name }} }} {MUT}"}, CITIZEN, None),
    "query-then-mutation-M": (
        {"query": f"query A {{ me {{ name }} }} {MUT}", "operationName": "M"},
        CITIZEN,
        None,
    ),
    "mutation-then-query-A": (
        {"query": f"{MUT} query A {{ me {{ name }} }}", "operationName": "A"},
        CITIZEN,
        None,
    ),
    "mutation-then-query-noname": ({"query": f"{MUT} query A {{ me {{ name }} }}"}, CITIZEN, None),
    "missing-op": ({"query": Q_NAME, "operationName": "Nope"}, OFFICER, None),
    "op-name-int": ({"query": Q_NAME, "operationName": 5}, OFFICER, None),
    "op-name-empty": ({"query": Q_NAME, "operationName": ""}, OFFICER, None),
    "op-name-list": ({"query": Q_NAME, "operationName": []}, OFFICER, None),
    "query-null": ({"query": None}, OFFICER, None),
    "query-empty": ({"query": ""}, OFFICER, None),
    "query-int": ({"query": 1}, OFFICER, None),
    "no-query": ({"variables": {}}, OFFICER, None),
    "vars-list": ({"query": Q_NAME, "variables": []}, OFFICER, None),
    "vars-string": ({"query": Q_NAME, "variables": "{}"}, OFFICER, None),
    "ext-list": ({"query": Q_NAME, "extensions": []}, OFFICER, None),
    "var-wrong-type": (
        {
            "query": "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }",
            "variables": {"r": 5},
        },
        OFFICER,
        None,
    ),
    "var-missing": (
        {
            "query": "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }",
            "variables": {},
        },
        OFFICER,
        None,
    ),
    "var-extra": (
        {
            "query": "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }",
            "variables": {"r": HEAD_RRN, "zzz": 1},
        },
        OFFICER,
        None,
    ),
    "var-bad-enum": (
        {
            "query": 'query($p: Purpose!) { resident(rrn: "'
            + HEAD_RRN
            + '", purpose: $p) { name } }',
            "variables": {"p": "NOT_A_PURPOSE"},
        },
        OFFICER,
        None,
    ),
    "var-purpose-forbidden": (
        {
            "query": 'query($p: Purpose!) { resident(rrn: "'
            + HEAD_RRN
            + '", purpose: $p) { name } }',
            "variables": {"p": "TAX_ADMINISTRATION"},
        },
        OFFICER,
        None,
    ),
    "skip-include": (
        {
            "query": "query($y: Boolean!) { "
            + R
            + " { name @skip(if: $y) birthDate @include(if: $y) } }",
            "variables": {"y": True},
        },
        OFFICER,
        None,
    ),
    "fragments-aliases": (
        {"query": f"{{ a: {R} {{ ...F }} }} fragment F on Resident {{ n: name birthDate }}"},
        OFFICER,
        None,
    ),
    "schema-introspection": ({"query": "{ __schema { queryType { name } } }"}, OFFICER, None),
    "type-introspection": ({"query": '{ __type(name: "Resident") { name } }'}, OFFICER, None),
    "typename": ({"query": "{ __typename }"}, OFFICER, None),
    "nested-introspection": ({"query": f"{{ {R} {{ name __typename }} }}"}, OFFICER, None),
    "suggestion": ({"query": f"{{ {R} {{ nam }} }}"}, OFFICER, None),
    "too-deep": (
        {
            "query": f"{{ {R} {{ household {{ members {{ household {{ members {{ name }} }} }} }}"
            " } }"
        },
        OFFICER,
        None,
    ),
    "too-many-aliases": (
        {"query": f"{{ a: {R} {{ name }} b: {R} {{ name }} c: {R} {{ name }} d: {R} {{ name }} }}"},
        OFFICER,
        None,
    ),
    "too-costly": (
        {"query": f"{{ {R} {{ household {{ members {{ taxes {{ year }} }} }} }} }}"},
        OFFICER,
        None,
    ),
    "too-many-tokens": ({"query": "{ " + " ".join(["__typename"] * 250) + " }"}, OFFICER, None),
    "forbidden-field": ({"query": f"{{ {R} {{ militaryService {{ status }} }} }}"}, OFFICER, None),
    "forbidden-operation": ({"query": "{ agencies { code } }"}, OFFICER, None),
    "analyst-agencies": ({"query": "{ agencies { code } }"}, ANALYST, None),
    "analyst-resident": ({"query": Q_NAME}, ANALYST, None),
    "citizen-me": ({"query": "{ me { name household { members { name } } } }"}, CITIZEN, None),
    "citizen-resident": ({"query": Q_NAME}, CITIZEN, None),
    "consent-required": ({"query": f"{{ {R} {{ taxes {{ year }} }} }}"}, OFFICER, None),
    "my-permissions": (
        {"query": "{ myPermissions(purpose: CIVIL_PETITION) { operations } }"},
        OFFICER,
        None,
    ),
    "unknown-rrn": (
        {"query": '{ resident(rrn: "000101-3000000", purpose: CIVIL_PETITION) { name } }'},
        OFFICER,
        None,
    ),
    "bad-rrn": (
        {"query": '{ resident(rrn: "nope", purpose: CIVIL_PETITION) { name } }'},
        OFFICER,
        None,
    ),
    "residents-batch": (
        {
            "query": f'{{ residents(rrns: ["{HEAD_RRN}", "{HEAD_RRN}"], '
            "purpose: CIVIL_PETITION) { name } }"
        },
        OFFICER,
        None,
    ),
    "batch": ([{"query": Q_NAME}, {"query": "{ __typename }"}], OFFICER, None),
    "apq-hash-only-unknown": (
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}},
        OFFICER,
        None,
    ),
    "apq-register": (
        {
            "query": Q_NAME + " ",
            "extensions": {
                "persistedQuery": {"version": 1, "sha256Hash": sha256_hex(Q_NAME + " ")}
            },
        },
        OFFICER,
        None,
    ),
    "apq-hash-only-known": (
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(Q_NAME + " ")}}},
        OFFICER,
        None,
    ),
    "syntax-error": ({"query": "{ resident("}, OFFICER, None),
    "duplicate-keys": (
        b'{"query": "{ __schema { queryType { name } } }", "query": "{ __typename }"}',
        OFFICER,
        None,
    ),
    "subscription": ({"query": "subscription { x }"}, OFFICER, None),
    "no-auth": ({"query": Q_NAME}, "garbage", None),
    "nulls": (
        {"query": Q_NAME, "variables": None, "extensions": None, "operationName": None},
        OFFICER,
        None,
    ),
    "introspection-in-fragment": (
        {"query": "{ ...F } fragment F on Query { s: __schema { types { name } } }"},
        OFFICER,
        None,
    ),
    "introspection-inline": (
        {"query": '{ ... on Query { __type(name: "Query") { name } } }'},
        OFFICER,
        None,
    ),
    "request-error-gql-response": (
        {
            "query": "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }",
            "variables": {"r": 5},
        },
        OFFICER,
        {"Accept": "application/graphql-response+json"},
    ),
    "field-error-gql-response": (
        {"query": '{ resident(rrn: "nope", purpose: CIVIL_PETITION) { name } }'},
        OFFICER,
        {"Accept": "application/graphql-response+json"},
    ),
    "op-name-fragment": (
        {
            "query": f"query A {{ {R} {{ ...F }} }} fragment F on Resident {{ name }}",
            "operationName": "F",
        },
        OFFICER,
        None,
    ),
    "rrn-in-op-name": (
        {"query": f"query Q{HEAD_RRN.replace('-', '')} {{ {R} {{ name }} }}"},
        OFFICER,
        None,
    ),
    "var-purpose-list": (
        {
            "query": 'query($p: Purpose!) { resident(rrn: "'
            + HEAD_RRN
            + '", purpose: $p) { name } }',
            "variables": {"p": ["CIVIL_PETITION"]},
        },
        OFFICER,
        None,
    ),
    "var-purpose-object": (
        {
            "query": 'query($p: Purpose!) { resident(rrn: "'
            + HEAD_RRN
            + '", purpose: $p) { name } }',
            "variables": {"p": {"x": [1]}},
        },
        OFFICER,
        None,
    ),
    "var-rrn-object": (
        {
            "query": "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }",
            "variables": {"r": {"x": [1]}},
        },
        OFFICER,
        None,
    ),
    "var-rrns-huge": (
        {
            "query": "query($r: [String!]!) { residents(rrns: $r, purpose: CIVIL_PETITION) "
            "{ name } }",
            "variables": {"r": [HEAD_RRN] * 150},
        },
        OFFICER,
        None,
    ),
    "var-rrns-scalar": (
        {
            "query": "query($r: [String!]!) { residents(rrns: $r, purpose: CIVIL_PETITION) "
            "{ household { members { name } } } }",
            "variables": {"r": HEAD_RRN},
        },
        OFFICER,
        None,
    ),
    "fragment-cycle": (
        {
            "query": f"{{ {R} {{ ...A }} }} fragment A on Resident {{ ...B }} "
            "fragment B on Resident { ...A }"
        },
        OFFICER,
        None,
    ),
    "unknown-fragment": ({"query": f"{{ {R} {{ ...Nope }} }}"}, OFFICER, None),
    "unused-fragment": (
        {"query": f"{{ {R} {{ name }} }} fragment U on Resident {{ name }}"},
        OFFICER,
        None,
    ),
    "rrn-in-missing-op-name": ({"query": Q_NAME, "operationName": HEAD_RRN}, OFFICER, None),
}


def _same(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: (a[k], b[k]) for k in a if k != "lane" and a[k] != b[k]}


@pytest.mark.parametrize("name", list(CASES))
async def test_direct_lane_is_unobservable(probe: Probe, name: str) -> None:
    body, bearer, headers = CASES[name]
    # Twice each, in both orders: the caches (parse, measure, validation, plans) warm either way.
    off = await send(probe, False, body, bearer, headers)
    on = await send(probe, True, body, bearer, headers)
    on_again = await send(probe, True, body, bearer, headers)
    off_again = await send(probe, False, body, bearer, headers)
    assert not off["lane"]
    assert not off_again["lane"]
    if os.environ.get("PROBE_SHOW"):
        print("SHOW", name, on["lane"], on["status"], json.dumps(on["body"])[:300])
    assert not _same(on, off), (name, on["lane"], _same(on, off))
    assert not _same(on_again, off_again), (name, _same(on_again, off_again))
    text = json.dumps(on["body"])
    assert "Traceback" not in text
    assert 'File "' not in text


async def test_alternating_variables_share_no_verdict(probe: Probe) -> None:
    """One text, variables that coerce and then do not: each request gets its own verdict."""
    query = "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }"
    for variables in ({"r": HEAD_RRN}, {"r": None}, {"r": HEAD_RRN}, {"r": [HEAD_RRN]}, {}):
        off = await send(probe, False, {"query": query, "variables": variables}, OFFICER, None)
        on = await send(probe, True, {"query": query, "variables": variables}, OFFICER, None)
        assert not _same(on, off), (variables, _same(on, off))


async def test_internal_errors_are_alike(
    probe: Probe, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A resolver that raises: INTERNAL, no stack trace in the body, the same log lines."""
    from gateway import access

    schema = probe.app.state.view.schema._schema
    field = schema.query_type.fields["myPermissions"]

    def boom(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("secret detail xyzzy")

    monkeypatch.setattr(field, "resolve", boom)
    del access
    caplog.set_level(logging.DEBUG)
    results = []
    for lane in (False, True):
        caplog.clear()
        got = await send(
            probe,
            lane,
            {"query": "{ myPermissions(purpose: CIVIL_PETITION) { operations } }"},
            OFFICER,
            None,
        )
        logged = sorted(
            (r.name, r.levelname, r.getMessage(), r.exc_info is not None)
            for r in caplog.records
            if r.name.startswith("gateway") and "request " not in r.getMessage()
        )
        results.append((got, logged))
    (off, off_logs), (on, on_logs) = results
    assert on["lane"]
    assert not _same(on, off), _same(on, off)
    assert on_logs == off_logs
    assert "secret" not in json.dumps(on["body"])


async def test_audit_failure_is_alike(probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit store refuses: resident data withheld with AUDIT_UNAVAILABLE either way."""
    from gateway.errors import AuditUnavailable

    audit = probe.app.state.runtime.audit

    async def refuse(records: Any) -> None:
        raise AuditUnavailable("The audit store did not answer.")

    monkeypatch.setattr(audit, "record", refuse)
    query = {
        "query": f"{{ {R} {{ name }} me: myPermissions(purpose: CIVIL_PETITION) {{ operations }} }}"
    }
    off = await send(probe, False, query, OFFICER, None)
    on = await send(probe, True, query, OFFICER, None)
    assert on["lane"]
    assert "AUDIT_UNAVAILABLE" in json.dumps(on["body"])
    assert not _same(on, off), _same(on, off)


async def test_concurrent_requests_keep_their_own_answers(probe: Probe) -> None:
    """Many principals at once through the lane: each answer is the one strawberry's path
    gives that principal alone."""
    import asyncio

    picks = [
        ({"query": Q_NAME}, OFFICER),
        ({"query": Q_NAME}, CITIZEN),
        ({"query": Q_NAME}, ANALYST),
        ({"query": "{ me { name } }"}, CITIZEN),
        ({"query": "{ me { name } }"}, OFFICER),
        ({"query": f"{{ {R} {{ taxes {{ year }} }} }}"}, OFFICER),
    ] * 4

    async def one(body: Any, bearer: str) -> Any:
        sent = {"Authorization": f"Bearer {bearer}"}
        response = await probe.http.post("/graphql", json=body, headers=sent)
        return response.status_code, response.json()

    probe.app.state.view.direct = False
    alone = [await one(body, bearer) for body, bearer in picks]
    probe.app.state.view.direct = True
    together = await asyncio.gather(*(one(body, bearer) for body, bearer in picks))
    assert list(together) == alone


@st.composite
def variants(draw: st.DrawFn, subjects: list[str]) -> tuple[Any, Any]:
    """A random planned-test request, then its body bent: a second operation (a query or a
    mutation) before or after it, operationName naming one, another or none, variables
    dropped or of the wrong type, the cost extension asked."""
    request = draw(planned_requests(subjects))
    body = dict(request.body)
    document: str = body["query"]
    named = document.replace("query(", "query Main(", 1)
    if named == document and document.startswith("{"):
        named = "query Main " + document
    second = draw(
        st.sampled_from(
            [
                None,
                "query Other { __typename }",
                'mutation M { revokeConsent(id: "00000000-0000-0000-0000-000000000000") { id } }',
                "query Other { __schema { queryType { name } } }",
            ]
        )
    )
    if second is not None:
        document = f"{second} {named}" if draw(st.booleans()) else f"{named} {second}"
    body["query"] = document
    name = draw(st.sampled_from([None, "Main", "Other", "M", "Nope"]))
    if name is not None:
        body["operationName"] = name
    variables = dict(body["variables"])
    change = draw(st.sampled_from(["keep", "drop-r", "int-r", "extra", "null-p"]))
    if change == "drop-r":
        variables.pop("r", None)
    elif change == "int-r":
        variables["r"] = 5
    elif change == "extra":
        variables["unused"] = [1, 2]
    elif change == "null-p" and "p" in variables:
        variables["p"] = None
    body["variables"] = variables
    if draw(st.booleans()):
        body["extensions"] = {"cost": True}
    return request, body


LANES: list[bool] = []


@settings(
    max_examples=int(os.environ.get("PROBE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
async def test_bent_random_requests_are_alike(roomy: Probe, data: Any) -> None:
    subjects = [HEAD_RRN]
    request, body = data.draw(variants(subjects))
    raw = tomllib.loads(tomllib_dumps(request.policy))
    policy = policy_module.parse(raw, FIELDS, PURPOSES, resident_types=RESIDENT_TYPES)
    runtime = roomy.app.state.runtime
    bearer = (
        token(*request.roles, rrn=request.rrn)
        if request.citizen
        else token(*request.roles, agency=AGENCY)
    )
    saved, runtime.policy = runtime.policy, policy
    try:
        off = await send(roomy, False, body, bearer, None)
        on = await send(roomy, True, body, bearer, None)
    finally:
        runtime.policy = saved
    LANES.append(on["lane"])
    assert not _same(on, off), (body, _same(on, off))


def test_bent_requests_took_the_lane_often() -> None:
    assert LANES
    assert sum(LANES) >= len(LANES) * 0.2, (sum(LANES), len(LANES))


async def test_a_refused_document_is_parsed_no_more_with_the_lane(
    probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document refused at parse (a syntax error, or over the token limit) was parsed six
    times per request with the lane on (the rate limiter's measure, the lane's prepare, then
    QueryLimits on strawberry's way: twice each), four with it off; each parse of a 4,000-token
    document is tens of milliseconds, and the request is charged no cost. Now once per text
    (twice, to tell the two errors apart), whichever way it goes, and the answer is the same."""
    import graphql

    from gateway import limits as limits_module

    calls = {"n": 0}
    real = graphql.parse

    def counting(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(limits_module, "parse", counting)
    monkeypatch.setattr(limits_module, "_parse", limits_module._parse.__wrapped__)
    syntax = "{ " + " ".join(["__typename"] * 150) + " ( }"
    tokens = "{ " + " ".join(["__typename"] * 250) + " }"
    for bad in (syntax, tokens):
        for on in (False, True):
            calls["n"] = 0
            text = f"{bad} # {on}"
            first = await send(probe, on, {"query": text}, OFFICER, None)
            assert calls["n"] == 2, (on, calls["n"])
            again = await send(probe, on, {"query": text}, OFFICER, None)
            assert calls["n"] == 2, (on, calls["n"])
            assert first["body"] == again["body"]
            assert first["status"] == again["status"]


@pytest.mark.parametrize(
    "query",
    [
        "{ __schema { queryType { name } } }",
        '{ t: __type(name: "Resident") { name } }',
        "{ ...F } fragment F on Query { __schema { types { name } } }",
        '{ ... on Query { __type(name: "Query") { fields { name } } } }',
        "query A { __typename } query B { __schema { queryType { name } } }",
        f"{{ {R} {{ name __typename }} }}",
    ],
)
async def test_introspection_off_is_refused_alike(roomy: Probe, query: str) -> None:
    """Introspection off, and a cost limit that lets __schema/__type through: the rule, not
    the cost, refuses them, on either way."""
    for name in (None, "A", "B"):
        body: dict[str, Any] = {"query": query}
        if name is not None and "query A" in query:
            body["operationName"] = name
        off = await send(roomy, False, body, OFFICER, None)
        on = await send(roomy, True, body, OFFICER, None)
        assert not _same(on, off), _same(on, off)
        text = json.dumps(on["body"])
        if "__schema" in query or "__type(" in query:
            assert not on["lane"], text
            assert "introspection" in text.lower(), text
