"""Citizens' certificates: issue one about yourself, list yours, revoke one.

The data is read through the request's DataLoaders, as ``me`` reads it (agency timeouts,
breaker, cache and provenance apply), but never stale: a certificate states what the agency
holds now. The issue is written to the audit trail, and committed, before the token leaves.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Annotated, Any

import strawberry

from gateway import certificate_contents as contents
from gateway import certificates as certs
from gateway.agencies import Sourced
from gateway.audit import AuditRecord
from gateway.certificate_store import CertificateStore, IssuedCertificate
from gateway.context import Context
from gateway.errors import AgencyError, BadRequest, Forbidden, RateLimited
from gateway.policy import SELF, SELF_HOUSEHOLD
from resolvers.citizen import own_rrn
from schema.certificate import Certificate
from schema.certificate_kind import CertificateKind

Info = strawberry.Info[Context, None]


async def issue_certificate(
    info: Info,
    kind: Annotated[CertificateKind, strawberry.argument(description="Which certificate.")],
) -> Certificate:
    context = info.context
    rrn = own_rrn(info)
    subject = context.keys.subject(rrn)
    _once_per_request(info)
    _require_grant(info, SELF, contents.FIELDS[kind.name])
    issued = context.certificates.prepare(kind.name, subject)
    day_ago = issued.issued_at - dt.timedelta(days=1)
    if await _store(info).issued_since(subject, day_ago) >= context.certificates.issues_per_day:
        raise RateLimited(3600)
    record = await _read(info, "resident", rrn)
    if record is None:
        raise BadRequest("The registry holds no record for you: there is nothing to certify.")
    body: dict[str, Any] = {"holder": contents.holder(record)}
    others: list[str] = []
    if kind is CertificateKind.RESIDENT_REGISTRATION:
        body |= contents.registration(record)
    elif kind is CertificateKind.HOUSEHOLD_COMPOSITION:
        if record.household_id is None:
            raise BadRequest("You are registered in no household.")
        _require_grant(info, SELF_HOUSEHOLD, contents.MEMBER_FIELDS)
        house = await _read(info, "household", record.household_id)
        if house is None:
            raise BadRequest("The registry holds no record of your household.")
        members = await _read_many(info, "resident", list(house.member_rrns))
        body |= contents.household(record, house, members)
        others = [m.rrn for m in members if m is not None and m.rrn != rrn]
    elif kind is CertificateKind.TAX_PAYMENT:
        body |= contents.tax_payment(await _read(info, "taxes", rrn) or [])
    else:
        body |= contents.health_insurance(await _read(info, "insurance", rrn))
    token = context.certificates.sign(issued, body)
    note = json.dumps({"certificate": str(issued.id), "kind": kind.name}, sort_keys=True)
    # Other members' access logs show what the holder's certificate says about them.
    members_read = [
        _audit(info, certs.ISSUE_PURPOSE, context.keys.subject(m), contents.MEMBER_FIELDS, note)
        for m in others
    ]
    issue = _audit(info, certs.ISSUE_PURPOSE, subject, contents.FIELDS[kind.name], note)
    await context.audit.record([issue, *members_read])
    await _store(info).add(issued)
    return _certificate(issued, token)


async def revoke_certificate(
    info: Info,
    id: Annotated[strawberry.ID, strawberry.argument(description="The certificate's id.")],
) -> Certificate:
    subject = info.context.keys.subject(own_rrn(info))
    _once_per_request(info)
    issued = await _store(info).revoke(subject, str(id))
    info.context.certificates.revoked()
    note = json.dumps({"certificate": str(issued.id), "kind": issued.kind}, sort_keys=True)
    await info.context.audit.record([_audit(info, certs.REVOKE_PURPOSE, subject, (), note)])
    return _certificate(issued)


async def my_certificates(info: Info) -> list[Certificate]:
    subject = info.context.keys.subject(own_rrn(info))
    return [_certificate(c) for c in await _store(info).of(subject)]


def _once_per_request(info: Info) -> None:
    """One certificate issued or revoked per request: aliases cannot multiply them (nor the
    rows a household certificate writes into every member's access log)."""
    done = info.context.certificate_mutations
    if done:
        raise BadRequest("One certificate may be issued or revoked per request.")
    info.context.certificate_mutations = done + 1


def _require_grant(info: Info, view: str, fields: Iterable[str]) -> None:
    principal = info.context.principal
    grant = info.context.access.policy.grant(principal.roles, view)
    missing = sorted(set(fields) - (grant.fields if grant is not None else frozenset()))
    if missing:
        raise Forbidden(
            f"You may not read {', '.join(missing)} under {view}, which this certificate holds."
        )


async def _read(info: Info, dataset: str, key: str) -> Any:
    sourced: Sourced = await info.context.loaders[dataset].load(key)
    if sourced.stale:
        raise AgencyError(
            sourced.agency,
            f"The {sourced.agency} agency cannot answer now, and a certificate is never "
            "issued from stale data.",
        )
    info.context.provenance.note(info.path.as_list(), sourced)
    return sourced.value


async def _read_many(info: Info, dataset: str, keys: list[str]) -> list[Any]:
    """One batch for all keys (a household's members)."""
    found: list[Sourced] = await info.context.loaders[dataset].load_many(keys)
    for sourced in found:
        if sourced.stale:
            raise AgencyError(
                sourced.agency,
                f"The {sourced.agency} agency cannot answer now, and a certificate is never "
                "issued from stale data.",
            )
    path = info.path.as_list()
    for index, sourced in enumerate(found):
        info.context.provenance.note([*path, index], sourced)
    return [sourced.value for sourced in found]


def _store(info: Info) -> CertificateStore:
    store = info.context.certificates.store
    if store is None or not info.context.certificates.enabled:
        raise Forbidden(
            "This gateway issues no certificates: it has no signing key ([certificates] keys)."
        )
    return store


def _audit(
    info: Info, purpose: str, subject: str, disclosed: Iterable[str], note: str
) -> AuditRecord:
    principal = info.context.principal
    return AuditRecord(
        at=dt.datetime.now(dt.UTC),
        request_id=info.context.request_id,
        principal=principal.sub,
        roles=",".join(principal.roles),
        agency=principal.agency,
        purpose=purpose,
        subject=subject,
        disclosed=tuple(sorted(disclosed)),
        denied=(),
        note=note,
    )


def _certificate(issued: IssuedCertificate, token: str | None = None) -> Certificate:
    return Certificate(
        id=strawberry.ID(str(issued.id)),
        kind=CertificateKind[issued.kind],
        issued_at=issued.issued_at,
        expires_at=issued.expires_at,
        revoked_at=issued.revoked_at,
        token=token,
    )
