"""Secrets given by reference never show: an HTTPS agency behind OAuth2 (or a static header,
or an encrypted client key) fails in every way we can make it fail, and the sentinel secret
appears in no response, /readyz, /metrics, Query.agencies, log record or check-config output."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.config import AgencyConfig
from tests.adapters.tls_servers import CA, Stub, serve, stub_app
from tests.conftest import (
    ALLOW_ALL,
    TEST_AUDIT_KEY,
    TEST_SECRET,
    ScratchDatabase,
    gateway_client,
    make_config,
)
from tests.data import HEAD_RRN

SENTINEL = "SENTINEL-c0ffee-" + "z" * 24
KEY_PASSWORD = SENTINEL + "-key"
QUERY = """query($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { name taxes { year } }
}"""
STATUS = "{ agencies { code reachable circuit failures lastError } }"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    ca = CA(directory)
    return {
        "ca": ca,
        "rogue": CA(directory, "Rogue CA"),
        "server": ca.issue("agency", server=True),
        "locked": ca.issue("gateway-locked", server=False, password=KEY_PASSWORD),
    }


@pytest.fixture(scope="module")
def stub() -> Stub:
    return Stub()


@pytest.fixture(scope="module")
def tls_url(pki: dict[str, Any], stub: Stub) -> Iterator[str]:
    with serve(stub_app(stub), tls=pki["server"]) as url:
        yield url


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch, stub: Stub) -> None:
    stub.reset()
    monkeypatch.setenv("TEST_SENTINEL_SECRET", SENTINEL)
    monkeypatch.setenv("TEST_SENTINEL_HEADER", f"Bearer {SENTINEL}")
    monkeypatch.setenv("TEST_SENTINEL_KEY_PASSWORD", KEY_PASSWORD)


def oauth2(url: str, ca_file: Path, token_url: str | None = None) -> dict[str, Any]:
    return {
        "ca_file": str(ca_file),
        "oauth2_token_url": token_url or f"{url}/token",
        "oauth2_client_id": "resident-gateway",
        "oauth2_client_secret": "env:TEST_SENTINEL_SECRET",
    }


async def run_failing(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], url: str, settings: dict[str, Any]
) -> list[str]:
    """Everything a caller or an operator could see while nts fails."""
    nts = AgencyConfig(code="nts", kind="http", url=url, retries=1, settings=settings)
    config = make_config(agency_db.dsn, http_agencies, agencies={"nts": nts})
    seen: list[str] = []
    async with gateway_client(config) as gateway:
        for _ in range(3):
            body = await gateway.query(QUERY, {"rrn": HEAD_RRN})
            assert body["data"]["resident"]["taxes"] is None, body
            assert body["errors"][0]["extensions"]["agency"] == "nts"
            seen.append(str(body))
        status = await gateway.query(STATUS)
        [nts_status] = [a for a in status["data"]["agencies"] if a["code"] == "nts"]
        assert nts_status["failures"] > 0
        assert nts_status["lastError"]
        seen.append(str(status))
        seen.append((await gateway.http.get("/readyz")).text)
        metrics = await gateway.http.get("/metrics", headers=gateway.headers)
        assert metrics.status_code == 200
        seen.append(metrics.text)
    return seen


@pytest.mark.parametrize(
    "failure", ["bad CA", "token endpoint down", "token endpoint refuses", "agency 401"]
)
async def test_oauth2_secret_never_shows(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tls_url: str,
    pki: dict[str, Any],
    stub: Stub,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    settings = oauth2(tls_url, pki["ca"].pem)
    if failure == "bad CA":
        settings["ca_file"] = str(pki["rogue"].pem)
    elif failure == "token endpoint down":
        settings["oauth2_token_url"] = "http://127.0.0.1:9/token"
    elif failure == "token endpoint refuses":
        stub.token_status = 401
        stub.echo_secret = SENTINEL  # and quotes what it was sent
    else:
        stub.always_401 = True
    caplog.set_level(logging.DEBUG)
    seen = await run_failing(agency_db, http_agencies, tls_url, settings)
    everything = "\n".join(seen) + caplog.text + "".join(str(r.args) for r in caplog.records)
    assert SENTINEL not in everything
    if failure == "agency 401":
        assert stub.token_fetches >= 2  # a 401 refreshed the token
        assert "answered HTTP 401" in everything


async def test_static_header_and_key_password_never_show(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tls_url: str,
    pki: dict[str, Any],
    stub: Stub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub.always_401 = True
    caplog.set_level(logging.DEBUG)
    settings = {"ca_file": str(pki["ca"].pem), "auth_header": "env:TEST_SENTINEL_HEADER"}
    seen = await run_failing(agency_db, http_agencies, tls_url, settings)
    assert stub.batches[0]["authorization"] == f"Bearer {SENTINEL}"  # sent, never shown
    assert SENTINEL not in "\n".join(seen) + caplog.text


def write_config(tmp_path: Path, dsn: str, urls: dict[str, str], nts: dict[str, Any]) -> Path:
    def table(values: dict[str, Any]) -> str:
        return "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in values.items())

    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""[database]
url = "{dsn}"
[auth]
secret = "{TEST_SECRET}"
[audit]
key = "{TEST_AUDIT_KEY}"
[policy]
file = "{ALLOW_ALL}"
[agencies.registry]
kind = "sql"
dsn = "{dsn}"
[agencies.nhis]
kind = "sql"
dsn = "{dsn}"
[agencies.nps]
kind = "sql"
dsn = "env:TEST_AGENCY_DSN"
password = "env:TEST_SENTINEL_SECRET"
[agencies.mma]
kind = "http"
url = "{urls["mma"]}"
auth_header = "env:TEST_SENTINEL_HEADER"
[agencies.nts]
kind = "http"
{table(nts)}
"""
    )
    return path


