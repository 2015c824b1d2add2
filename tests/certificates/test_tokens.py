"""Certificates as a verifier sees them: any changed byte, an expired or revoked certificate,
or a key that is not published is refused; rotated keys keep older certificates valid; a
standard JOSE library (jwcrypto) verifies them with the published JWKS alone; the command
line verifies offline."""

from __future__ import annotations

import base64
import datetime as dt
import json
import string
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from gateway import cli
from gateway.certificate_keys import CertificateKeys, SigningKey
from gateway.certificates import (
    Outcome,
    Revocations,
    certificate_claims,
    read_revocations,
    revocation_list,
    sign,
    verify,
)

ALPHABET = string.ascii_letters + string.digits + "-_"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
BODY = {
    "holder": {"name": "Kim Min-jun", "birthDate": "1994-08-12", "rrn": "940812-1******"},
    "insurance": {"enrolled": True, "insuredType": "EMPLOYEE", "enrolledOn": "2018-01-01"},
}


def make(key: SigningKey, *, issued: dt.datetime = NOW, days: int = 90, jti: str = "c-1") -> str:
    claims = certificate_claims(
        issuer="gw-test", certificate_id=jti, kind="HEALTH_INSURANCE", issued_at=issued,
        expires_at=issued + dt.timedelta(days=days), body=BODY,
    )  # fmt: skip
    return sign(key, claims)


def test_every_changed_byte_is_refused(signing_keys: CertificateKeys) -> None:
    jwks = signing_keys.jwks()
    for key in signing_keys.keys:  # Ed25519 and ES256
        token = make(key)
        assert verify(token, jwks).outcome is Outcome.GENUINE
        changed = 0
        for index, char in enumerate(token):
            candidates = {chr(ord(char) ^ 0x01), chr(ord(char) ^ 0x20)}
            if char in ALPHABET:
                # The next character of the alphabet: for the last character of a part,
                # possibly a change in its unused bits only (refused: not canonical).
                candidates.add(ALPHABET[(ALPHABET.index(char) + 1) % len(ALPHABET)])
            for other in candidates - {char}:
                tampered = token[:index] + other + token[index + 1 :]
                verdict = verify(tampered, jwks)
                assert verdict.outcome is Outcome.INVALID, (index, other, verdict.reason)
                assert verdict.claims is None
                changed += 1
        assert changed >= 2 * len(token)


def test_expired_is_refused(signing_keys: CertificateKeys) -> None:
    key = signing_keys.keys[0]
    expired = make(key, issued=NOW - dt.timedelta(days=91), days=90)
    verdict = verify(expired, signing_keys.jwks())
    assert verdict.outcome is Outcome.EXPIRED
    assert verdict.claims is not None  # genuine, so its contents are shown
    future = make(key, issued=NOW + dt.timedelta(hours=2))
    assert verify(future, signing_keys.jwks()).outcome is Outcome.INVALID


def test_revoked_is_refused_and_the_list_must_be_genuine(signing_keys: CertificateKeys) -> None:
    key, jwks = signing_keys.keys[0], signing_keys.jwks()
    token = make(key, jti="c-revoked")
    listed = read_revocations(revocation_list(key, "gw-test", ["c-revoked"]), jwks)
    assert verify(token, jwks, listed).outcome is Outcome.REVOKED
    assert verify(make(key, jti="c-kept"), jwks, listed).outcome is Outcome.GENUINE
    other = Revocations("someone-else", listed.issued_at, listed.revoked)
    assert verify(make(key, jti="c-kept"), jwks, other).outcome is Outcome.INVALID
    # A certificate is not a revocation list, nor the other way round.
    with pytest.raises(ValueError, match="rg-revocations"):
        read_revocations(token, jwks)
    assert verify(revocation_list(key, "gw-test", []), jwks).outcome is Outcome.INVALID


def test_rotation_keeps_older_certificates_verifiable(
    signing_keys: CertificateKeys, key_files: tuple[Path, Path]
) -> None:
    current, older = key_files
    # Yesterday the P-256 key signed; today the Ed25519 key signs and the old one is kept.
    before = CertificateKeys.from_references([f"file:{older}"])
    old_token = make(before.keys[0], issued=NOW - dt.timedelta(days=1))
    after = CertificateKeys.from_references([f"file:{current}", f"file:{older}"])
    assert after.current is not None
    assert after.current.alg == "Ed25519"
    assert verify(old_token, after.jwks()).outcome is Outcome.GENUINE
    assert verify(make(after.current), after.jwks()).outcome is Outcome.GENUINE
    # Once the old key is dropped from the list, what it signed no longer verifies.
    dropped = CertificateKeys.from_references([f"file:{current}"])
    verdict = verify(old_token, dropped.jwks())
    assert verdict.outcome is Outcome.INVALID
    assert "kid" in verdict.reason


def test_a_standard_jose_library_verifies_with_the_published_jwks_alone(
    signing_keys: CertificateKeys,
) -> None:
    published = json.loads(json.dumps(signing_keys.jwks()))  # as fetched: JSON only
    key_set = jc_jwk.JWKSet.from_json(json.dumps(published))
    for key in signing_keys.keys:
        token = make(key)
        kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
        verifier = jc_jws.JWS()
        verifier.deserialize(token)
        verifier.verify(key_set.get_key(kid), alg=key.alg)
        assert json.loads(verifier.payload)["insurance"]["insuredType"] == "EMPLOYEE"
        tampered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        broken = jc_jws.JWS()
        broken.deserialize(tampered)
        with pytest.raises(jc_jws.InvalidJWSSignature):
            broken.verify(key_set.get_key(kid), alg=key.alg)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().out


def test_command_line_verifies_offline(
    signing_keys: CertificateKeys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signing_keys.keys[0]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(signing_keys.jwks()))
    revocations = tmp_path / "revocations.jwt"
    revocations.write_text(revocation_list(key, "gw-test", ["c-revoked"]))
    files: dict[str, Any] = {
        "genuine": make(key),
        "expired": make(key, issued=NOW - dt.timedelta(days=100)),
        "revoked": make(key, jti="c-revoked"),
        "invalid": make(key)[:-2] + "AA",
    }
    for outcome, token in files.items():
        path = tmp_path / f"{outcome}.jwt"
        path.write_text(token + "\n")
        code, out = run_cli(
            ["certificate", "verify", str(path), "--jwks", str(jwks),
             "--revocations", str(revocations)], capsys,
        )  # fmt: skip
        assert out.startswith(f"{outcome}: "), out
        assert code == (0 if outcome == "genuine" else 1)
        if outcome != "invalid":
            assert '"insuredType": "EMPLOYEE"' in out
    code, out = run_cli(["certificate", "verify", str(tmp_path / "genuine.jwt"), "--jwks",
                         str(jwks)], capsys)  # fmt: skip
    assert (code, out.splitlines()[0]) == (0, "genuine: Genuine (revocations not checked).")
    assert cli.main(["certificate", "verify", str(tmp_path / "missing.jwt"), "--jwks",
                     str(jwks)]) == 2  # fmt: skip
