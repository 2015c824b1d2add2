"""Operation plans: every authorization decision an operation can need, made once.

A request used to ask the policy at every field (a strawberry ``SchemaExtension.resolve``
hook around every resolver). Nothing in those decisions depends on data: they follow from
the caller's roles, the view a resident object is read under (the purpose the lookup
declared, or SELF / SELF_HOUSEHOLD for a citizen) and the field. So they are made once:

* ``ViewPlan`` — for (roles, view): every resident-data coordinate as GRANT, CONSENT (granted
  with the resident's consent) or DENY (anything not listed), how much of an RRN shows, and
  which agency datasets may be fetched as soon as a resident is known (granted without
  consent);
* ``OperationPlan`` — for (document, operation name, roles, agency claim, purposes): the
  root operations the roles may use, the ``ViewPlan`` of every view the operation can reach,
  and, per response path of a ``Resident`` object, the agency datasets its selection asks
  for unconditionally (no @skip/@include on the way): what ``Access.returned`` prefetches.

Executing then asks the plan, not the policy: each field of a resident type has a resolver
built here, once per schema, that looks its coordinate up in the view's table and either
answers (noting the disclosure), refuses (null and FORBIDDEN, the same message, path and
extensions as before) or checks consent once per resident. No schema extension runs per
field. Parse, validation and cost are cached by their own document-keyed caches
(``gateway.limits``: ``parse_limited``, ``ValidatedOnce``), ahead of the plan.

Why a plan cache keeps the contract ("caches hold agency data, never decisions"): a plan is
a cache of decisions, but it holds **no data** and is keyed by the **whole** authorization
input — the roles (as the token lists them), the agency claim, the view (purpose, from a
literal or a variable) and the document — so one caller's plan can only serve a caller for
whom the policy would decide the same. Its decisions are recomputed from the policy on every
miss, and its caches belong to one ``Policy`` object: loading a policy (a reload, or tests
swapping one in) starts from empty caches. Data-dependent checks (consent, which resident,
whether an agency answered) are never planned.
"""

from __future__ import annotations

import dataclasses
import enum
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext
from strawberry.types.field import StrawberryField

from gateway.limits import FIELD_DATASET
from gateway.lru import LRU
from gateway.policy import SELF, SELF_HOUSEHOLD, Policy

#: How many plans one policy keeps (least recently used out first).
PLAN_CACHE_SIZE = 512
#: Datasets keyed by the resident's RRN, fetched in one wave once a resident is known
#: (``resident`` is loaded already; ``household`` is keyed by the household number).
_BY_RRN = frozenset({"insurance", "taxes", "pension", "military_service"})


class Action(enum.Enum):
    GRANT = "grant"
    CONSENT = "consent"  # granted once the resident has consented to the caller's agency
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class ViewPlan:
    """What one view lets the caller's roles read, decided once."""

    view: str
    actions: Mapping[str, Action]  # coordinate -> action; a coordinate not here is DENY
    granted: bool  # some role holds the view at all
    unmasked_rrn: bool
    shows_birth_date: bool
    shows_seventh_digit: bool
    prefetch: frozenset[str]  # Resident datasets granted without consent

    def action(self, coordinate: str) -> Action:
        return self.actions.get(coordinate, Action.DENY)


@dataclass(frozen=True, slots=True)
class OperationPlan:
    """Everything about one operation that does not depend on data."""

    operations: Mapping[str, bool]  # root coordinate -> the roles may use it
    views: Mapping[str, ViewPlan]
    #: Response path (keys only, no list indices) of a Resident object -> the Resident
    #: datasets its selection asks for on every execution.
    selected: Mapping[tuple[str, ...], frozenset[str]]
    #: Response path of a Resident object -> every agency dataset anything selected under it
    #: can load (conditional selections included), or None when something under it may load
    #: more than that (a nested Resident, a field of unknown resolver). Where these datasets
    #: are all prefetched, the resolver returning the object awaits that wave before its
    #: fields run (``Access.returned``): no later load waits on it, so nothing changes but
    #: that the fields find their values loaded.
    loads: Mapping[tuple[str, ...], frozenset[str] | None] = dataclasses.field(default_factory=dict)


