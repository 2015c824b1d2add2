"""The keys that sign certificates: loaded by reference, published as a JWKS.

``[certificates] keys`` lists references (``"env:NAME"`` or ``"file:PATH"``, resolved as
agency secrets are, see ``adapters.trust.resolve``) to private keys, PEM or JWK JSON, Ed25519
or P-256. The first signs; the others only verify, and stay listed until the certificates
they signed have expired. Private keys never reach the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from adapters.trust import TrustError, resolve
from gateway.config import ConfigError

log = logging.getLogger(__name__)

Key = ECKey | OKPKey
#: The JWS algorithm for each curve (Ed25519: RFC 9864's fully-specified name for EdDSA).
ALGORITHMS = {"Ed25519": "Ed25519", "P-256": "ES256"}


@dataclass(frozen=True)
class SigningKey:
    key: Key
    kid: str
    alg: str

    def public_jwk(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg, "use": "sig"}


class CertificateKeys:
    """The current signing key and the older keys kept for verification."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ConfigError("[certificates] keys lists the same key twice")
        self.keys = tuple(keys)

    @property
    def current(self) -> SigningKey | None:
        return self.keys[0] if self.keys else None

    def jwks(self) -> dict[str, Any]:
        """The public keys, as ``/.well-known/jwks.json`` serves them."""
        return {"keys": [k.public_jwk() for k in self.keys]}

    @classmethod
    def from_references(cls, references: Sequence[str]) -> CertificateKeys:
        keys = []
        for index, reference in enumerate(references):
            where = f"[certificates] keys[{index}]"
            try:
                text = resolve(reference, where)
            except TrustError as exc:
                raise ConfigError(str(exc)) from None
            keys.append(parse_private_key(text, where))
        return cls(keys)


def parse_private_key(text: str, where: str) -> SigningKey:
    """A private Ed25519 or P-256 key from PEM or JWK JSON text."""
    text = text.strip()
    key: Key | None = None
    kid: str | None = None
    try:
        if text.startswith("{"):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JWK object")
            kid = data.get("kid") if isinstance(data.get("kid"), str) else None
            if data.get("kty") == "OKP":
                key = OKPKey.import_key(data)
            elif data.get("kty") == "EC":
                key = ECKey.import_key(data)
        else:
            for kind in (OKPKey, ECKey):
                try:
                    key = kind.import_key(text)
                    break
                except (JoseError, ValueError, TypeError):
                    continue
    except (JoseError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a readable key ({type(exc).__name__})") from None
    if key is None:
        raise ConfigError(f"{where}: not an Ed25519 or P-256 key (PEM or JWK JSON)")
    curve = key.as_dict(private=False).get("crv")
    if curve not in ALGORITHMS:
        raise ConfigError(f"{where}: curve {curve} is not one of {', '.join(ALGORITHMS)}")
    if not key.is_private:
        raise ConfigError(f"{where}: a public key; the gateway needs the private key to sign")
    return SigningKey(key=key, kid=kid or key.thumbprint(), alg=ALGORITHMS[str(curve)])


def generate_key_file(path: Path, curve: str = "Ed25519") -> None:
    """Write a new private key (PEM, mode 0600) unless the file exists."""
    if path.exists():
        return
    key: Key = (
        OKPKey.generate_key("Ed25519", private=True)
        if curve == "Ed25519"
        else ECKey.generate_key("P-256", private=True)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.as_pem(private=True)
    path.touch(mode=0o600)
    path.write_bytes(pem)
    log.info("generated a certificate signing key in %s", path)
