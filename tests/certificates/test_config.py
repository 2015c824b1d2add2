"""[certificates]: keys by reference only, checked at start-up; without keys nothing is
issued (FORBIDDEN) and nothing is published."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import cli
from gateway.app import create_app
from gateway.certificate_keys import generate_key_file
from gateway.config import CertificatesConfig, ConfigError, from_dict
from tests.access.conftest import demo_config, demo_gateway, write_gateway_toml
from tests.certificates.conftest import citizen
from tests.conftest import ScratchDatabase


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"keys": ["-----BEGIN PRIVATE KEY-----"]}, 'references, "env:NAME" or "file:PATH"'),
        ({"keys": "file:/x.pem"}, "list of references"),
        ({"ttl_days": 0}, "ttl_days must be between 1 and 3650"),
        ({"issuer": " "}, "issuer must not be empty"),
        ({"key": ["file:/x.pem"]}, "unknown key key"),
    ],
)
def test_bad_tables_are_refused(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict({"certificates": table})


def test_start_up_refuses_keys_it_cannot_read(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    public = tmp_path / "public.pem"
    generate_key_file(tmp_path / "private.pem")
    from joserfc.jwk import OKPKey

    private = OKPKey.import_key((tmp_path / "private.pem").read_text())
    public.write_bytes(private.as_pem(private=False))
    cases = {
        "env:GW_TEST_NO_SUCH_KEY": "environment variable GW_TEST_NO_SUCH_KEY is not set",
        f"file:{tmp_path / 'missing.pem'}": "cannot read",
        f"file:{public}": "a public key",
    }
    assert "GW_TEST_NO_SUCH_KEY" not in os.environ
    for reference, message in cases.items():
        config = demo_config(
            agency_db, http_agencies, "postgresql://unused@127.0.0.1/none",
            certificates=CertificatesConfig(keys=(reference,)),
        )  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            create_app(config)


def test_a_key_from_the_environment_signs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_key_file(tmp_path / "k.pem", "P-256")
    monkeypatch.setenv("GW_TEST_CERT_KEY", (tmp_path / "k.pem").read_text())
    unused = "postgresql://unused@127.0.0.1/none"  # check-config connects to nothing
    path = write_gateway_toml(
        tmp_path, database_url=unused,
        agencies=dict.fromkeys(("registry", "nhis", "nts", "nps", "mma"), unused),
        extra='[certificates]\nkeys = ["env:GW_TEST_CERT_KEY"]',
    )  # fmt: skip
    # check-config resolves the reference, and names it when it fails.
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert "ok (5 agencies)" in capsys.readouterr().out
    monkeypatch.delenv("GW_TEST_CERT_KEY")
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert "GW_TEST_CERT_KEY is not set" in capsys.readouterr().err


async def test_without_keys_nothing_is_issued_or_published(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], store: ScratchDatabase
) -> None:
    async with demo_gateway(agency_db, http_agencies, store) as gateway:
        body = await citizen(gateway).query(
            "mutation { issueCertificate(kind: TAX_PAYMENT) { id token } }"
        )
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "no signing key" in body["errors"][0]["message"]
        assert (await gateway.http.get("/.well-known/jwks.json")).json() == {"keys": []}
        assert (await gateway.http.get("/.well-known/revocations.jwt")).status_code == 404
