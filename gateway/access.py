"""Field-level authorization, decided per request and per field, and what it disclosed.

``Authorize`` runs before every field's resolver. Root fields need the operation in one of
the caller's roles; fields of resident data types need the coordinate granted for the view
the lookup declared (its purpose), and resident consent where the policy asks for it. A denied
field raises before its resolver runs, so its agency is never called.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphql import GraphQLResolveInfo
from graphql.pyutils import Path
from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension

from gateway.audit import AuditKeys, AuditRecord
from gateway.consent import ConsentRecord
from gateway.errors import ConsentRequired, Forbidden, QueryTooComplex
from gateway.policy import SELF, SERVICE_TYPES, Grant, Policy
from gateway.principal import Principal
from gateway.rrn import InvalidRRN, mask, parse

ROOT_TYPES = frozenset({"Query", "Mutation"})
Info = GraphQLResolveInfo[Any]


class Located(Protocol):
    """Where in the response a field is: graphql-core's and strawberry's info both are."""

    @property
    def field_name(self) -> str: ...

    @property
    def path(self) -> Path: ...


@dataclass
class Disclosure:
    """What one request read, or was refused, of one resident under one view."""

    disclosed: set[str] = field(default_factory=set)
    denied: set[str] = field(default_factory=set)


class Access:
    """One request's decisions. Holds no data across requests: decisions are never cached."""

    def __init__(
        self,
        principal: Principal,
        policy: Policy,
        keys: AuditKeys,
        consents: DataLoader[str, list[ConsentRecord]],
        max_lookups: int = 100,
    ) -> None:
        self.principal = principal
        self.policy = policy
        self.keys = keys
        self.consents = consents
        self.disclosures: dict[tuple[str, str], Disclosure] = {}
        self.root_keys: set[str] = set()  # response keys that carried resident data
        self.audit_failed = False
        self.max_lookups = max_lookups
        self.lookups = 0  # residents named by root fields so far in this request
        self.purposes: set[str] = set()  # views declared in this request (the request log)

    # Root operations -------------------------------------------------------------------

    def require_operation(self, coordinate: str, info: Located, kwargs: dict[str, Any]) -> None:
        if not self.policy.allows_operation(self.principal.roles, coordinate):
            self._count_lookups(_named(kwargs))
            self._refused_lookup(coordinate, info, kwargs)
            roles = ", ".join(self.principal.roles) or "no role"
            raise Forbidden(f"{roles} may not use {coordinate}.")

    def require_view(self, view: str, info: Located, kwargs: dict[str, Any]) -> Grant:
        """The grant for a lookup's declared view; every lookup of named residents passes
        here first, and is counted against the request's budget before anything else."""
        self._count_lookups(_named(kwargs))
        self.purposes.add(view)
        grant = self.policy.grant(self.principal.roles, view)
        if grant is None:
            self._refused_lookup(f"Query.{info.field_name}", info, kwargs)
            roles = ", ".join(self.principal.roles) or "no role"
            raise Forbidden(f"{roles} may not declare the purpose {view}.")
        return grant

    def _count_lookups(self, named: list[Any]) -> None:
        """One request names at most ``max_lookups`` residents across all its root fields
        and aliases. Past that a field is refused before anything about it is audited, so
        refused lookups cannot plant entries in thousands of citizens' access logs."""
        if self.lookups + len(named) > self.max_lookups:
            raise QueryTooComplex(
                f"A request may name at most {self.max_lookups} residents ([limits] max_batch);"
                f" this field would make it {self.lookups + len(named)}."
            )
        self.lookups += len(named)

    def _refused_lookup(self, coordinate: str, info: Located, kwargs: dict[str, Any]) -> None:
        """A refused lookup of named residents is audited too: citizens see attempts."""
        named = _named(kwargs)
        purpose = kwargs.get("purpose")
        view = getattr(purpose, "name", str(purpose))
        for text in named:
            try:
                subject = parse(str(text)).value
            except InvalidRRN:
                continue
            self.root_keys.add(_root_key(info))
            self._entry(subject, view).denied.add(coordinate)

    def returned(self, subject: str, view: str, info: Located) -> None:
        """A resident object is in the response: its existence is a disclosure, even when
        every field under it is skipped (@skip/@include) or only __typename is asked.

        Every resident object enters the response here, so its response key is noted here
        (every alias, not only the first per resident): all of them are withheld if the
        audit cannot be written. Fields below it need not note it again."""
        self.root_keys.add(_root_key(info))
        self._entry(subject, view)

    def _entry(self, subject: str, view: str) -> Disclosure:
        entry = self.disclosures.get((subject, view))
        if entry is None:
            entry = self.disclosures[(subject, view)] = Disclosure()
        return entry

    def show_rrn(self, view: str, rrn: str, *, whole_allowed: bool = True) -> str:
        """An RRN as this caller may see it under ``view``: whole where the view allows it,
        otherwise masked down to what the view grants (see ``Grant.shows_*``)."""
        if whole_allowed and view == SELF and rrn == self.principal.rrn:
            return rrn
        grant = self.policy.grant(self.principal.roles, view)
        if grant is None:
            return mask(rrn, birth_date=False, seventh_digit=False)
        if whole_allowed and grant.unmasked_rrn and view != SELF:
            return rrn
        return mask(rrn, birth_date=grant.shows_birth_date, seventh_digit=grant.shows_seventh_digit)

    # Resident data fields --------------------------------------------------------------

    def resolve_field(
        self, resolve: Callable[..., Any], root: Any, info: Info, *args: Any, **kwargs: Any
    ) -> Any:
        type_name = info.parent_type.name
        coordinate = f"{type_name}.{info.field_name}"
        subject: str | None = (
            root.record.rrn if type_name == "Resident" else getattr(root, "subject", None)
        )
        view: str | None = getattr(root, "view", None)
        if subject is None or view is None:  # a data type that cannot say whose data it is
            raise Forbidden(f"You may not read {coordinate}.")
        entry = self._entry(subject, view)
        if coordinate == "Resident.rrn":  # always readable; masking decides how much
            entry.disclosed.add(coordinate)
            return resolve(root, info, *args, **kwargs)
        grant = self.policy.grant(self.principal.roles, view)
        if grant is None or coordinate not in grant.fields:
            entry.denied.add(coordinate)
            raise Forbidden(f"You may not read {coordinate} for {view}.")
        if coordinate in grant.consent:
            return self._with_consent(resolve, root, info, args, kwargs, entry, coordinate)
        result = resolve(root, info, *args, **kwargs)
        if inspect.isawaitable(result):
            return _track(result, entry, coordinate)
        entry.disclosed.add(coordinate)
        if coordinate == "HealthInsurance.insuredBy" and root.insured_by_rrn is not None:
            # It names another resident: that resident's access log must show it too.
            self._entry(root.insured_by_rrn, view).disclosed.add(coordinate)
        return result

    async def _with_consent(
        self,
        resolve: Callable[..., Any],
        root: Any,
        info: Info,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        entry: Disclosure,
        coordinate: str,
    ) -> Any:
        subject: str = root.record.rrn
        view: str = root.view
        if not await self.consented(subject, view):
            entry.denied.add(coordinate)
            agency = self.principal.agency or "your agency"
            raise ConsentRequired(
                f"{self.show_rrn(view, subject)} has not consented to {agency} reading "
                f"{coordinate} for {view}."
            )
        result = resolve(root, info, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        entry.disclosed.add(coordinate)  # null ("no record") is an answer too
        return result

    async def consented(self, subject: str, view: str) -> bool:
        """Whether a consent of ``subject`` lets the caller's agency read for ``view`` now."""
        consents = await self.consents.load(self.keys.subject(subject))
        now = dt.datetime.now(dt.UTC)
        return any(c.covers(view, self.principal.agency, now) for c in consents)

    # Audit -------------------------------------------------------------------------------

    def drain(self, request_id: str) -> list[AuditRecord]:
        """Audit records for everything decided since the last drain."""
        now = dt.datetime.now(dt.UTC)
        p = self.principal
        disclosures, self.disclosures = self.disclosures, {}
        return [
            AuditRecord(
                at=now,
                request_id=request_id,
                principal=p.sub,
                roles=",".join(p.roles),
                agency=p.agency,
                purpose=view,
                subject=self.keys.subject(subject),
                disclosed=tuple(sorted(d.disclosed)),
                denied=tuple(sorted(d.denied)),
            )
            for (subject, view), d in disclosures.items()
        ]


async def _track(result: Any, entry: Disclosure, coordinate: str) -> Any:
    value = await result
    # An agency's "no record" is a disclosure too (insurance: null says "uninsured"); only a
    # failure (an exception, so no answer) discloses nothing.
    entry.disclosed.add(coordinate)
    return value


def _named(kwargs: dict[str, Any]) -> list[Any]:
    """The residents a root field names by its arguments."""
    named = kwargs.get("rrns") or ([kwargs["rrn"]] if "rrn" in kwargs else [])
    return list(named) if isinstance(named, list | tuple) else [named]


def _root_key(info: Located) -> str:
    path = info.path
    while path.prev is not None:
        path = path.prev
    return str(path.key)


class Authorize(SchemaExtension):
    """Runs the request's Access in front of every resolver that needs a decision."""

    def resolve(
        self, _next: Callable[..., Any], root: Any, info: Info, *args: Any,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        type_name = info.parent_type.name
        if info.field_name.startswith("__"):  # the object's existence is already recorded
            return _next(root, info, *args, **kwargs)
        access = info.context.access
        if type_name in access.policy.resident_types:
            return access.resolve_field(_next, root, info, *args, **kwargs)
        if type_name in ROOT_TYPES:
            access.require_operation(f"{type_name}.{info.field_name}", info, kwargs)
        elif type_name not in SERVICE_TYPES and not type_name.startswith("__"):
            # Unclassified: start-up refuses such a schema; this is the fail-closed backstop.
            raise Forbidden(f"{type_name}.{info.field_name} is not classified; refused.")
        return _next(root, info, *args, **kwargs)
