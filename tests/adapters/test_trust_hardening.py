"""What a hostile token endpoint or a careless config cannot do: choose what the log redactor
blanks (a token "Bearer failed" blanked the word "failed" everywhere), have a 2-character
token accepted, or have credentials in an agency URL shown by check-config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters import trust
from adapters.base import AgencyFailure
from adapters.http import HTTPAdapter
from adapters.records import DATASETS
from adapters.trust import OAuth2ClientCredentials, TrustError, check_agency, redact, remember
from gateway.cli import main
from gateway.logs import scrub
from gateway.runtime import DEMO_POLICY

CLIENT_SECRET = "cl13nt-s3cret-value"
PASSWORD = "S3cretPassw0rd"


@pytest.fixture(autouse=True)
def _secrets_as_they_were() -> Iterator[None]:
    saved = set(trust._known_secrets)
    yield
    trust._known_secrets.clear()
    trust._known_secrets.update(saved)


def token_endpoint(access_token: Any) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": access_token, "expires_in": 3600})

    return httpx.MockTransport(answer)


def credentials(access_token: Any) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(
        "vehicle",
        "https://idp.example/token",
        "gw",
        CLIENT_SECRET,
        transport=token_endpoint(access_token),
    )


@pytest.mark.parametrize(
    ("access_token", "problem"),
    [
        ("Bearer failed", "spaces, control or non-ASCII characters"),
        ("abcdefghij\nklmnopqrstu", "spaces, control or non-ASCII characters"),
        ("abcdefghijklmnopqrstu\n", "spaces, control or non-ASCII characters"),
        ("tok\x00en-0123456789abcdef", "spaces, control or non-ASCII characters"),
        ("t\u00f6ken-0123456789abcdef", "spaces, control or non-ASCII characters"),
        ("ab", "shorter than 16 characters"),
        ("0123456789abcde", "shorter than 16 characters"),
    ],
)
async def test_an_unusable_token_is_refused_and_blanks_nothing(
    access_token: str, problem: str
) -> None:
    auth = credentials(access_token)
    with pytest.raises(AgencyFailure) as failure:
        await auth.token()
    message = str(failure.value)
    assert message.startswith("vehicle: its token endpoint answered an access_token")
    assert problem in message
    assert access_token not in message
    line = "agency nts failed a taxes batch: nts: ReadTimeout; audit write failed"
    assert scrub(line) == line  # "failed", "ab", "Bearer" ... all still there
    await auth.aclose()


async def test_a_good_token_is_blanked_whole_and_only_whole() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.payload-part.signature-part"
    auth = credentials(token)
    assert await auth.token() == token
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer [secret]"
    assert redact("payload-part and signature-part") == "payload-part and signature-part"
    await auth.aclose()


def test_only_whole_secrets_of_8_characters_or_more_are_remembered() -> None:
    remember("Bearer failed")  # whole: "failed" alone is not a secret
    remember("short")
    assert redact("it failed: short") == "it failed: short"
    assert redact("Bearer failed") == "[secret]"


async def test_a_refused_token_makes_the_agency_fail_naming_it() -> None:
    settings = {
        "url": "https://nts.example",
        "oauth2_token_url": "https://idp.example/token",
        "oauth2_client_id": "gw",
        "oauth2_client_secret": "env:TEST_HARDENING_SECRET",
    }
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TEST_HARDENING_SECRET", CLIENT_SECRET)
        agency = HTTPAdapter("nts", settings, transport=token_endpoint("Bearer failed"))
        async with agency:
            with pytest.raises(AgencyFailure, match=r"^nts: its token endpoint answered an"):
                await agency.fetch(DATASETS["taxes"], ["900101-1234567"])


@pytest.mark.parametrize("key", ["url", "oauth2_token_url"])
def test_credentials_in_an_agency_url_are_refused_without_echo(key: str) -> None:
    settings = {
        "url": "https://nts.example",
        "oauth2_token_url": "https://idp.example/token",
        "oauth2_client_id": "gw",
        "oauth2_client_secret": "env:UNSET_ON_PURPOSE",
        key: f"https://gw:{PASSWORD}@host.example/x",
    }
    with pytest.raises(TrustError) as refused:
        check_agency("http", "nts", settings)
    assert str(refused.value).startswith(f"[agencies.nts] {key} must not carry credentials")
    assert PASSWORD not in str(refused.value)


USERINFO = """
[database]
url = "postgresql://postgres@127.0.0.1/gw"
[auth]
secret = "a-development-secret-of-forty-characters!"
[audit]
key = "an-audit-key-of-at-least-thirty-two-characters"
[policy]
file = "POLICY"
[agencies.vehicle]
kind = "KIND"
url = "http://gw:PASSWORD@127.0.0.1:1/graphql"
"""


@pytest.mark.parametrize("kind", ["graphql", "http"])
def test_check_config_refuses_credentials_in_a_url_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "gateway.toml"
    text = USERINFO.replace("POLICY", str(DEMO_POLICY)).replace("PASSWORD", PASSWORD)
    path.write_text(text.replace("KIND", kind))
    assert main(["check-config", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    # One line for it (check-config reports every problem at once, one line each).
    assert (
        "gateway: configuration error: [agencies.vehicle] url must not carry credentials "
        "(user:password@host): give them by reference (auth_header or oauth2_*)"
    ) in err.strip().splitlines()


@pytest.mark.parametrize("value", [0, -1, "16MiB", True])
def test_max_response_bytes_must_be_a_positive_integer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: Any
) -> None:
    path = tmp_path / "gateway.toml"
    text = USERINFO.replace("POLICY", str(DEMO_POLICY)).replace("gw:PASSWORD@", "")
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
    path.write_text(text.replace("KIND", "http") + f"max_response_bytes = {shown}\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert "[agencies.vehicle]: max_response_bytes must be a positive integer" in (
        capsys.readouterr().err
    )
