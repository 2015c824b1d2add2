"""Field-level authorization, decided from the operation's plan, and what it disclosed.

Root fields need the operation in one of the caller's roles; fields of resident data types
need the coordinate granted for the view the lookup declared (its purpose), and resident
consent where the policy asks for it. The decisions come from ``gateway.plans`` (made once
per roles, view and document); the resolvers built by ``planned_resolver`` apply them. A
denied field raises before its resolver runs, so its agency is never called.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphql import GraphQLResolveInfo, OperationDefinitionNode
from graphql.pyutils import Path
from strawberry.dataloader import DataLoader

from gateway.audit import AuditKeys, AuditRecord
from gateway.consent import ConsentRecord
from gateway.errors import ConsentRequired, Forbidden, QueryTooComplex
from gateway.plans import Action, OperationPlan, ViewPlan, planner, response_path
from gateway.policy import SELF, Grant, Policy
from gateway.principal import Principal
from gateway.rrn import InvalidRRN, mask, parse
from resolvers.loading import NOT_LOADED

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
    """One request's decisions and disclosures. Holds no data across requests; decisions
    come from plans keyed by the whole authorization input (see ``gateway.plans``)."""

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
        self._planner = planner(policy)
        self._views: dict[str, ViewPlan] = {}
        self._operations: dict[str, bool] = {}
        # Per executing operation (by its node: a batch may run several at once): the
        # datasets each Resident path selects, and the nodes themselves, kept alive.
        self._selected: dict[int, Mapping[tuple[str, ...], frozenset[str]]] = {}
        self._loads: dict[int, Mapping[tuple[str, ...], frozenset[str] | None]] = {}
        self._nodes: list[OperationDefinitionNode] = []
        # The last resident object's wave (its info, view, datasets, whether to await them):
        # a list's members share their info.
        self._wave: tuple[Any, str, tuple[str, ...], bool] | None = None

    # Plans -----------------------------------------------------------------------------

    def adopt(self, operation: OperationDefinitionNode, plan: OperationPlan) -> None:
        """The plan of an operation about to run in this request (all of a request's
        operations share its principal, so their views and root decisions agree)."""
        self._views.update(plan.views)
        self._operations.update(plan.operations)
        self._selected[id(operation)] = plan.selected
        self._loads[id(operation)] = plan.loads
        self._nodes.append(operation)

    def view(self, view: str) -> ViewPlan:
        """The decisions for ``view``: from the operation's plan, or planned now."""
        found = self._views.get(view)
        if found is None:
            found = self._views[view] = self._planner.view(self.principal.roles, view)
        return found

    # Root operations -------------------------------------------------------------------

    def require_operation(self, coordinate: str, info: Located, kwargs: dict[str, Any]) -> None:
        allowed = self._operations.get(coordinate)
        if allowed is None:
            allowed = self.policy.allows_operation(self.principal.roles, coordinate)
        if not allowed:
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

    def returned(
        self, subject: str, view: str, info: Located, record: Any = None
    ) -> list[asyncio.Future[Any]]:
        """A resident object is in the response: its existence is a disclosure, even when
        every field under it is skipped (@skip/@include) or only __typename is asked.

        Every resident object enters the response here, so its response key is noted here
        (every alias, not only the first per resident): all of them are withheld if the
        audit cannot be written. Fields below it need not note it again.

        With its ``record`` (a ``ResidentRecord``), every agency dataset the operation's
        plan selects for this object, granted without consent, is requested now, in one
        wave: the loads share the request's DataLoaders, so a household's members still
        make one call per agency, and the field resolvers find their values loading.

        Returns the loads worth awaiting before the object's fields run (pass them to
        ``settled``): those of the wave when everything the object's selection can load is
        in it (``OperationPlan.loads``), so awaiting delays no other load and the fields
        answer from loaded values, without a task each; otherwise none."""
        self.root_keys.add(_root_key(info))
        self._entry(subject, view)
        if record is not None:
            return self._prefetch(record, view, info)
        return []

    def _prefetch(self, record: Any, view: str, info: Located) -> list[asyncio.Future[Any]]:
        memo = self._wave
        if memo is not None and memo[0] is info and memo[1] == view:
            datasets, settle = memo[2], memo[3]  # the next member of the same list
        else:
            datasets, settle = self._wave_of(view, info)
            self._wave = (info, view, datasets, settle)
        if not datasets:
            return []
        loaders = info.context.loaders  # type: ignore[attr-defined]
        waiting: list[asyncio.Future[Any]] = []
        for dataset in datasets:
            key = record.household_id if dataset == "household" else record.rrn
            if key is not None:
                future = loaders[dataset].load(key)
                if settle:
                    waiting.append(future)  # ``settled`` sees to its failure
                else:
                    future.add_done_callback(_retrieved)
        return waiting

    def forget(self) -> None:
        """The request is answered: let go of its last resolve info (see ``_prefetch``)."""
        self._wave = None

    def _wave_of(self, view: str, info: Located) -> tuple[tuple[str, ...], bool]:
        """The datasets to request for a resident object at ``info`` under ``view``, and
        whether to await them before its fields run (see ``returned``)."""
        operation = id(getattr(info, "operation", None))
        selected = self._selected.get(operation)
        if not selected:
            return (), False
        path = response_path(info)
        wanted = selected.get(path)
        if not wanted or getattr(getattr(info, "context", None), "loaders", None) is None:
            return (), False
        prefetch = wanted & self.view(view).prefetch
        loads = self._loads.get(operation, {}).get(path)
        return tuple(sorted(prefetch)), loads is not None and loads <= prefetch

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
        plan = self.view(view)
        if not plan.granted:
            return mask(rrn, birth_date=False, seventh_digit=False)
        if whole_allowed and plan.unmasked_rrn and view != SELF:
            return rrn
        return mask(rrn, birth_date=plan.shows_birth_date, seventh_digit=plan.shows_seventh_digit)

    # Resident data fields --------------------------------------------------------------

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


