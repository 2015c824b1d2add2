"""Authentication: a bearer JWT, HS256 with a shared secret (development) or RS256/ES256
against a JWKS URL (production). ``iss``, ``aud`` and ``exp`` are always checked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from gateway import rrn as rrns
from gateway.config import AuthConfig, ConfigError
from gateway.errors import Unauthenticated
from gateway.principal import MAX_AGENCY, Principal, is_agency_code

HS_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["RS256", "ES256"]
JWKS_MIN_REFRESH_S = 30.0
DEFAULT_TTL_S = 3600
#: Verified tokens remembered (by SHA-256 of the token) until they expire; the oldest go first.
VERIFIED_MAX = 10_000


class Authenticator:
    def __init__(self, config: AuthConfig, client: httpx.AsyncClient | None = None) -> None:
        if not config.secret and not config.jwks_url:
            raise ConfigError("[auth] needs secret (development) or jwks_url (production)")
        self.config = config
        self._secret = OctKey.import_key(config.secret) if config.secret else None
        self._client = client
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._refresh = asyncio.Lock()
        #: sha256(token) -> (principal, exp): tokens that verified, answered without verifying
        #: again until ``exp`` (strictly: the leeway is for tokens checked afresh). Failures
        #: are never kept, and a new key set (JWKS refresh) forgets them all.
        self._verified: dict[bytes, tuple[Principal, float]] = {}
        self._claims = jwt.JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("Send Authorization: Bearer <token>.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("The Authorization header must be: Bearer <token>.")
        token = token.strip()
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[digest]
        claims = await self._verify(token)
        principal = principal_from_claims(claims)
        self._remember(digest, principal, claims.get("exp"))
        return principal

    def _remember(self, digest: bytes, principal: Principal, exp: Any) -> None:
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            return
        verified = self._verified
        while len(verified) >= VERIFIED_MAX:
            del verified[next(iter(verified))]
        verified[digest] = (principal, float(exp))

    async def _verify(self, token: str) -> dict[str, Any]:
        try:
            if self._secret is not None:
                decoded = jwt.decode(token, self._secret, algorithms=HS_ALGORITHMS)
            else:
                keys = await self._key_set(_kid(token))
                decoded = jwt.decode(token, keys, algorithms=JWKS_ALGORITHMS)
            self._claims.validate(decoded.claims)
        except RecursionError:  # a JSON header or payload nested beyond reason
            raise Unauthenticated("The token was refused: it is not a well-formed JWT.") from None
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(f"The token was refused: {_reason(exc)}.") from None
        return dict(decoded.claims)

    async def _key_set(self, kid: str | None) -> KeySet:
        """The JWKS, fetched once and again when a token names a key id we do not have."""
        known = self._keys is not None and (kid is None or _has_kid(self._keys, kid))
        if known:
            assert self._keys is not None
            return self._keys
        async with self._refresh:
            stale = time.monotonic() - self._fetched_at >= JWKS_MIN_REFRESH_S
            if self._keys is None or (stale and not _has_kid(self._keys, kid or "")):
                self._keys = await self._fetch_keys()
                self._fetched_at = time.monotonic()
                self._verified.clear()  # a key may have been withdrawn
        return self._keys

    async def _fetch_keys(self) -> KeySet:
        client = self._client or httpx.AsyncClient(timeout=5)
        try:
            response = await client.get(self.config.jwks_url)
            response.raise_for_status()
            return KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise Unauthenticated("The signing keys could not be fetched; try again.") from exc
        finally:
            if self._client is None:
                await client.aclose()


#: Bounds on the claims that name the principal: they reach the audit trail, logs and
#: error messages, so they must be short printable text.
MAX_SUB = 128
MAX_ROLE = 64
MAX_ROLES = 16


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthenticated("The token's roles claim must be a list of role names.")
    if len(roles) > MAX_ROLES:
        raise Unauthenticated(f"The token's roles claim names more than {MAX_ROLES} roles.")
    for role in roles:
        _printable("roles", role, MAX_ROLE)
    sub = claims["sub"]
    if not isinstance(sub, str):
        raise Unauthenticated("The token's sub claim must be a string.")
    _printable("sub", sub, MAX_SUB)
    own = claims.get("rrn")
    if own is not None:
        try:
            own = rrns.parse(str(own)).value
        except rrns.InvalidRRN:
            raise Unauthenticated("The token's rrn claim is not a valid RRN.") from None
    agency = claims.get("agency")
    if agency is not None:
        if not isinstance(agency, str):
            raise Unauthenticated("The token's agency claim must be a string.")
        _printable("agency", agency, MAX_AGENCY)
        if not is_agency_code(agency):
            raise Unauthenticated(
                "The token's agency claim must be an agency code "
                "(lower-case letters, digits, - and _, starting with a letter)."
            )
    return Principal(sub=sub, roles=tuple(roles), agency=agency, rrn=own)


def _printable(claim: str, value: str, limit: int) -> None:
    """Refuse empty, over-long or unprintable claim values (never echoing them)."""
    if not value:
        raise Unauthenticated(f"The token's {claim} claim holds an empty value.")
    if len(value) > limit:
        raise Unauthenticated(f"The token's {claim} claim is over {limit} characters.")
    if not value.isprintable():
        raise Unauthenticated(f"The token's {claim} claim holds control characters.")


def issue_token(
    config: AuthConfig,
    *,
    sub: str,
    roles: list[str],
    agency: str | None = None,
    rrn: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
) -> str:
    """A development token signed with the configured HS256 secret."""
    if not config.secret:
        raise ConfigError("[auth] secret is needed to issue development tokens")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": roles,
        "iss": config.issuer,
        "aud": config.audience,
        "iat": now,
        "exp": now + ttl_s,
    }
    if agency:
        claims["agency"] = agency
    if rrn:
        claims["rrn"] = rrns.parse(rrn).value
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(config.secret))


def _kid(token: str) -> str | None:
    import base64

    try:
        header_b64 = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    except (ValueError, IndexError, RecursionError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def _has_kid(keys: KeySet, kid: str) -> bool:
    try:
        keys.get_by_kid(kid)
    except (KeyError, ValueError, JoseError):
        return False
    return True


def _reason(exc: Exception) -> str:
    name = type(exc).__name__
    return {
        "ExpiredTokenError": "it has expired",
        "BadSignatureError": "its signature does not verify",
        "InvalidClaimError": f"a claim does not match ({exc})",
        "MissingClaimError": f"a claim is missing ({exc})",
        "DecodeError": "it is not a well-formed JWT",
    }.get(name, str(exc) or name)
