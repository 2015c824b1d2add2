"""What citizens ask about themselves: their record, their consents, who looked at them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from gateway.access import settled
from gateway.consent import ConsentRecord
from gateway.context import Context
from gateway.errors import BadRequest, Forbidden
from gateway.policy import SELF
from resolvers.loading import load
from schema.access_log import (
    AccessLogConnection,
    AccessLogEdge,
    AccessLogEntry,
    AccessOutcome,
    PageInfo,
)
from schema.certificate_kind import CertificateKind
from schema.consent import Consent
from schema.enums import Purpose

if TYPE_CHECKING:
    from schema.resident import Resident

Info = strawberry.Info[Context, None]
MAX_PAGE = 100


def own_rrn(info: Info) -> str:
    rrn = info.context.principal.rrn if info.context.principal else None
    if rrn is None:
        raise Forbidden("Only a citizen's token (with an rrn claim) names a record of its own.")
    return rrn


async def me(info: Info) -> Resident | None:
    from schema.resident import Resident

    record = await load(info, "resident", own_rrn(info))
    if record is None:
        return None
    await settled(info.context.access.returned(record.rrn, SELF, info, record))
    return Resident(record=record, view=SELF)


async def my_access_log(
    info: Info,
    first: Annotated[
        int, strawberry.argument(description=f"How many entries (1 to {MAX_PAGE}).")
    ] = 20,
    after: Annotated[
        str | None, strawberry.argument(description="A cursor from a previous page.")
    ] = None,
) -> AccessLogConnection:
    if not 1 <= first <= MAX_PAGE:
        raise BadRequest(f"first must be between 1 and {MAX_PAGE}")
    subject = info.context.keys.subject(own_rrn(info))
    key = info.context.keys.cursor_key
    rows = await info.context.audit.entries_for(subject, first, _decode_cursor(key, subject, after))
    edges = [
        AccessLogEdge(
            cursor=_encode_cursor(key, subject, row["seq"]),
            node=AccessLogEntry(
                at=row["at"],
                agency=row["agency"],
                role=row["roles"],
                purpose=row["purpose"],
                fields=list(row["disclosed"]),
                denied=list(row["denied"]),
                outcome=_outcome(row["disclosed"], row["denied"]),
                **_certificate_of(row["purpose"], row["note"]),
            ),
        )
        for row in rows[:first]
    ]
    return AccessLogConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
    )


async def my_consents(info: Info) -> list[Consent]:
    subject = info.context.keys.subject(own_rrn(info))
    return [_consent(c) for c in await info.context.consents.of(subject)]


async def grant_consent(
    info: Info,
    purpose: Annotated[Purpose, strawberry.argument(description="The purpose it covers.")],
    agency: Annotated[str, strawberry.argument(description="The agency (code) it is for.")],
    days: Annotated[int, strawberry.argument(description="How long it lasts (1 to 365).")] = 30,
) -> Consent:
    subject = info.context.keys.subject(own_rrn(info))
    return _consent(await info.context.consents.grant(subject, purpose.name, agency, days))


async def revoke_consent(
    info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="Its id.")]
) -> Consent:
    subject = info.context.keys.subject(own_rrn(info))
    return _consent(await info.context.consents.revoke(subject, str(id)))


def _consent(c: ConsentRecord) -> Consent:
    import datetime as dt

    return Consent(
        id=strawberry.ID(str(c.id)),
        purpose=Purpose(c.purpose),
        agency=c.agency,
        granted_at=c.granted_at,
        expires_at=c.expires_at,
        revoked_at=c.revoked_at,
        active=c.in_force(dt.datetime.now(dt.UTC)),
    )


def _certificate_of(purpose: str, note: str | None) -> dict[str, Any]:
    """The certificate a CERTIFICATE_* entry names (its note, written by the gateway)."""
    if not purpose.startswith("CERTIFICATE_") or note is None:
        return {}
    try:
        found = json.loads(note)
        return {
            "certificate_id": strawberry.ID(str(found["certificate"])),
            "certificate_kind": CertificateKind[found["kind"]],
        }
    except (ValueError, KeyError, TypeError):
        return {}


def _outcome(disclosed: list[str], denied: list[str]) -> AccessOutcome:
    if not denied:
        return AccessOutcome.GRANTED
    return AccessOutcome.PARTIAL if disclosed else AccessOutcome.DENIED


# Cursors are opaque: the audit sequence number counts every lookup in the system, so it is
# encrypted, and authenticated for this citizen's log (deterministic, SIV-style: the tag is a
# MAC of subject and seq, and keys the pad that encrypts the seq). A client can neither read
# one nor make one up; the same entry always has the same cursor.
_TAG_BYTES = 16


def _cursor_tag(key: bytes, subject: str, seq: int) -> bytes:
    text = f"tag:{subject}:{seq}".encode()
    return hmac.new(key, text, hashlib.sha256).digest()[:_TAG_BYTES]


def _cursor_pad(key: bytes, tag: bytes) -> bytes:
    return hmac.new(key, b"pad:" + tag, hashlib.sha256).digest()[:8]


def _encode_cursor(key: bytes, subject: str, seq: int) -> str:
    tag = _cursor_tag(key, subject, seq)
    sealed = bytes(
        a ^ b for a, b in zip(seq.to_bytes(8, "big"), _cursor_pad(key, tag), strict=True)
    )
    return base64.urlsafe_b64encode(tag + sealed).decode().rstrip("=")


def _decode_cursor(key: bytes, subject: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError:
        raw = b""
    if len(raw) == _TAG_BYTES + 8:
        tag, sealed = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
        plain = bytes(a ^ b for a, b in zip(sealed, _cursor_pad(key, tag), strict=True))
        seq = int.from_bytes(plain, "big")
        if hmac.compare_digest(tag, _cursor_tag(key, subject, seq)):
            return seq
    raise BadRequest("after is not a cursor from this log")
