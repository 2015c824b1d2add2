"""What a request forwards to a GraphQL subgraph: the subfields it selects, and may read.

A subgraph agency (``kind = "graphql"``) is asked, per request and per view, for the union of
every selection of its ``Resident`` fields anywhere in the operation (aliases, fragments and
inline fragments merged; ``@skip``/``@include`` applied), cut down to what the caller's view
grants: a field the caller may not read is never asked for. Fields are sorted, so one
selection has one text, which names the part of the records fetched and cached
(``adapters.records.Dataset.narrowed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    InlineFragmentNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)

from gateway.policy import Grant

#: Subgraph object type name -> field name -> the object type it reaches (None: a leaf).
#: ``"Resident"`` holds the contributed fields.
Graph = Mapping[str, Mapping[str, str | None]]
#: A selection: field name -> its own selection (None: a leaf).
Tree = dict[str, "Tree | None"]


def selected(info: GraphQLResolveInfo[Any], graph: Graph) -> Tree:
    """The union of every selection of the contributed ``Resident`` fields in the operation,
    and of the field occurrence being resolved."""
    return _Collector(info, graph).collect()


def render(tree: Tree, graph: Graph, grant: Grant, withheld: Iterable[str] = ()) -> str:
    """The selection text of the granted part of ``tree`` (``withheld``: ``Resident`` fields
    left out, e.g. those needing a consent the resident has not given). An object whose
    selected subfields are all refused is asked for ``__typename`` only: its presence, and
    the length of a list of them, is what the granted field discloses."""
    return _render(tree, "Resident", graph, grant, frozenset(withheld))


def _render(
    tree: Tree, type_name: str, graph: Graph, grant: Grant, withheld: frozenset[str]
) -> str:
    parts: list[str] = []
    for name in sorted(tree):
        coordinate = f"{type_name}.{name}"
        if coordinate not in grant.fields or coordinate in withheld:
            continue
        sub, nested = tree[name], graph[type_name].get(name)
        if sub is None or nested is None:
            parts.append(name)
        else:
            inner = _render(sub, nested, graph, grant, withheld) or "__typename"
            parts.append(f"{name} {{ {inner} }}")
    return " ".join(parts)


class _Collector:
    def __init__(self, info: GraphQLResolveInfo[Any], graph: Graph) -> None:
        self.info = info
        self.graph = graph
        self.resident = info.schema.get_type("Resident")
        self.tree: Tree = {}
        self.walked: set[str] = set()  # fragments already walked for Resident fields
        self.merged: set[tuple[str, int]] = set()  # (fragment, selection) already merged

    def collect(self) -> Tree:
        self.walk(self.info.operation.selection_set, self._root())
        for node in self.info.field_nodes:  # this occurrence, whatever the walk found
            self.contributed(node)
        return self.tree

    def _root(self) -> GraphQLNamedType | None:
        schema = self.info.schema
        operation = self.info.operation.operation.value
        return {
            "query": schema.query_type,
            "mutation": schema.mutation_type,
            "subscription": schema.subscription_type,
        }.get(operation)

    def walk(self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> None:
        """Find the contributed fields of ``Resident`` below ``parent``."""
        if parent is None:
            return
        for node in selection_set.selections:
            if not _included(node, self.info.variable_values):
                continue
            if isinstance(node, FieldNode):
                if parent is self.resident and node.name.value in self.graph["Resident"]:
                    self.contributed(node)
                elif node.selection_set is not None and isinstance(
                    parent, GraphQLObjectType | GraphQLInterfaceType
                ):
                    found = parent.fields.get(node.name.value)
                    if found is not None:
                        self.walk(node.selection_set, get_named_type(found.type))
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                inner = (
                    parent if condition is None else self.info.schema.get_type(condition.name.value)
                )
                self.walk(node.selection_set, inner)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.info.fragments.get(name)
                if fragment is None or name in self.walked:
                    continue
                self.walked.add(name)
                self.walk(
                    fragment.selection_set,
                    self.info.schema.get_type(fragment.type_condition.name.value),
                )

    def contributed(self, node: FieldNode) -> None:
        name = node.name.value
        nested = self.graph["Resident"].get(name)
        if nested is None or node.selection_set is None:
            self.tree.setdefault(name, None)
            return
        sub = self.tree.get(name) or {}
        self.tree[name] = sub
        self.merge(sub, node.selection_set, nested)

    def merge(self, into: Tree, selection_set: SelectionSetNode, type_name: str) -> None:
        """Add a selection on the subgraph's ``type_name`` (object types only: the
        subgraph's types have no abstract types, so fragments on them are on that type)."""
        fields = self.graph[type_name]
        for node in selection_set.selections:
            if not _included(node, self.info.variable_values):
                continue
            if isinstance(node, FieldNode):
                name = node.name.value
                if name not in fields:  # __typename: not the subgraph's to answer
                    continue
                nested = fields[name]
                if nested is None or node.selection_set is None:
                    into.setdefault(name, None)
                    continue
                sub = into.get(name) or {}
                into[name] = sub
                self.merge(sub, node.selection_set, nested)
            elif isinstance(node, InlineFragmentNode):
                self.merge(into, node.selection_set, type_name)
            elif isinstance(node, FragmentSpreadNode):
                fragment = self.info.fragments.get(node.name.value)
                done = (node.name.value, id(into))
                if fragment is not None and done not in self.merged:
                    self.merged.add(done)
                    self.merge(into, fragment.selection_set, type_name)


def _included(node: Any, variables: Any) -> bool:
    """``@skip`` and ``@include`` as the executor applies them (validation has checked
    their ``if`` is a Boolean literal or a Boolean variable)."""
    for directive in node.directives or ():
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        value = next((a.value for a in directive.arguments if a.name.value == "if"), None)
        if isinstance(value, VariableNode):
            condition = bool((variables or {}).get(value.name.value))
        else:
            condition = isinstance(value, BooleanValueNode) and value.value
        if condition == (name == "skip"):
            return False
    return True