class Planner:
    """The plans of one policy (see ``planner``)."""

    def __init__(self, policy: Policy, size: int = PLAN_CACHE_SIZE) -> None:
        self.policy = policy
        self._views: LRU[ViewPlan] = LRU(size)
        self._operations: LRU[OperationPlan] = LRU(size)

    def view(self, roles: tuple[str, ...], view: str) -> ViewPlan:
        return self._views.get_or_make((roles, view), lambda: self._view(roles, view))

    def _view(self, roles: tuple[str, ...], view: str) -> ViewPlan:
        grant = self.policy.grant(roles, view)
        if grant is None:
            return ViewPlan(view, {}, False, False, False, False, frozenset())
        actions = {c: Action.CONSENT if c in grant.consent else Action.GRANT for c in grant.fields}
        plain = grant.fields - grant.consent
        prefetch = frozenset(
            dataset
            for (type_name, name), dataset in FIELD_DATASET.items()
            if type_name == "Resident"
            and f"Resident.{name}" in plain
            and (dataset in _BY_RRN or dataset == "household")
        )
        return ViewPlan(
            view,
            actions,
            True,
            grant.unmasked_rrn,
            grant.shows_birth_date,
            grant.shows_seventh_digit,
            prefetch,
        )

    def operation(
        self,
        schema: GraphQLSchema,
        text: str,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        roles: tuple[str, ...],
        agency: str | None,
        extra_views: tuple[str, ...],
    ) -> tuple[OperationDefinitionNode, OperationPlan] | None:
        operation = get_operation_ast(document, operation_name)
        if operation is None or schema.get_root_type(operation.operation) is None:
            return None
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        purposes = tuple(sorted(set(_purposes(operation, fragments, variables or {}))))
        key = (text, operation_name, roles, agency, purposes)

        root = schema.get_root_type(operation.operation)
        assert root is not None

        def make() -> OperationPlan:
            views = {v: self.view(roles, v) for v in (*purposes, *extra_views)}
            return OperationPlan(
                operations={
                    c: self.policy.allows_operation(roles, c)
                    for c in (f"{root.name}.{n}" for n in root.fields)
                },
                views=views,
                selected=_selected(schema, operation, fragments),
                loads=_loads(schema, operation, fragments),
            )

        plan = self._operations.get_or_make(key, make)
        return operation, plan


_PLANNERS: weakref.WeakKeyDictionary[Policy, Planner] = weakref.WeakKeyDictionary()


def planner(policy: Policy) -> Planner:
    """The plans of ``policy``: a new policy object starts with none."""
    found = _PLANNERS.get(policy)
    if found is None:
        found = _PLANNERS[policy] = Planner(policy)
    return found


# --- reading the document ------------------------------------------------------------------


def _root_fields(
    selection_set: SelectionSetNode, fragments: Mapping[str, FragmentDefinitionNode]
) -> Iterator[FieldNode]:
    todo = [selection_set]
    seen: set[str] = set()
    while todo:
        for selection in todo.pop().selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                todo.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in seen and name in fragments:
                    seen.add(name)
                    todo.append(fragments[name].selection_set)