async def settled(waiting: list[asyncio.Future[Any]]) -> None:
    """Wait until ``waiting`` (from ``Access.returned``) are done, failed or not: a failure
    is reported by the field that reads it, as before.

    One at a time: a DataLoader answers its whole batch at once, so after the first of a
    batch the others are done already, and waiting costs a callback per batch rather than
    per future."""
    try:
        for future in waiting:
            if not future.done():
                await asyncio.wait((future,))
    finally:
        for future in waiting:
            if future.done():
                _retrieved(future)
            else:  # cancelled while waiting
                future.add_done_callback(_retrieved)


def _retrieved(future: Any) -> None:
    """A prefetched load's failure is reported by the field that awaits it; if none does
    (its object was dropped), asyncio must not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def planned_resolver(
    type_name: str,
    field_name: str,
    resolve: Callable[..., Any],
    direct: Callable[[Any], Any] | None,
    ready: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """The resolver of one field of a resident data type: the field's own ``resolve``
    behind the plan's decision for the view of the object it is read from.

    ``direct``: for a field that only reads its object (no arguments, no info), the
    function that does so, called without strawberry's resolver machinery. ``ready``: for
    an asynchronous field, its synchronous twin answering from values loaded already, or
    ``NOT_LOADED`` (``resolvers.loading.when_loaded``): tried first."""
    coordinate = f"{type_name}.{field_name}"
    is_resident = type_name == "Resident"
    names_another = coordinate == "HealthInsurance.insuredBy"
    unreadable = f"You may not read {coordinate}."
    grant, consent = Action.GRANT, Action.CONSENT

    def resolved(root: Any, info: Info, **kwargs: Any) -> Any:
        access: Access = info.context.access
        subject: str | None = (
            root.record.rrn if is_resident else getattr(root, "subject", None)
        )
        view: str | None = getattr(root, "view", None)
        if subject is None or view is None:  # a data type that cannot say whose data it is
            raise Forbidden(unreadable)
        key = (subject, view)
        entry = access.disclosures.get(key) or access._entry(subject, view)
        action = (access._views.get(view) or access.view(view)).actions.get(coordinate)
        if action is grant:
            if direct is not None:
                result = direct(root)
            else:
                result = NOT_LOADED if ready is None else ready(root, info, **kwargs)
                if result is NOT_LOADED:
                    result = resolve(root, info, **kwargs)
                    if inspect.isawaitable(result):
                        return _track(result, entry, coordinate)
            entry.disclosed.add(coordinate)
            if names_another and root.insured_by_rrn is not None:
                # It names another resident: that resident's access log must show it too.
                access._entry(root.insured_by_rrn, view).disclosed.add(coordinate)
            return result
        if action is consent:
            return access._with_consent(resolve, root, info, (), kwargs, entry, coordinate)
        entry.denied.add(coordinate)
        raise Forbidden(f"You may not read {coordinate} for {view}.")

    resolved.__wrapped__ = resolve  # type: ignore[attr-defined]
    return resolved


def rrn_resolver(resolve: Callable[..., Any]) -> Callable[..., Any]:
    """``Resident.rrn``: always readable; masking decides how much of it shows."""

    def resolved(root: Any, info: Info, **kwargs: Any) -> Any:
        record = root.record
        info.context.access._entry(record.rrn, root.view).disclosed.add("Resident.rrn")
        return resolve(root, info, **kwargs)

    resolved.__wrapped__ = resolve  # type: ignore[attr-defined]
    return resolved


def root_resolver(coordinate: str, resolve: Callable[..., Any]) -> Callable[..., Any]:
    """A root field: the roles must hold the operation (decided by the plan)."""

    def resolved(root: Any, info: Info, **kwargs: Any) -> Any:
        info.context.access.require_operation(coordinate, info, kwargs)
        return resolve(root, info, **kwargs)

    resolved.__wrapped__ = resolve  # type: ignore[attr-defined]
    return resolved


def refused_resolver(coordinate: str) -> Callable[..., Any]:
    """Unclassified: start-up refuses such a schema; this is the fail-closed backstop."""

    def resolved(root: Any, info: Info, **kwargs: Any) -> Any:
        raise Forbidden(f"{coordinate} is not classified; refused.")

    return resolved


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
