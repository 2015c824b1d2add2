"""Residents' consents: which agency may read which agency data of theirs, for what, until when."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from gateway.errors import BadRequest, Forbidden, quote

MAX_DAYS = 365


@dataclass(frozen=True)
class ConsentRecord:
    id: uuid.UUID
    subject: str
    purpose: str
    agency: str
    granted_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None

    def in_force(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def covers(self, purpose: str, agency: str | None, now: dt.datetime) -> bool:
        return self.purpose == purpose and self.agency == agency and self.in_force(now)


class Consents:
    def __init__(self, pool: asyncpg.Pool, agencies: frozenset[str]) -> None:
        self.pool = pool
        #: The agencies a resident may consent to (the policy's, see Policy.consent_agencies).
        self.agencies = agencies

    async def grant(self, subject: str, purpose: str, agency: str, days: int) -> ConsentRecord:
        if not 1 <= days <= MAX_DAYS:
            raise BadRequest(f"days must be between 1 and {MAX_DAYS}; got {days}")
        agency = agency.strip()
        if not agency:
            raise BadRequest("Name the agency the consent is for.")
        if not agency.isprintable():
            raise BadRequest("The agency code holds control characters.")
        if agency not in self.agencies:
            known = ", ".join(sorted(self.agencies)) or "none"
            raise BadRequest(
                f"{quote(agency)} is not an agency that may hold consent (known: {known})."
            )
        now = dt.datetime.now(dt.UTC)
        row = await self.pool.fetchrow(
            """insert into gateway.consents values ($1, $2, $3, $4, $5, $6, null)
               returning *""",
            uuid.uuid4(), subject, purpose, agency, now, now + dt.timedelta(days=days),
        )  # fmt: skip
        assert row is not None
        return ConsentRecord(**dict(row))

    async def revoke(self, subject: str, consent_id: str) -> ConsentRecord:
        try:
            key = uuid.UUID(consent_id)
        except ValueError:
            raise BadRequest(f"{quote(consent_id)} is not a consent id") from None
        row = await self.pool.fetchrow(
            """update gateway.consents set revoked_at = coalesce(revoked_at, now())
               where id = $1 and subject = $2 returning *""",
            key,
            subject,
        )
        if row is None:
            # Someone else's consent and no consent at all look the same from outside.
            raise Forbidden("You have no consent with that id.")
        return ConsentRecord(**dict(row))

    async def of(self, subject: str) -> list[ConsentRecord]:
        rows = await self.pool.fetch(
            "select * from gateway.consents where subject = $1 order by granted_at desc", subject
        )
        return [ConsentRecord(**dict(r)) for r in rows]

    async def for_subjects(self, subjects: Sequence[str]) -> list[list[ConsentRecord]]:
        """Consents in force, per subject, in order (a DataLoader batch function)."""
        rows = await self.pool.fetch(
            """select * from gateway.consents
               where subject = any($1::text[]) and revoked_at is null and expires_at > now()""",
            list(subjects),
        )
        found: dict[str, list[ConsentRecord]] = {s: [] for s in subjects}
        for row in rows:
            found[row["subject"]].append(ConsentRecord(**dict(row)))
        return [found[s] for s in subjects]