def _purposes(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> Iterator[str]:
    """The purposes the root fields declare, from literals, variables or their defaults.
    Only a precomputation: a view the plan missed is planned when first met."""
    defaults = {
        d.variable.name.value: d.default_value for d in operation.variable_definitions or ()
    }
    for node in _root_fields(operation.selection_set, fragments):
        for argument in node.arguments or ():
            if argument.name.value != "purpose":
                continue
            value = argument.value
            if isinstance(value, VariableNode):
                name = value.name.value
                if name in variables:
                    if isinstance(variables[name], str):
                        yield variables[name]
                    continue
                value = defaults.get(name)  # type: ignore[assignment]
            if isinstance(value, EnumValueNode | StringValueNode):
                yield value.value


def _conditional(node: FieldNode | InlineFragmentNode | FragmentSpreadNode) -> bool:
    return bool(node.directives)


def _selected(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> dict[tuple[str, ...], frozenset[str]]:
    """Per Resident path, the Resident datasets selected there on every execution: a field
    counts only if nothing on its way from the root (field, inline fragment or spread)
    carries a directive and every fragment on the way applies to the object's own type."""
    root = schema.get_root_type(operation.operation)
    found: dict[tuple[str, ...], set[str]] = {}
    if root is None:
        return {}
    # (selection set, its object type, path, reached unconditionally, fragments on the way)
    todo: list[tuple[SelectionSetNode, GraphQLObjectType, tuple[str, ...], bool, frozenset[str]]]
    todo = [(operation.selection_set, root, (), True, frozenset())]
    while todo:
        selection_set, parent, path, certain, spread = todo.pop()
        for selection in selection_set.selections:
            if isinstance(selection, InlineFragmentNode):
                applies = (
                    selection.type_condition is None
                    or selection.type_condition.name.value == parent.name
                )
                certain_here = certain and applies and not _conditional(selection)
                todo.append((selection.selection_set, parent, path, certain_here, spread))
                continue
            if isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is None or name in spread:
                    continue
                applies = fragment.type_condition.name.value == parent.name
                todo.append((fragment.selection_set, parent, path,
                             certain and applies and not _conditional(selection),
                             spread | {name}))  # fmt: skip
                continue
            if not isinstance(selection, FieldNode):
                continue
            name = selection.name.value
            definition = parent.fields.get(name)
            if definition is None:  # __typename and introspection
                continue
            here = certain and not _conditional(selection)
            if parent.name == "Resident" and here:
                dataset = FIELD_DATASET.get(("Resident", name))
                if dataset is not None:
                    found.setdefault(path, set()).add(dataset)
            target = get_named_type(definition.type)
            if selection.selection_set is not None and isinstance(target, GraphQLObjectType):
                key = selection.alias.value if selection.alias else name
                todo.append((selection.selection_set, target, (*path, key), here, spread))
    return {path: frozenset(datasets) for path, datasets in found.items()}


def _loads(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> dict[tuple[str, ...], frozenset[str] | None]:
    """Per Resident path, what may load below it (see ``OperationPlan.loads``): every field,
    conditional or not, under any fragment. A field loads nothing if its resolver is
    synchronous (a plain attribute or a sync strawberry resolver); an asynchronous Resident
    field loads its ``FIELD_DATASET``; anything else asynchronous, and any nested Resident,
    makes the answer None (unknown)."""
    root = schema.get_root_type(operation.operation)
    found: dict[tuple[str, ...], frozenset[str] | None] = {}
    if root is None:
        return found

    def walk(
        selection_set: SelectionSetNode,
        parent: GraphQLObjectType,
        path: tuple[str, ...],
        spread: frozenset[str],
    ) -> frozenset[str] | None:
        loads: set[str] | None = set()
        todo = [(selection_set, spread)]
        while todo:
            current, seen = todo.pop()
            for selection in current.selections:
                if isinstance(selection, InlineFragmentNode):
                    todo.append((selection.selection_set, seen))
                    continue
                if isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = fragments.get(name)
                    if fragment is not None and name not in seen:
                        todo.append((fragment.selection_set, seen | {name}))
                    continue
                if not isinstance(selection, FieldNode):
                    continue
                name = selection.name.value
                definition = parent.fields.get(name)
                if definition is None:  # __typename and introspection
                    continue
                target = get_named_type(definition.type)
                here: frozenset[str] | None = frozenset()
                if not _synchronous(definition):
                    dataset = FIELD_DATASET.get((parent.name, name))
                    here = None if dataset is None else frozenset({dataset})
                if target.name == "Resident":
                    here = None  # its own wave, after this one
                if selection.selection_set is not None:
                    if isinstance(target, GraphQLObjectType):
                        key = selection.alias.value if selection.alias else name
                        below = walk(selection.selection_set, target, (*path, key), seen)
                        here = None if here is None or below is None else here | below
                    else:  # a union or interface: not worked out
                        here = None
                if here is None:
                    loads = None
                elif loads is not None:
                    loads |= here
        result = None if loads is None else frozenset(loads)
        if parent.name == "Resident":
            if path in found:
                before = found[path]
                result = None if before is None or result is None else before | result
            found[path] = result
        return result

    walk(operation.selection_set, root, (), frozenset())
    return found


def _synchronous(definition: GraphQLField) -> bool:
    """Whether a field's own resolver answers without awaiting (so loads nothing)."""
    strawberry_field = (definition.extensions or {}).get("strawberry-definition")
    if not isinstance(strawberry_field, StrawberryField):
        return False
    resolver = strawberry_field.base_resolver
    return resolver is None or not resolver.is_async


def response_path(info: Any) -> tuple[str, ...]:
    """The response keys from the root to this field, list indices left out."""
    keys: list[str] = []
    path = info.path
    while path is not None:
        if isinstance(path.key, str):
            keys.append(path.key)
        path = path.prev
    return tuple(reversed(keys))


class Planned(SchemaExtension):
    """Before an operation executes: its plan, from the policy's cache or made now, handed
    to the request's ``Access``. Operation-level only: nothing of it runs per field."""

    def on_execute(self) -> Iterator[None]:
        adopt_plan(self.execution_context)
        yield


def adopt_plan(context: ExecutionContext) -> None:
    """Hand the request's ``Access`` the plan of ``context``'s operation (see
    :class:`Planned`)."""
    access = getattr(context.context, "access", None)
    document = context.graphql_document
    if access is not None and document is not None and context.query is not None:
        principal = access.principal
        found = planner(access.policy).operation(
            context.schema._schema,
            context.query,
            document,
            context.operation_name,
            context.variables,
            principal.roles,
            principal.agency,
            (SELF, SELF_HOUSEHOLD) if principal.rrn is not None else (),
        )
        if found is not None:
            access.adopt(*found)
