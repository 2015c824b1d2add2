"""Regressions for an adversarial review of what clients send: token claims, consent agencies,
deeply nested JSON and documents, access-log cursors and the open /readyz."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from gateway import policy as policy_module
from gateway.cli import main
from gateway.config import ConfigError
from gateway.demo.embedded import DEMO_ROLES
from gateway.graphql_schema import PURPOSES, build_schema, resident_types, schema_fields
from gateway.runtime import DEMO_POLICY
from tests.access.conftest import KEYS, error_codes, fetch, write_gateway_toml
from tests.conftest import TEST_SECRET, GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN, members

MEMBERS = [rrn for rrn, *_ in members()]
AGENCIES = "{ agencies { code } }"
LOOKUP = """query($r: String!) {
  resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) { name taxes { year } } }"""
GRANT = """mutation($agency: String!) {
  grantConsent(purpose: WELFARE_ELIGIBILITY, agency: $agency, days: 30) { id agency } }"""


def signed(**changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "someone",
        "roles": ["operator"],
        "iss": "resident-gateway",
        "aud": "resident-gateway",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(TEST_SECRET))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def the_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The whole response is one coded error in the contract's JSON shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    assert "data" not in body, body
    [error] = body["errors"]
    assert isinstance(error, dict)
    assert error["extensions"]["code"] == code, body
    assert error["message"]
    return error


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text + "".join(str(r.exc_info) for r in caplog.records if r.exc_info)
    assert "Traceback" not in text
    assert "RecursionError" not in text
    assert not [r for r in caplog.records if r.exc_info], caplog.text


# --- Finding 5: claims are checked when the token is authenticated ------------------------


@pytest.mark.parametrize(
    ("changes", "claim"),
    [
        pytest.param({"sub": "some\x00one"}, "sub", id="nul-in-sub"),
        pytest.param({"sub": "x" * 129}, "sub", id="long-sub"),
        pytest.param({"sub": "line\nbreak"}, "sub", id="newline-in-sub"),
        pytest.param({"roles": ["operator\x00"]}, "roles", id="nul-in-role"),
        pytest.param({"roles": ["r" * 65]}, "roles", id="long-role"),
        pytest.param({"roles": ["operator"] * 17}, "roles", id="too-many-roles"),
        pytest.param({"roles": ["operator"], "agency": "nts\x00"}, "agency", id="nul-in-agency"),
        pytest.param({"roles": ["operator"], "agency": "\x1b[31mnts"}, "agency", id="escape"),
        pytest.param({"roles": ["operator"], "agency": "a" * 33}, "agency", id="long-agency"),
        pytest.param({"roles": ["operator"], "agency": "Tax Office"}, "agency", id="not-a-code"),
    ],
)
@pytest.mark.parametrize("path", ["/graphql", "/metrics"])
async def test_a_claim_with_control_characters_or_over_its_bounds_is_401(
    demo: GatewayClient, changes: dict[str, Any], claim: str, path: str
) -> None:
    headers = bearer(signed(**changes))
    if path == "/graphql":
        response = await demo.http.post("/graphql", json={"query": AGENCIES}, headers=headers)
    else:
        response = await demo.http.get(path, headers=headers)
    error = the_error(response, 401, "UNAUTHENTICATED")
    assert f"{claim} claim" in error["message"]
    assert "\x00" not in response.text
    assert "\x1b" not in response.text


async def test_a_nul_in_sub_never_reaches_the_audit_trail(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    # It used to be accepted, and the NUL then broke the audit COPY (AUDIT_UNAVAILABLE).
    officer = signed(sub="officer\x00x", roles=["welfare_officer"], agency="welfare")
    response = await demo.http.post(
        "/graphql", json={"query": LOOKUP, "variables": {"r": HEAD_RRN}}, headers=bearer(officer)
    )
    the_error(response, 401, "UNAUTHENTICATED")
    rows = await fetch(store.dsn, "select 1 from gateway.audit_log where principal like 'officer%'")
    assert rows == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/graphql"), ("GET", "/metrics"), ("POST", "/events/invalidate")],
)
async def test_a_role_the_policy_does_not_know_is_403(
    demo: GatewayClient, method: str, path: str
) -> None:
    body = {"agency": "nts", "keys": []} if path.startswith("/events") else {"query": AGENCIES}
    response = await demo.http.request(
        method,
        path,
        json=body if method == "POST" else None,
        headers=bearer(signed(roles=["operator", "superuser"])),
    )
    error = the_error(response, 403, "FORBIDDEN")
    assert error["message"] == "The token names a role this gateway does not know: 'superuser'."


async def test_an_unknown_role_is_quoted_safely(demo: GatewayClient) -> None:
    role = "é" * 60  # printable, within bounds, not ASCII: escaped and cut short
    response = await demo.http.post(
        "/graphql", json={"query": AGENCIES}, headers=bearer(signed(roles=[role]))
    )
    error = the_error(response, 403, "FORBIDDEN")
    assert "é" not in error["message"]
    assert "\\xe9" * 40 + "..." in error["message"]


# --- Finding 10: roles are bound to agencies; consents name known agencies --------------------


async def test_a_welfare_officer_claiming_nts_is_refused_and_reads_no_consent_of_nts(
    demo: GatewayClient,
) -> None:
    rrn = MEMBERS[11]
    citizen = demo.as_(token("citizen", rrn=rrn, sub="citizen-11"))
    granted = await citizen.query(GRANT, {"agency": "nts"})  # nts officers look residents up
    assert "errors" not in granted, granted
    nts_calls = demo.calls("nts")
    response = await demo.as_(token("welfare_officer", agency="nts")).post(
        {"query": LOOKUP, "variables": {"r": rrn}}
    )
    error = the_error(response, 403, "FORBIDDEN")
    assert "welfare_officer may not claim the agency 'nts'" in error["message"]
    assert demo.calls("nts") == nts_calls
    # Its own agency's officer still needs a consent of its own.
    own = await demo.as_(token("welfare_officer", agency="welfare")).query(LOOKUP, {"r": rrn})
    assert error_codes(own) == {("resident", "taxes"): "CONSENT_REQUIRED"}


@pytest.mark.parametrize(
    ("role", "agency"),
    [
        ("tax_officer", "welfare"),
        ("analyst", "nts"),
        ("citizen", "welfare"),
        ("agency_system", "welfare"),
    ],
)
async def test_an_agency_the_role_may_not_claim_is_403(
    demo: GatewayClient, role: str, agency: str
) -> None:
    response = await demo.http.post(
        "/graphql",
        json={"query": AGENCIES},
        headers=bearer(signed(roles=[role], agency=agency, rrn=HEAD_RRN)),
    )
    error = the_error(response, 403, "FORBIDDEN")
    assert f"'{agency}'" in error["message"]


async def test_agency_system_may_only_claim_listed_agencies_at_invalidate(
    demo: GatewayClient,
) -> None:
    response = await demo.http.post(
        "/events/invalidate",
        json={"agency": "tax-office", "keys": []},
        headers=bearer(token("agency_system", agency="tax-office")),
    )
    the_error(response, 403, "FORBIDDEN")


@pytest.mark.parametrize(
    "agency",
    [
        pytest.param("totally-made-up <script>", id="unknown"),
        pytest.param("nts\x00", id="nul"),
        pytest.param("\x00", id="only-nul"),
        pytest.param("wel\x1bfare", id="escape"),
        pytest.param("statistics", id="an-agency-that-reads-no-resident"),
    ],
)
async def test_grant_consent_to_an_unknown_agency_is_bad_request(
    demo: GatewayClient,
    store: ScratchDatabase,
    caplog: pytest.LogCaptureFixture,
    agency: str,
) -> None:
    rrn = MEMBERS[12]
    citizen = demo.as_(token("citizen", rrn=rrn, sub="citizen-12"))
    body = await citizen.query(GRANT, {"agency": agency})
    assert body["data"] is None
    assert error_codes(body) == {("grantConsent",): "BAD_REQUEST"}
    message = body["errors"][0]["message"]
    assert message.isprintable()
    if agency.isprintable():
        assert message.startswith(f"{agency!r} is not an agency that may hold consent")
        # It names the codes a consent may name.
        assert "busan-welfare, gangnam-welfare, mma, nhis, nps, nts" in message
    else:
        assert message == "The agency code holds control characters."
    rows = await fetch(
        store.dsn, "select 1 from gateway.consents where subject = $1", KEYS.subject(rrn)
    )
    assert rows == []
    no_traceback(caplog)


def test_the_demo_policy_binds_each_official_role_to_its_agencies() -> None:
    schema = build_schema()
    policy = policy_module.load(
        DEMO_POLICY, schema_fields(schema), PURPOSES, resident_types=resident_types(schema)
    )
    assert policy.roles["welfare_officer"].agencies is not None
    assert "welfare" in policy.roles["welfare_officer"].agencies
    assert policy.roles["tax_officer"].agencies == frozenset({"nts"})
    assert policy.roles["agency_system"].agencies == frozenset(
        {"registry", "nhis", "nts", "nps", "mma"}
    )
    assert policy.roles["citizen"].agencies is None
    # The demo banner's tokens are all admitted.
    for role, agency in DEMO_ROLES.items():
        policy.admit([role], agency)
    assert {"welfare", "nts", "nhis", "nps", "mma"} <= policy.consent_agencies
    assert "statistics" not in policy.consent_agencies


@pytest.mark.parametrize(
    ("agencies", "complaint"),
    [
        ('"nts"', "agencies must be a non-empty list of agency codes"),
        ("[]", "agencies must be a non-empty list of agency codes"),
        ('["NTS"]', "'NTS' is not an agency code"),
        ('["nts", 3]', "3 is not an agency code"),
        ('["tax office"]', "'tax office' is not an agency code"),
        ('["nts", "nts"]', "agencies lists a code twice"),
    ],
)
def test_check_config_catches_a_bad_agencies_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], agencies: str, complaint: str
) -> None:
    policy = tmp_path / "policy.toml"
    text = DEMO_POLICY.read_text().replace('agencies = ["nts"]', f"agencies = {agencies}")
    assert text != DEMO_POLICY.read_text()
    policy.write_text(text)
    config = write_gateway_toml(tmp_path, database_url="postgresql://127.0.0.1/unused",
                                policy=policy)  # fmt: skip
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    # check-config reports every problem, one line each: the policy's is one of them.
    [line] = [line for line in err.splitlines() if "[roles.tax_officer]" in line]
    assert complaint in line
    assert line.startswith("gateway: configuration error: "), err


def test_a_role_with_consent_views_must_name_its_agencies() -> None:
    text = DEMO_POLICY.read_text().replace(
        'agencies = ["welfare", "seoul-welfare", "busan-welfare", "gangnam-welfare"]\n', ""
    )
    import tomllib

    schema = build_schema()
    with pytest.raises(ConfigError, match=r"\[roles.welfare_officer\].*declare agencies"):
        policy_module.parse(
            tomllib.loads(text),
            schema_fields(schema),
            PURPOSES,
            resident_types=resident_types(schema),
        )


def test_gateway_token_refuses_an_agency_the_role_may_not_claim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "--role", "welfare_officer", "--agency", "nts"]) == 2
    assert "welfare_officer may not claim the agency 'nts'" in capsys.readouterr().err
    assert main(["token", "--role", "superuser"]) == 2
    assert "does not know: 'superuser'" in capsys.readouterr().err
    assert main(["token", "--role", "welfare_officer", "--agency", "welfare"]) == 0
    assert capsys.readouterr().out.count(".") == 2


# --- Finding 9: nesting beyond reason is a coded 4xx, never a 500 or a traceback ----------


def deep_object(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def deep_document(levels: int) -> str:
    return "{" + "a{" * levels + "b" + "}" * (levels + 1)


def coded_4xx(response: httpx.Response, *codes: str) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert body["errors"], body
    assert {e["extensions"]["code"] for e in body["errors"]} <= set(codes), body


@pytest.mark.parametrize("levels", [100, 900, 30_000])
async def test_a_deeply_nested_json_body_is_400(
    demo: GatewayClient, caplog: pytest.LogCaptureFixture, levels: int
) -> None:
    for body in ("[" * levels, "[" * levels + "]" * levels):
        response = await demo.http.post(
            "/graphql",
            content=body,
            headers={**demo.as_(token("operator")).headers, "content-type": "application/json"},
        )
        error = the_error(response, 400, "BAD_REQUEST")
        assert "nested" in error["message"]
    no_traceback(caplog)


@pytest.mark.parametrize("levels", [100, 900, 5_000])
async def test_deeply_nested_variables_are_400(
    demo: GatewayClient, caplog: pytest.LogCaptureFixture, levels: int
) -> None:
    operator = demo.as_(token("operator"))
    body = '{"query": "query($v: String) { agencies { code } }", "variables": {"v": %s}}'
    response = await demo.http.post(
        "/graphql",
        content=body % deep_object(levels),
        headers={**operator.headers, "content-type": "application/json"},
    )
    the_error(response, 400, "BAD_REQUEST")
    for param in ("variables", "extensions"):
        got = await demo.http.get(
            "/graphql",
            # (httpx sends no URL over 64 KiB; servers refuse far shorter ones.)
            params={"query": AGENCIES, param: deep_object(min(levels, 2_000))},
            headers=operator.headers,
        )
        the_error(got, 400, "BAD_REQUEST")
    no_traceback(caplog)


@pytest.mark.parametrize("levels", [300, 1_300, 30_000])
async def test_a_deeply_nested_document_is_a_coded_4xx(
    demo: GatewayClient, caplog: pytest.LogCaptureFixture, levels: int
) -> None:
    operator = demo.as_(token("operator"))
    posted = await operator.post({"query": deep_document(levels)})
    coded_4xx(posted, "BAD_REQUEST", "QUERY_TOO_COMPLEX")
    got = await demo.http.get(
        "/graphql", params={"query": deep_document(min(levels, 5_000))}, headers=operator.headers
    )
    coded_4xx(got, "BAD_REQUEST", "QUERY_TOO_COMPLEX")
    batch = await operator.post([{"query": AGENCIES}, {"query": deep_document(levels)}])
    coded_4xx(batch, "BAD_REQUEST", "QUERY_TOO_COMPLEX")
    no_traceback(caplog)


async def test_a_deeply_nested_invalidation_is_400(
    demo: GatewayClient, caplog: pytest.LogCaptureFixture
) -> None:
    for levels in (100, 30_000):
        response = await demo.http.post(
            "/events/invalidate",
            content='{"agency": "nts", "keys": %s}' % ("[" * levels + "]" * levels),
            headers={**bearer(token("agency_system", agency="nts"))},
        )
        the_error(response, 400, "BAD_REQUEST")
    no_traceback(caplog)


async def test_a_token_with_a_deeply_nested_header_is_401(
    demo: GatewayClient, caplog: pytest.LogCaptureFixture
) -> None:
    import base64

    header = base64.urlsafe_b64encode(b"[" * 30_000).decode().rstrip("=")
    response = await demo.http.post(
        "/graphql", json={"query": AGENCIES}, headers=bearer(f"{header}.e30.c2ln")
    )
    the_error(response, 401, "UNAUTHENTICATED")
    no_traceback(caplog)


# --- Finding 11: opaque cursors, and an open /readyz that shows states only ----------------

LOG = """query($first: Int, $after: String) { myAccessLog(first: $first, after: $after) {
  edges { cursor node { purpose fields } } pageInfo { hasNextPage endCursor } } }"""


async def test_access_log_cursors_neither_show_nor_accept_the_audit_sequence(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    import base64

    rrn, other = MEMBERS[13], MEMBERS[14]
    officer = demo.as_(token("welfare_officer", agency="welfare"))
    for who in (rrn, rrn, rrn, other):
        await officer.query("query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) "
                            "{ name } }", {"r": who})  # fmt: skip
    citizen = demo.as_(token("citizen", rrn=rrn, sub="citizen-13"))
    whole = await citizen.query(LOG, {"first": 100})
    assert "errors" not in whole, whole
    cursors = [e["cursor"] for e in whole["data"]["myAccessLog"]["edges"]]
    assert len(cursors) == 3
    seqs = [
        r["seq"]
        for r in await fetch(
            store.dsn,
            "select seq from gateway.audit_log where subject = $1 order by seq desc",
            KEYS.subject(rrn),
        )
    ]
    assert len(seqs) == 3
    for cursor, seq in zip(cursors, seqs, strict=True):
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        # Not the old "seq:N", nor N in any plain encoding (digits, binary, hex).
        assert b"seq" not in raw
        assert not raw.isascii() or not raw.decode().isdigit()
        assert seq.to_bytes(8, "big") not in raw
        assert seq.to_bytes(8, "little") not in raw
        assert cursor not in {str(seq), hex(seq), f"{seq:x}"}
        assert len(raw) >= 16  # it carries an authentication tag

    # Paging still works, one entry at a time, and the pages make up the whole log.
    paged: list[str] = []
    after = None
    while True:
        page = (await citizen.query(LOG, {"first": 1, "after": after}))["data"]["myAccessLog"]
        paged += [e["cursor"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert paged == cursors

    def refused(body: dict[str, Any]) -> None:
        assert error_codes(body) == {("myAccessLog",): "BAD_REQUEST"}
        assert body["data"] is None

    # The old, readable format of a real entry is not a cursor any more (forging one).
    refused(await citizen.query(LOG, {"after": base64.urlsafe_b64encode(
        f"seq:{seqs[0]}".encode()).decode()}))  # fmt: skip
    # A cursor with one character changed.
    first = cursors[0]
    tampered = first[:5] + ("A" if first[5] != "A" else "B") + first[6:]
    refused(await citizen.query(LOG, {"after": tampered}))
    # Another resident's cursor does not page through this log.
    neighbour = demo.as_(token("citizen", rrn=other, sub="citizen-14"))
    refused(await neighbour.query(LOG, {"after": cursors[0]}))


async def test_readyz_shows_up_or_down_and_no_counters(demo: GatewayClient) -> None:
    await demo.as_(token("welfare_officer", agency="welfare")).query(LOOKUP, {"r": HEAD_RRN})
    response = await demo.http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "ready",
        "database": "up",
        "audit": {"ok": True},
        "cache": body["cache"],
        "agencies": dict.fromkeys(["registry", "nhis", "nts", "nps", "mma"], "up"),
    }
    assert body["cache"] in {"up", "off"}
    for detail in ("failures", "cache_hit_ratio", "circuit", "calls", "kind", "reachable"):
        assert detail not in response.text
    # The detail is still there for a role that may read agency status.
    status = await demo.as_(token("operator")).query(
        "{ agencies { code circuit failures cacheHitRatio } }"
    )
    assert {a["code"] for a in status["data"]["agencies"]} == set(body["agencies"])
