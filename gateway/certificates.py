"""Signed certificates: what each kind holds, signing, and verification anyone can repeat.

A certificate is a compact JWS (header ``typ`` ``rg-certificate+jwt``, ``alg`` Ed25519 or
ES256, ``kid`` naming a key of ``/.well-known/jwks.json``) over JSON claims: ``iss``, ``jti``
(its id), ``iat``, ``exp``, ``kind`` and the fields that kind needs, nothing more (see
``gateway.certificate_contents``). The revocation list is a JWS of its own (``typ``
``rg-revocations+jwt``) listing revoked ids that have not expired yet, with its own ``iat``.

``verify`` is what ``gateway certificate verify`` runs; the /verify page repeats it in the
browser (gateway/static/verify.js) with the same rules.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.certificate_keys import CertificateKeys, SigningKey
from gateway.certificate_store import CertificateStore, IssuedCertificate
from gateway.errors import Forbidden

CERTIFICATE_TYP = "rg-certificate+jwt"
REVOCATIONS_TYP = "rg-revocations+jwt"
KINDS = ("RESIDENT_REGISTRATION", "HOUSEHOLD_COMPOSITION", "TAX_PAYMENT", "HEALTH_INSURANCE")
#: Clock difference tolerated between issuer and verifier (an iat this far ahead is fine).
LEEWAY_S = 300
#: Audit purposes of the chain rows written when a certificate is issued or revoked.
#: The signed revocation list is rebuilt at most this often (it is open to anyone).
REVOCATIONS_TTL_S = 5.0
ISSUE_PURPOSE = "CERTIFICATE_ISSUE"
REVOKE_PURPOSE = "CERTIFICATE_REVOKE"

# Signing --------------------------------------------------------------------------------


def sign(key: SigningKey, claims: Mapping[str, Any], typ: str = CERTIFICATE_TYP) -> str:
    header = {"alg": key.alg, "kid": key.kid, "typ": typ}
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()
    return jws.serialize_compact(header, payload, key.key, algorithms=[key.alg])


def certificate_claims(
    *, issuer: str, certificate_id: str, kind: str, issued_at: dt.datetime,
    expires_at: dt.datetime, body: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    return {
        "iss": issuer,
        "jti": certificate_id,
        "kind": kind,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
        **body,
    }


def revocation_list(key: SigningKey, issuer: str, revoked: Iterable[str]) -> str:
    claims = {"iss": issuer, "iat": int(time.time()), "revoked": sorted(revoked)}
    return sign(key, claims, REVOCATIONS_TYP)


# Verification ---------------------------------------------------------------------------


class Outcome(enum.Enum):
    GENUINE = "genuine"
    EXPIRED = "expired"
    REVOKED = "revoked"
    INVALID = "invalid"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    claims: dict[str, Any] | None = None
    header: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Revocations:
    issuer: str
    issued_at: int
    revoked: frozenset[str]


class VerificationError(ValueError):
    """A token that is not a genuine, well-formed JWS of ours (the message says why)."""


def _b64(segment: str) -> bytes:
    """Strict base64url: the canonical encoding only (no padding, no stray bits), so two
    different texts never carry the same bytes."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError("it is not base64url text") from None
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != segment:
        raise VerificationError("it is not in canonical base64url")
    return raw


