"""Certificate: a signed statement about a citizen that anyone can check without calling us."""

from __future__ import annotations

import datetime as dt

import strawberry

from schema.certificate_kind import CertificateKind


@strawberry.type(
    description=(
        "A certificate the gateway signed for a citizen, about themselves. Verify it at "
        "/verify, or offline with the keys of /.well-known/jwks.json."
    )
)
class Certificate:
    id: strawberry.ID = strawberry.field(
        description="Its id (the token's jti); use it to revoke the certificate."
    )
    kind: CertificateKind = strawberry.field(description="Which certificate it is.")
    issued_at: dt.datetime = strawberry.field(description="When it was issued.")
    expires_at: dt.datetime = strawberry.field(description="When it stops being valid.")
    revoked_at: dt.datetime | None = strawberry.field(
        description="When its holder revoked it, if they did."
    )
    token: str | None = strawberry.field(
        description=(
            "The certificate itself, a compact JWS (Ed25519 or ES256). Given only by "
            "issueCertificate: the gateway keeps no copy, so keep it."
        )
    )
