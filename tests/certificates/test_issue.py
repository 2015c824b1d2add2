"""Citizens issue certificates about themselves; each holds only what its kind needs, is
audited, shows in myAccessLog, and verifies against the published keys."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from gateway.audit import AuditKeys
from gateway.audit import verify as verify_chain
from gateway.certificate_pages import qr_svg
from gateway.certificates import Outcome, read_revocations, verify
from gateway.config import CertificatesConfig
from tests.access.conftest import KEYS, demo_gateway, error_codes, fetch, scratch_store
from tests.certificates.conftest import citizen
from tests.conftest import TEST_AUDIT_KEY, GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN, members

ISSUE = """mutation($kind: CertificateKind!) {
  issueCertificate(kind: $kind) { id kind issuedAt expiresAt revokedAt token }
}"""
REVOKE = "mutation($id: ID!) { revokeCertificate(id: $id) { id kind revokedAt token } }"
LOG = """{ myAccessLog(first: 50) { edges { node {
  agency role purpose fields denied outcome certificateId certificateKind } } } }"""
MEMBER_RRN = members()[1][0]
HOLDER = {"name": "Kim Min-jun", "birthDate": "1994-08-12", "rrn": "940812-1******"}


async def issue(gateway: GatewayClient, kind: str, rrn: str = HEAD_RRN) -> dict[str, Any]:
    body = await citizen(gateway, rrn).query(ISSUE, {"kind": kind})
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"]["issueCertificate"]
    return found


async def access_log(client: GatewayClient) -> list[dict[str, Any]]:
    body = await client.query(LOG)
    return [edge["node"] for edge in body["data"]["myAccessLog"]["edges"]]


async def published(gateway: GatewayClient) -> dict[str, Any]:
    response = await gateway.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    jwks: dict[str, Any] = response.json()
    return jwks


async def test_each_kind_holds_only_what_it_needs(gateway: GatewayClient) -> None:
    jwks = await published(gateway)
    expected = {
        "RESIDENT_REGISTRATION": {
            "registration": {
                "status": "ACTIVE", "sex": "MALE", "foreignResident": False,
                "address": {"region": "Seoul", "city": "Gangnam-gu", "street": "12 Teheran-ro",
                            "postalCode": "06236"},
                "registeredOn": "2019-03-02",
            }
        },
        "TAX_PAYMENT": {
            "taxes": {
                "years": [
                    {"year": 2024, "taxAssessed": 4_100_000, "taxPaid": 4_100_000, "arrears": 0},
                    {"year": 2025, "taxAssessed": 350_000_000, "taxPaid": 350_000_000,
                     "arrears": 0},
                ],
                "arrears": 0,
            }
        },
        "HEALTH_INSURANCE": {
            "insurance": {"enrolled": True, "insuredType": "EMPLOYEE", "enrolledOn": "2018-01-01"}
        },
    }  # fmt: skip
    for kind, body in expected.items():
        certificate = await issue(gateway, kind)
        verdict = verify(certificate["token"], jwks)
        assert verdict.outcome is Outcome.GENUINE, verdict.reason
        claims = verdict.claims
        assert claims is not None
        assert set(claims) == {"iss", "jti", "kind", "iat", "exp", "holder", *body}
        assert claims["holder"] == HOLDER
        assert {k: claims[k] for k in body} == body
        assert claims["jti"] == certificate["id"]
        assert claims["kind"] == kind == certificate["kind"]
        assert claims["iss"] == "gw-test"
        assert verdict.header["kid"] == jwks["keys"][0]["kid"]  # the current key signs
        assert verdict.header["alg"] == "Ed25519"
        assert certificate["revokedAt"] is None


async def test_household_certificate_lists_members_and_tells_them(
    gateway: GatewayClient,
) -> None:
    certificate = await issue(gateway, "HOUSEHOLD_COMPOSITION")
    claims = verify(certificate["token"], await published(gateway)).claims
    assert claims is not None
    listed = claims["household"]["members"]
    assert [(m["name"], m["relationship"], m["birthDate"]) for m in listed] == [
        (name, relationship, birth.isoformat()) for _, name, birth, _, relationship in members()
    ]
    assert set(listed[0]) == {"name", "relationship", "birthDate"}  # no RRNs, no sex
    assert claims["household"]["id"] == "H900000001"
    # Twenty members still fit in one printable QR code.
    assert qr_svg(certificate["token"]) is not None
    # A member's own access log shows what the holder's certificate says about them.
    entries = await access_log(citizen(gateway, MEMBER_RRN))
    mine = [e for e in entries if e["certificateId"] == certificate["id"]]
    assert len(mine) == 1
    assert mine[0]["purpose"] == "CERTIFICATE_ISSUE"
    assert mine[0]["fields"] == ["Resident.birthDate", "Resident.name", "Resident.relationship"]


async def test_issue_is_audited_stored_without_token_and_in_access_log(
    gateway: GatewayClient, store: ScratchDatabase
) -> None:
    certificate = await issue(gateway, "HEALTH_INSURANCE")
    rows = await fetch(store.dsn, "select * from gateway.certificates where id = $1::uuid",
                       certificate["id"])  # fmt: skip
    assert len(rows) == 1
    row = dict(rows[0])
    assert row["subject"] == KEYS.subject(HEAD_RRN)
    assert row["kind"] == "HEALTH_INSURANCE"
    assert set(row) == {"id", "kind", "subject", "kid", "issued_at", "expires_at", "revoked_at"}
    assert HEAD_RRN not in str(row)
    assert certificate["token"] not in str(row)
    entries = await access_log(citizen(gateway))
    entry = next(e for e in entries if e["certificateId"] == certificate["id"])
    assert entry == {
        "agency": None, "role": "citizen", "purpose": "CERTIFICATE_ISSUE",
        "fields": sorted(["Resident.rrn", "Resident.name", "Resident.birthDate",
                          "Resident.insurance", "HealthInsurance.insuredType",
                          "HealthInsurance.enrolledOn"]),
        "denied": [], "outcome": "GRANTED", "certificateId": certificate["id"],
        "certificateKind": "HEALTH_INSURANCE",
    }  # fmt: skip
    audit = await fetch(store.dsn, "select * from gateway.audit_log where note like $1",
                        f'%{certificate["id"]}%')  # fmt: skip
    assert [r["purpose"] for r in audit] == ["CERTIFICATE_ISSUE"]


async def test_only_citizens_issue_about_themselves(gateway: GatewayClient) -> None:
    for bearer in (
        token("welfare_officer", agency="welfare"),
        token("tax_officer", agency="nts"),
        token("citizen"),  # a citizen token without an rrn names no one
    ):
        body = await gateway.as_(bearer).query(ISSUE, {"kind": "TAX_PAYMENT"})
        assert body["data"] is None
        assert error_codes(body) == {("issueCertificate",): "FORBIDDEN"}


async def test_revoke_by_owner_only(gateway: GatewayClient, store: ScratchDatabase) -> None:
    certificate = await issue(gateway, "RESIDENT_REGISTRATION")
    stranger = await citizen(gateway, MEMBER_RRN).query(REVOKE, {"id": certificate["id"]})
    assert error_codes(stranger) == {("revokeCertificate",): "FORBIDDEN"}
    rows = await fetch(store.dsn, "select revoked_at from gateway.certificates where id = $1::uuid",
                       certificate["id"])  # fmt: skip
    assert rows[0]["revoked_at"] is None
    bad = await citizen(gateway).query(REVOKE, {"id": "not-an-id"})
    assert error_codes(bad) == {("revokeCertificate",): "BAD_REQUEST"}

    jwks = await published(gateway)
    before = await gateway.http.get("/.well-known/revocations.jwt")
    assert certificate["id"] not in read_revocations(before.text, jwks).revoked
    revoked = (await citizen(gateway).query(REVOKE, {"id": certificate["id"]}))["data"][
        "revokeCertificate"]  # fmt: skip
    assert revoked["revokedAt"] is not None
    assert revoked["token"] is None
    after = await gateway.http.get("/.well-known/revocations.jwt")
    assert after.headers["content-type"].startswith("application/jwt")
    listed = read_revocations(after.text, jwks)
    assert certificate["id"] in listed.revoked
    verdict = verify(certificate["token"], jwks, listed)
    assert verdict.outcome is Outcome.REVOKED
    entries = await access_log(citizen(gateway))
    kinds = [e["purpose"] for e in entries if e["certificateId"] == certificate["id"]]
    assert kinds == ["CERTIFICATE_REVOKE", "CERTIFICATE_ISSUE"]  # newest first
    mine = await citizen(gateway).query("{ myCertificates { id revokedAt token } }")
    listed_mine = {c["id"]: c for c in mine["data"]["myCertificates"]}
    assert listed_mine[certificate["id"]]["revokedAt"] is not None
    assert listed_mine[certificate["id"]]["token"] is None


async def test_the_audit_chain_still_verifies(
    gateway: GatewayClient, store: ScratchDatabase
) -> None:
    await issue(gateway, "TAX_PAYMENT")
    conn = await asyncpg.connect(store.dsn)
    try:
        verdict = await verify_chain(conn, AuditKeys(TEST_AUDIT_KEY))
    finally:
        await conn.close()
    assert verdict.problems == []
    assert verdict.checked > 0


async def test_jwks_publishes_public_keys_only(gateway: GatewayClient) -> None:
    jwks = await published(gateway)
    assert [(k["kty"], k["alg"]) for k in jwks["keys"]] == [("OKP", "Ed25519"), ("EC", "ES256")]
    assert all("d" not in k for k in jwks["keys"])
    response = await gateway.http.get("/.well-known/jwks.json")
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("path", ["/verify", "/verify/static/verify.js", "/verify/static/jsQR.js"])
async def test_verify_page_is_served_from_the_package(gateway: GatewayClient, path: str) -> None:
    response = await gateway.http.get(path)
    assert response.status_code == 200
    assert len(response.text) > 500


async def test_nothing_is_issued_when_the_issue_cannot_be_audited(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    cert_config: CertificatesConfig,
) -> None:
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db, certificates=cert_config) as gateway,
    ):
        await issue(gateway, "TAX_PAYMENT")  # the control
        conn = await asyncpg.connect(db.dsn)
        try:
            await conn.execute("update gateway.audit_head set mac = ''")  # tampered with
        finally:
            await conn.close()
        body = await citizen(gateway).query(ISSUE, {"kind": "TAX_PAYMENT"})
        assert body["data"] is None
        assert error_codes(body) == {("issueCertificate",): "AUDIT_UNAVAILABLE"}
        rows = await fetch(db.dsn, "select kind from gateway.certificates")
        assert [r["kind"] for r in rows] == ["TAX_PAYMENT"]  # the control's only


async def test_one_certificate_per_request_and_a_daily_cap(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    cert_config: CertificatesConfig,
) -> None:
    """Aliases cannot multiply issues or revocations (each revoked id sits in the public list
    until it expires, and a household certificate writes into every member's access log);
    past `[certificates] issues_per_day` a citizen is RATE_LIMITED."""
    capped = CertificatesConfig(keys=cert_config.keys, issuer="gw-test", issues_per_day=3)
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db, certificates=capped) as gateway,
    ):
        many = await citizen(gateway).query(
            """mutation { a: issueCertificate(kind: TAX_PAYMENT) { id }
                          b: issueCertificate(kind: TAX_PAYMENT) { id } }"""
        )
        assert many["data"] is None  # the second fails a non-null field: nothing returned
        assert error_codes(many) == {("b",): "BAD_REQUEST"}
        first = await issue(gateway, "TAX_PAYMENT")
        second = await issue(gateway, "TAX_PAYMENT")
        both = await citizen(gateway).query(
            "mutation($a: ID!, $b: ID!) { a: revokeCertificate(id: $a) { id }"
            " b: revokeCertificate(id: $b) { id } }",
            {"a": first["id"], "b": second["id"]},
        )
        assert error_codes(both) == {("b",): "BAD_REQUEST"}
        over = await citizen(gateway).query(ISSUE, {"kind": "TAX_PAYMENT"})
        assert error_codes(over) == {("issueCertificate",): "RATE_LIMITED"}
        rows = await fetch(db.dsn, "select revoked_at from gateway.certificates")
        assert len(rows) == 3  # the aliased pair's first, then two: the cap
        assert sum(r["revoked_at"] is not None for r in rows) == 1
