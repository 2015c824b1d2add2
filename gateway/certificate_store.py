"""Issued certificates' metadata in the gateway's own database: id, kind, whose (a keyed
hash), the key that signed it, when issued, expiring and revoked. Never the token itself."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from gateway.errors import BadRequest, Forbidden, quote


@dataclass(frozen=True)
class IssuedCertificate:
    id: uuid.UUID
    kind: str
    subject: str
    kid: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None


class CertificateStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, issued: IssuedCertificate) -> None:
        await self.pool.execute(
            "insert into gateway.certificates values ($1, $2, $3, $4, $5, $6, $7)",
            issued.id, issued.kind, issued.subject, issued.kid, issued.issued_at,
            issued.expires_at, issued.revoked_at,
        )  # fmt: skip

    async def revoke(self, subject: str, certificate_id: str) -> IssuedCertificate:
        """Revoke one of ``subject``'s certificates (again: no change). Someone else's
        certificate and no certificate at all look the same: FORBIDDEN."""
        try:
            key = uuid.UUID(certificate_id)
        except ValueError:
            raise BadRequest(f"{quote(certificate_id)} is not a certificate id") from None
        row = await self.pool.fetchrow(
            """update gateway.certificates set revoked_at = coalesce(revoked_at, now())
               where id = $1 and subject = $2 returning *""",
            key,
            subject,
        )
        if row is None:
            raise Forbidden("You have no certificate with that id.")
        return IssuedCertificate(**dict(row))

    async def issued_since(self, subject: str, since: dt.datetime) -> int:
        """How many certificates ``subject`` was issued since ``since``."""
        count: int = await self.pool.fetchval(
            "select count(*) from gateway.certificates where subject = $1 and issued_at >= $2",
            subject,
            since,
        )
        return count

    async def of(self, subject: str) -> list[IssuedCertificate]:
        rows = await self.pool.fetch(
            "select * from gateway.certificates where subject = $1 order by issued_at desc",
            subject,
        )
        return [IssuedCertificate(**dict(r)) for r in rows]

    async def revoked(self) -> list[str]:
        """Ids of revoked certificates that have not expired yet (an expired one is refused
        anyway, so the list stays short)."""
        rows = await self.pool.fetch(
            """select id from gateway.certificates
               where revoked_at is not null and expires_at > now()"""
        )
        return [str(r["id"]) for r in rows]
