"""Authentication: who may talk to the gateway at all, with HS256 and with a JWKS URL."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from gateway import auth
from gateway.auth import issue_token
from gateway.cli import main
from gateway.config import AuthConfig
from tests.access.conftest import demo_gateway, write_gateway_toml
from tests.conftest import TEST_SECRET, GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN

AGENCIES = "{ agencies { code reachable } }"
ME = "{ me { rrn name } }"


def only_unauthenticated(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    body: dict[str, Any] = response.json()
    assert "data" not in body, body
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["message"]
    return error


async def post_with(gateway: GatewayClient, headers: dict[str, str]) -> httpx.Response:
    return await gateway.http.post("/graphql", json={"query": AGENCIES}, headers=headers)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "someone",
        "roles": ["operator"],
        "iss": "resident-gateway",
        "aud": "resident-gateway",
        "iat": now,
        "exp": now + 600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(secret))


# --- HS256 (development) ----------------------------------------------------------------


async def test_a_valid_token_is_accepted(demo: GatewayClient) -> None:
    # The control for every refusal below: the same request with a good token works.
    response = await post_with(demo, {"Authorization": f"Bearer {hs256(claims())}"})
    assert response.status_code == 200, response.text
    codes = {a["code"] for a in response.json()["data"]["agencies"]}
    assert codes == {"registry", "nhis", "nts", "nps", "mma"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": ""}, id="empty"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
        pytest.param({"Authorization": "Bearer    "}, id="bearer-blank"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
        pytest.param({"Authorization": "Token abc.def.ghi"}, id="other-scheme"),
        pytest.param({"Authorization": "Bearer not-a-jwt"}, id="not-a-jwt"),
        pytest.param({"Authorization": "Bearer a.b.c"}, id="garbage-segments"),
        pytest.param({"Authorization": f"{hs256(claims())}"}, id="token-without-scheme"),
    ],
)
async def test_missing_or_malformed_authorization_is_401(
    demo: GatewayClient, headers: dict[str, str]
) -> None:
    only_unauthenticated(await post_with(demo, headers))


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _tampered() -> str:
    """A good token whose payload was swapped for one with another role."""
    header, _, rest = hs256(claims(roles=["operator"])).partition(".")
    signature = rest.partition(".")[2]
    return f"{header}.{b64(claims(roles=['tax_officer']))}.{signature}"


def unsigned(payload: dict[str, Any]) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


@pytest.mark.parametrize(
    ("bearer", "why"),
    [
        pytest.param(hs256(claims(), "another-secret-" + "z" * 40), "signature", id="bad-sig"),
        pytest.param(_tampered(), "signature", id="payload-changed"),
        pytest.param(hs256(claims(aud="someone-else")), "aud", id="wrong-aud"),
        pytest.param(hs256(claims(iss="evil-issuer")), "iss", id="wrong-iss"),
        pytest.param(hs256(claims(aud=None)), "aud", id="no-aud"),
        pytest.param(hs256(claims(iss=None)), "iss", id="no-iss"),
        pytest.param(
            hs256(claims(exp=int(time.time()) - 3600)), "expired", id="expired-an-hour-ago"
        ),
        pytest.param(hs256(claims(exp=None)), "exp", id="no-exp"),
        pytest.param(hs256(claims(sub=None)), "sub", id="no-sub"),
        pytest.param(unsigned(claims()), "", id="alg-none"),
    ],
)
async def test_refused_tokens_are_401(demo: GatewayClient, bearer: str, why: str) -> None:
    error = only_unauthenticated(await post_with(demo, {"Authorization": f"Bearer {bearer}"}))
    assert why in error["message"]


async def test_issue_token_with_other_audience_or_issuer_is_refused(demo: GatewayClient) -> None:
    for other in (
        AuthConfig(secret=TEST_SECRET, audience="another-gateway"),
        AuthConfig(secret=TEST_SECRET, issuer="another-issuer"),
    ):
        bearer = issue_token(other, sub="x", roles=["operator"])
        only_unauthenticated(await post_with(demo, {"Authorization": f"Bearer {bearer}"}))
    expired = issue_token(AuthConfig(secret=TEST_SECRET), sub="x", roles=["operator"], ttl_s=-120)
    only_unauthenticated(await post_with(demo, {"Authorization": f"Bearer {expired}"}))


async def test_get_queries_need_a_token_too(demo: GatewayClient) -> None:
    for accept in ("application/json", "text/html"):
        response = await demo.http.get(
            "/graphql", params={"query": AGENCIES}, headers={"Accept": accept}
        )
        only_unauthenticated(response)


async def test_open_endpoints_need_no_token(demo: GatewayClient) -> None:
    healthz = await demo.http.get("/healthz")
    assert healthz.status_code == 200
    assert healthz.json() == {"status": "ok"}
    readyz = await demo.http.get("/readyz")
    assert readyz.status_code == 200, readyz.text
    assert readyz.json()["database"] == "up"
    assert set(readyz.json()["agencies"]) == {"registry", "nhis", "nts", "nps", "mma"}
    ide = await demo.http.get("/graphql", headers={"Accept": "text/html"})
    assert ide.status_code == 200
    assert ide.headers["content-type"].startswith("text/html")
    assert "graphiql" in ide.text.lower()


async def test_metrics_need_a_token_and_a_role_that_reads_agency_status(
    demo: GatewayClient,
) -> None:
    only_unauthenticated(await demo.http.get("/metrics"))
    bad = await demo.http.get("/metrics", headers={"Authorization": "Bearer not-a-jwt"})
    only_unauthenticated(bad)

    operator = await demo.http.get(
        "/metrics", headers={"Authorization": f"Bearer {token('operator')}"}
    )
    assert operator.status_code == 200
    assert operator.headers["content-type"].startswith("text/plain")
    assert "gateway_audit_commits_total" in operator.text
    assert 'gateway_agency_calls_total{agency="mma"' in operator.text

    officer = await demo.http.get(
        "/metrics", headers={"Authorization": f"Bearer {token('welfare_officer')}"}
    )
    body = officer.json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert "gateway_" not in officer.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/metrics", id="metrics"),
        pytest.param("POST", "/events/invalidate", id="invalidate"),
    ],
)
async def test_a_refused_role_outside_graphql_is_not_an_http_success(
    demo: GatewayClient, method: str, path: str
) -> None:
    # Outside /graphql there is no partial result: a refusal must not look like a success
    # (a Prometheus scraper or an agency system checks the status, not a JSON body).
    response = await demo.http.request(
        method,
        path,
        json={"agency": "nts", "keys": []} if method == "POST" else None,
        headers={"Authorization": f"Bearer {token('welfare_officer', agency='nts')}"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert response.status_code == 403, response.status_code


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/metrics"), ("POST", "/events/invalidate"), ("POST", "/graphql")],
)
async def test_everything_else_needs_a_token(demo: GatewayClient, method: str, path: str) -> None:
    body = {"agency": "nts", "keys": []} if path.startswith("/events") else {"query": AGENCIES}
    response = await demo.http.request(method, path, json=body if method == "POST" else None)
    only_unauthenticated(response)


# --- the gateway token command ----------------------------------------------------------


async def test_cli_token_is_accepted_and_carries_its_claims(
    demo: GatewayClient,
    store: ScratchDatabase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_gateway_toml(tmp_path, database_url=store.dsn)
    digits = HEAD_RRN.replace("-", "")
    code = main(["token", "--role", "citizen", "--rrn", digits, "--config", str(path)])
    assert code == 0
    citizen = capsys.readouterr().out.strip()
    assert citizen.count(".") == 2
    assert "\n" not in citizen
    body = await demo.as_(citizen).query(ME)
    assert body == {"data": {"me": {"rrn": HEAD_RRN, "name": "Kim Min-jun"}}}

    args = ["token", "--role", "welfare_officer", "--agency", "welfare", "--config", str(path)]
    assert main(args) == 0
    officer = capsys.readouterr().out.strip()
    query = "query($r: String!) { resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) { name } }"
    body = await demo.as_(officer).query(query, {"r": HEAD_RRN})
    assert body == {"data": {"resident": {"name": "Kim Min-jun"}}}
    # The role in the token is the one asked for: the officer has no me.
    me = await demo.as_(officer).query(ME)
    assert me["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_cli_token_signed_with_another_secret_is_refused(
    demo: GatewayClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.toml"
    other = write_gateway_toml(tmp_path, database_url="postgresql://127.0.0.1/unused")
    path.write_text(other.read_text().replace(TEST_SECRET, "a-different-secret-" + "q" * 30))
    assert main(["token", "--role", "operator", "--config", str(path)]) == 0
    bearer = capsys.readouterr().out.strip()
    only_unauthenticated(await post_with(demo, {"Authorization": f"Bearer {bearer}"}))


# --- JWKS (production) ------------------------------------------------------------------


class JWKSServer:
    """A real HTTP server on 127.0.0.1 serving a public key set, counting requests."""

    def __init__(self, *keys: RSAKey | ECKey) -> None:
        self.requests = 0
        self.serve(*keys)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = owner.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def serve(self, *keys: RSAKey | ECKey) -> None:
        self.body = json.dumps(KeySet(list(keys)).as_dict(private=False)).encode()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/.well-known/jwks.json"

    def __enter__(self) -> JWKSServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def signed(key: RSAKey | ECKey, alg: str, kid: str | None = None, **changes: Any) -> str:
    header = {"alg": alg, "kid": kid if kid is not None else key.kid}
    return jwt.encode(header, claims(**changes), key)


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


@pytest.fixture
def jwks(rsa_key: RSAKey, ec_key: ECKey) -> Iterator[JWKSServer]:
    with JWKSServer(rsa_key, ec_key) as server:
        yield server


async def test_jwks_accepts_rs256_and_es256_and_refuses_strangers(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    store: ScratchDatabase,
    jwks: JWKSServer,
    rsa_key: RSAKey,
    ec_key: ECKey,
) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    impostor = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # a kid we know
    stranger_ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    config_auth = AuthConfig(jwks_url=jwks.url)
    async with demo_gateway(agency_db, http_agencies, store, auth=config_auth) as gateway:
        for bearer in (signed(rsa_key, "RS256"), signed(ec_key, "ES256")):
            response = await post_with(gateway, {"Authorization": f"Bearer {bearer}"})
            assert response.status_code == 200, response.text
            assert len(response.json()["data"]["agencies"]) == 5
        # The claims of a JWKS token are used like any other: a citizen reads their record.
        citizen = signed(ec_key, "ES256", roles=["citizen"], rrn=HEAD_RRN, sub="c-1")
        assert (await gateway.as_(citizen).query(ME))["data"]["me"]["rrn"] == HEAD_RRN
        assert jwks.requests == 1  # fetched once, then reused

        refused = [
            signed(stranger, "RS256"),  # unknown kid
            signed(impostor, "RS256"),  # known kid, wrong key
            signed(stranger_ec, "ES256"),
            signed(rsa_key, "RS256", aud="someone-else"),
            signed(ec_key, "ES256", exp=int(time.time()) - 3600),
            hs256(claims()),  # HS256 is for development secrets only
            hs256(claims(), json.dumps(rsa_key.as_dict(private=False))),
        ]
        for bearer in refused:
            only_unauthenticated(await post_with(gateway, {"Authorization": f"Bearer {bearer}"}))


async def test_jwks_unknown_kids_do_not_hammer_the_key_server(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    store: ScratchDatabase,
    jwks: JWKSServer,
    rsa_key: RSAKey,
) -> None:
    assert auth.JWKS_MIN_REFRESH_S >= 1
    async with demo_gateway(
        agency_db, http_agencies, store, auth=AuthConfig(jwks_url=jwks.url)
    ) as gateway:
        good = await post_with(gateway, {"Authorization": f"Bearer {signed(rsa_key, 'RS256')}"})
        assert good.status_code == 200
        assert jwks.requests == 1
        for i in range(5):
            rogue = ECKey.generate_key("P-256", parameters={"kid": f"rogue-{i}"})
            response = await post_with(
                gateway, {"Authorization": f"Bearer {signed(rogue, 'ES256')}"}
            )
            only_unauthenticated(response)
        # Within JWKS_MIN_REFRESH_S, unknown key ids are refused without refetching.
        assert jwks.requests == 1


async def test_jwks_rotation_is_picked_up_on_an_unknown_kid(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    store: ScratchDatabase,
    jwks: JWKSServer,
    rsa_key: RSAKey,
    ec_key: ECKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "JWKS_MIN_REFRESH_S", 0.0)
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
    async with demo_gateway(
        agency_db, http_agencies, store, auth=AuthConfig(jwks_url=jwks.url)
    ) as gateway:
        old = signed(rsa_key, "RS256")
        assert (await post_with(gateway, {"Authorization": f"Bearer {old}"})).status_code == 200
        assert jwks.requests == 1

        # Before the key server publishes rsa-2, its tokens are refused (after a refetch).
        new = signed(rotated, "RS256")
        only_unauthenticated(await post_with(gateway, {"Authorization": f"Bearer {new}"}))
        assert jwks.requests == 2

        jwks.serve(rotated, ec_key)  # rsa-1 retired, rsa-2 published
        response = await post_with(gateway, {"Authorization": f"Bearer {new}"})
        assert response.status_code == 200, response.text
        assert jwks.requests == 3
        # Known kids need no fetch.
        es = signed(ec_key, "ES256")
        assert (await post_with(gateway, {"Authorization": f"Bearer {es}"})).status_code == 200
        assert jwks.requests == 3