def open_jws(token: str, jwks: Mapping[str, Any], typ: str) -> tuple[dict[str, Any], Any]:
    """The header and the JSON payload of a JWS signed by a key of ``jwks``."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise VerificationError("it is not a compact JWS (three dot-separated parts)")
    try:
        header = json.loads(_b64(parts[0]))
        payload = _b64(parts[1])
        _b64(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"its header is unreadable ({exc})") from None
    if not isinstance(header, dict):
        raise VerificationError("its header is not a JSON object")
    if header.get("typ") != typ:
        raise VerificationError(f"it is not a {typ} (typ {header.get('typ')!r})")
    kid, alg = header.get("kid"), header.get("alg")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not isinstance(kid, str) or not keys:
        raise VerificationError(f"no published key has its kid {kid!r}")
    if alg not in ("Ed25519", "ES256") or keys[0].get("alg", alg) != alg:
        raise VerificationError(f"its algorithm {alg!r} is not the key's")
    try:
        key_set = KeySet.import_key_set({"keys": keys[:1]})
        jws.deserialize_compact(token.strip(), key_set, algorithms=[alg])
    except (JoseError, ValueError) as exc:
        raise VerificationError(f"its signature does not match ({type(exc).__name__})") from None
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise VerificationError("its payload is not JSON") from None
    if not isinstance(claims, dict):
        raise VerificationError("its payload is not a JSON object")
    return header, claims


def read_revocations(token: str, jwks: Mapping[str, Any]) -> Revocations:
    _, claims = open_jws(token, jwks, REVOCATIONS_TYP)
    revoked, iat, iss = claims.get("revoked"), claims.get("iat"), claims.get("iss")
    if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
        raise VerificationError("the revocation list holds no list of ids")
    if not isinstance(iat, int) or not isinstance(iss, str):
        raise VerificationError("the revocation list has no iat or iss")
    return Revocations(iss, iat, frozenset(revoked))


def verify(
    token: str,
    jwks: Mapping[str, Any],
    revocations: Revocations | None = None,
    now: float | None = None,
) -> Verdict:
    """Genuine, expired, revoked or invalid, and why; the claims when the signature holds."""
    try:
        header, claims = open_jws(token, jwks, CERTIFICATE_TYP)
    except VerificationError as exc:
        return Verdict(Outcome.INVALID, f"Not a genuine certificate: {exc}.")
    now = time.time() if now is None else now
    iat, exp = claims.get("iat"), claims.get("exp")
    if (
        not isinstance(iat, int) or not isinstance(exp, int)
        or not isinstance(claims.get("jti"), str) or not isinstance(claims.get("iss"), str)
        or claims.get("kind") not in KINDS
    ):  # fmt: skip
        return Verdict(Outcome.INVALID, "Signed, but not a certificate (claims missing).")
    if iat > now + LEEWAY_S:
        return Verdict(Outcome.INVALID, "Signed, but issued in the future.", claims, header)
    if revocations is not None and revocations.issuer != claims["iss"]:
        return Verdict(
            Outcome.INVALID, "The revocation list is another issuer's.", claims, header
        )
    if exp <= now:
        when = dt.datetime.fromtimestamp(exp, dt.UTC).isoformat()
        return Verdict(Outcome.EXPIRED, f"Genuine, but it expired at {when}.", claims, header)
    if revocations is not None and claims["jti"] in revocations.revoked:
        return Verdict(Outcome.REVOKED, "Genuine, but its holder revoked it.", claims, header)
    checked = "" if revocations is not None else " (revocations not checked)"
    return Verdict(Outcome.GENUINE, f"Genuine{checked}.", claims, header)


# The issuing service --------------------------------------------------------------------


class Certificates:
    """What a running gateway issues with: its keys, issuer, lifetime and metadata store."""

    def __init__(
        self, keys: CertificateKeys, issuer: str, ttl_days: int, issues_per_day: int = 10
    ) -> None:
        self.keys = keys
        #: Certificates one citizen may be issued in 24 hours: each may later be revoked and
        #: then sits in the public revocation list until it expires, so this bounds what one
        #: citizen can add to it.
        self.issues_per_day = issues_per_day
        self.issuer = issuer
        self.ttl = dt.timedelta(days=ttl_days)
        self.store: CertificateStore | None = None  # opened in the app's lifespan
        self._revocations: tuple[float, str] | None = None  # (built at, signed list)

    @property
    def enabled(self) -> bool:
        return self.keys.current is not None

    def prepare(self, kind: str, subject: str) -> IssuedCertificate:
        """The metadata of a certificate about to be issued (not stored yet)."""
        key = self.keys.current
        if key is None:
            raise Forbidden(
                "This gateway issues no certificates: it has no signing key "
                "([certificates] keys)."
            )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return IssuedCertificate(
            id=uuid.uuid4(), kind=kind, subject=subject, kid=key.kid, issued_at=now,
            expires_at=now + self.ttl, revoked_at=None,
        )  # fmt: skip

    def sign(self, issued: IssuedCertificate, body: Mapping[str, Any]) -> str:
        key = self.keys.current
        assert key is not None
        assert key.kid == issued.kid
        claims = certificate_claims(
            issuer=self.issuer, certificate_id=str(issued.id), kind=issued.kind,
            issued_at=issued.issued_at, expires_at=issued.expires_at, body=body,
        )  # fmt: skip
        return sign(key, claims)

    async def revocation_list(self) -> str | None:
        """The signed list, rebuilt at most every REVOCATIONS_TTL_S (it is open to anyone:
        a flood of requests signs once a few seconds, not once each); a revocation through
        this process rebuilds it at once, other replicas' within that time."""
        key = self.keys.current
        if key is None or self.store is None:
            return None
        now = time.monotonic()
        if self._revocations is None or now - self._revocations[0] >= REVOCATIONS_TTL_S:
            listed = revocation_list(key, self.issuer, await self.store.revoked())
            self._revocations = (now, listed)
        return self._revocations[1]

    def revoked(self) -> None:
        """A certificate was revoked here: the next list is rebuilt."""
        self._revocations = None