def test_check_config_accepts_and_refuses_without_showing_secrets(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    pki: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_AGENCY_DSN", agency_db.dsn)
    url = "https://127.0.0.1:1"
    locked = pki["locked"]
    good = oauth2(url, pki["ca"].pem) | {
        "url": url,
        "client_cert": str(locked.cert),
        "client_key": str(locked.key),
        "client_key_password": "env:TEST_SENTINEL_KEY_PASSWORD",
    }
    path = write_config(tmp_path, agency_db.dsn, http_agencies, good)
    assert cli.main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr()
    assert "ok (5 agencies)" in out.out
    assert SENTINEL not in out.out + out.err

    bad: list[tuple[dict[str, Any], str]] = [
        (good | {"client_key_password": "env:TEST_WRONG_PASSWORD"}, "client_key_password"),
        (good | {"ca_file": str(tmp_path / "missing.pem")}, "missing.pem does not exist"),
        (good | {"url": "http://127.0.0.1:1"}, "needs an https url"),
        (good | {"oauth2_client_secret": SENTINEL}, "must be a reference"),
        (good | {"oauth2_client_secret": "env:TEST_UNSET"}, "TEST_UNSET is not set"),
        ({"url": url, "auth_header": f"file:{tmp_path / 'none'}"}, "cannot read"),
    ]
    monkeypatch.setenv("TEST_WRONG_PASSWORD", SENTINEL + "-wrong")
    for nts, problem in bad:
        path = write_config(tmp_path, agency_db.dsn, http_agencies, nts)
        assert cli.main(["check-config", "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert problem in out.err
        assert "[agencies.nts]" in out.err
        assert SENTINEL not in out.out + out.err


def test_check_config_refuses_sql_tls_settings(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_AGENCY_DSN", agency_db.dsn)
    path = write_config(tmp_path, agency_db.dsn, http_agencies, {"url": http_agencies["nts"]})
    text = path.read_text().replace(
        'password = "env:TEST_SENTINEL_SECRET"',
        'password = "env:TEST_SENTINEL_SECRET"\nsslmode = "maybe"',
    )
    path.write_text(text)
    assert cli.main(["check-config", "--config", str(path)]) == 2
    out = capsys.readouterr()
    assert "[agencies.nps] sslmode must be one of" in out.err
    assert SENTINEL not in out.out + out.err
