"""A federation v2 subgraph joins as it is: its SDL becomes a :class:`Contribution`.

For an agency ``[agencies.<code>] kind = "graphql"``, start-up reads the subgraph's SDL
(``{ _service { sdl } }``), finds the fields it adds to the ``Resident`` entity (``type
Resident @key(fields: "rrn")``; ``rrn`` and ``@external`` fields are not contributions) and
the object types they reach, and builds from them what an agency package would register by
hand: one dataset named after the agency code (its record: the contributed fields), strawberry
types carrying the subgraph's descriptions, and the ``Resident`` fields. From there it is an
ordinary contribution (``gateway.federation``): same batching, cache, breaker, provenance,
policy, consent, audit and cost.

What is forwarded: only what a request selects and the caller may read, per view
(:meth:`SubgraphContribution.part`, ``gateway.forwarding``); each selection is a part of the
records, fetched and cached apart (``adapters.records.Dataset.narrowed``). The record class
also carries the whole selection (``__selection__``), for the dataset asked as a whole.

Supported: object types, enums, lists, non-null, the scalars String, Int, Float, Boolean and ID,
and Resident fields of any of them. A subgraph using custom scalars, interfaces, unions or
arguments, a type, enum or field without a description, a name the schema already has, a
name starting with ``__``, a recursive type, types expanding beyond :data:`MAX_FIELDS` /
:data:`MAX_DEPTH` / :data:`MAX_SELECTION_CHARS`, or a federation directive not in
:data:`SUPPORTED_DIRECTIVES` stops start-up with one line naming the agency, the field and
the reason. ``@inaccessible`` fields are left out. Values the subgraph answers are checked
against their declared types (:func:`_value`): a wrong one is an agency failure, never quoted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import keyword
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import strawberry
from graphql import (
    DirectiveNode,
    DocumentNode,
    EnumTypeDefinitionNode,
    FieldDefinitionNode,
    GraphQLError,
    GraphQLResolveInfo,
    InputObjectTypeDefinitionNode,
    InterfaceTypeDefinitionNode,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    ObjectTypeDefinitionNode,
    ObjectTypeExtensionNode,
    ScalarTypeDefinitionNode,
    StringValueNode,
    TypeNode,
    UnionTypeDefinitionNode,
    parse,
)

from adapters.base import AgencyFailure
from adapters.records import DATASETS, Dataset
from adapters.subgraph import SubgraphAdapter
from gateway.config import AgencyConfig, ConfigError
from gateway.federation import Contribution, ResidentField
from gateway.forwarding import Graph, render, selected

KIND = "graphql"
log = logging.getLogger(__name__)
SCALARS: dict[str, type] = {"String": str, "Int": int, "Float": float, "Boolean": bool, "ID": str}
#: Fields that are federation's own, never contributions.
_FEDERATION_FIELDS = {"_service", "_entities"}
#: Federation directives the gateway honours; any other on a type, field or enum value the
#: gateway composes stops start-up (``@inaccessible`` fields are left out; ``@key`` is
#: read on ``Resident``; ``@external``, ``@shareable`` and ``@tag`` change nothing here).
SUPPORTED_DIRECTIVES = frozenset({"key", "external", "shareable", "tag", "inaccessible"})
#: The composed types of one subgraph, expanded (every field of every type reached, as
#: often as it is reached): at most this many fields, this deep, this many characters.
MAX_FIELDS = 2000
MAX_DEPTH = 8
MAX_SELECTION_CHARS = 64 * 1024

_read: dict[tuple[str, str, str], Contribution] = {}


@dataclass(frozen=True)
class SubgraphContribution(Contribution):
    """A subgraph's contribution: also knows the shape of its types (``graph``), to forward
    only what a request selects and may read (``gateway.forwarding``)."""

    graph: Graph = field(default_factory=dict)

    async def part(self, info: GraphQLResolveInfo[Any], root: Any) -> str:
        """The selection to forward for a field of ``root`` (a Resident): computed once per
        request, view and consent (a ``Resident`` field needing consent is asked for only
        for residents who gave it)."""
        context = info.context
        access = context.access
        view: str = root.view
        grant = access.policy.grant(access.principal.roles, view)
        if grant is None:  # Authorize let the field through, so the view has a grant
            return ""
        gated = [f"Resident.{n}" for n in self.graph["Resident"]]
        gated = [c for c in gated if c in grant.consent]
        consented = not gated or await access.consented(root.record.rrn, view)
        key = (self.dataset.name, view, consented)
        found: str | None = context.loaders.parts.get(key)
        if found is None:
            tree = selected(info, self.graph)
            found = render(tree, self.graph, grant, () if consented else gated)
            context.loaders.parts[key] = found
        return found


def where(agency: AgencyConfig) -> str:
    url = str(agency.url or agency.settings.get("url") or "")
    return f"[agencies.{agency.code}] (graphql subgraph {_without_userinfo(url)})"


def _without_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part (it may hold a credential)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an unreadable url)"
    if "@" not in parts.netloc:
        return url
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def contribution(agency: AgencyConfig, settings: Mapping[str, Any]) -> Contribution:
    """The agency's contribution, read once per process (per code, url and settings)."""
    url = str(settings.get("url") or "")
    key = (agency.code, url, repr(sorted(settings.items())))
    found = _read.get(key)
    if found is None:
        here = where(agency)
        if not url:
            raise ConfigError(f"{here}: a graphql agency needs url")
        cache = settings.get("sdl_cache")
        if cache is not None and not isinstance(cache, str):
            raise ConfigError(f"{here}: sdl_cache must be a file path (a string)")
        sdl = read_sdl(agency.code, settings, here, Path(cache) if cache else None)
        found = _read[key] = from_sdl(agency.code, sdl, here)
    return found


def read_sdl(code: str, settings: Mapping[str, Any], here: str, cache: Path | None = None) -> str:
    """``_service { sdl }``, asked once at start-up (in a thread with a loop of its own, so
    it works whether or not the caller runs one). With ``cache`` (the agency's ``sdl_cache``
    file), an SDL read is saved there, and a failed read starts from the last one saved, with
    a warning; it goes through the same checks as a fresh one."""

    async def ask() -> str:
        async with SubgraphAdapter(code, settings) as adapter:
            return await adapter.sdl()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            sdl = pool.submit(asyncio.run, ask()).result()
        except AgencyFailure as exc:
            saved = _saved_sdl(cache)
            if saved is None:
                raise ConfigError(f"{here}: cannot read its SDL: {exc}") from None
            log.warning("%s: cannot read its SDL (%s); starting from the copy saved in %s",
                        here, exc, cache)  # fmt: skip
            return saved
    if cache is not None:
        _save_sdl(cache, sdl, here)
    return sdl


def _saved_sdl(cache: Path | None) -> str | None:
    if cache is None:
        return None
    try:
        return cache.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _save_sdl(cache: Path, sdl: str, here: str) -> None:
    """Replace the saved copy whole (a crash mid-write leaves the previous one)."""
    partial = cache.with_name(cache.name + ".partial")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(sdl, encoding="utf-8")
        os.replace(partial, cache)
    except OSError as exc:
        log.warning("%s: cannot save its SDL to %s (%s)", here, cache, exc.strerror or exc)


def from_sdl(code: str, sdl: str, here: str) -> Contribution:
    """Build the contribution from the subgraph's SDL; ConfigError (one line) otherwise."""

    def refuse(problem: str) -> ConfigError:
        return ConfigError(f"{here}: {problem}")

    try:
        document = parse(sdl)
    except GraphQLError as exc:
        raise refuse(f"its SDL does not parse ({exc.message})") from None
    objects = _objects(document)
    resident = objects.get("Resident")
    if resident is None or not any(_keyed_by_rrn(node) for node in resident):
        raise refuse('its SDL has no entity Resident @key(fields: "rrn")')
    for node in resident:
        _check_directives(node.directives, "Resident", refuse)
    contributed = [
        f
        for node in resident
        for f in node.fields or ()
        if f.name.value != "rrn" and not _has(f, "external") and not _has(f, "inaccessible")
    ]
    if not contributed:
        raise refuse("it contributes no Resident field")

    enums = _enums(document)
    kinds = _kinds(document)
    built: dict[str, type] = {}
    selections: dict[str, str] = {}
    sizes: dict[str, tuple[int, int, int]] = {}  # fields, depth, characters, expanded
    shapes: Shape = {}
    graph: dict[str, dict[str, str | None]] = {"Resident": {}}

    def named_type(name: str, seen: tuple[str, ...], used_by: str) -> type:
        """The strawberry class for a named type a field uses: an object type or an enum."""
        if name in enums:
            return enum_type(name)
        if name in objects:
            return build(name, seen)
        kind = kinds.get(name, "an unknown type")
        raise refuse(f"field {used_by} is of {kind} {name} (not supported)")

    def enum_type(name: str) -> type:
        if name not in built:
            node = enums[name]
            if name.startswith("__"):
                raise refuse(f"enum {name}: names starting with __ are reserved by GraphQL")
            if not node.description:
                raise refuse(f"enum {name} has no description")
            _check_directives(node.directives, name, refuse, allowed={"tag"})
            for v in node.values or ():
                shown = f"{name}.{v.name.value}"
                _check_directives(v.directives, shown, refuse, allowed={"tag"})
                if v.name.value.startswith("__"):
                    raise refuse(f"enum value {shown}: names starting with __ are reserved")
            members = {
                v.name.value: strawberry.enum_value(
                    v.name.value, description=v.description.value if v.description else None
                )
                for v in node.values or ()
            }
            python = enum.Enum(name, members)  # type: ignore[misc]
            python.__module__ = __name__
            built[name] = strawberry.enum(python, name=name, description=node.description.value)
        return built[name]

    def build(name: str, seen: tuple[str, ...]) -> type:
        if name in built:
            return built[name]
        if name in seen:
            raise refuse(f"type {name} is recursive (not supported)")
        nodes = objects[name]
        if name.startswith("__"):
            raise refuse(f"type {name}: names starting with __ are reserved by GraphQL")
        for node in nodes:
            _check_directives(node.directives, name, refuse)
        description = _description(nodes)
        if not description:
            raise refuse(f"type {name} has no description")
        annotations: dict[str, Any] = {
            "view": strawberry.Private[str], "subject": strawberry.Private[str]
        }  # fmt: skip
        namespace: dict[str, Any] = {"__annotations__": annotations}
        parts: list[str] = []
        nests: list[str | None] = []
        kinds_of: list[tuple[str, bool]] = []
        shape: list[tuple[str, str, type | None]] = []
        graph[name] = subfields = {}
        fields_count, depth, chars = 0, 1, 0
        for f in (f for node in nodes for f in node.fields or ()):
            shown = f"{name}.{f.name.value}"
            _check_directives(f.directives, shown, refuse)
            if _has(f, "inaccessible"):
                continue  # hidden by the subgraph: neither composed nor asked for
            if f.name.value.startswith("__"):
                raise refuse(f"field {shown}: names starting with __ are reserved by GraphQL")
            if not f.description:
                raise refuse(f"field {shown} has no description")
            if f.arguments:
                raise refuse(f"field {shown} takes arguments (not supported)")
            python, nested = _annotation(
                f.type, lambda n, shown=shown: named_type(n, (*seen, name), shown)
            )
            attribute = _python_name(f.name.value)
            shape.append((attribute, f.name.value, None if nested is None else built[nested]))
            nested_object = None if nested is None or nested in enums else nested
            subfields[f.name.value] = nested_object
            kind = _named(f.type)
            many = _is_list(f.type)
            fields_count += 1
            chars += len(f.name.value) + 1
            if nested_object is not None:
                inner_fields, inner_depth, inner_chars = sizes[nested_object]
                fields_count += inner_fields
                depth = max(depth, inner_depth + 1)
                chars += inner_chars + 5
            if fields_count > MAX_FIELDS or depth > MAX_DEPTH or chars > MAX_SELECTION_CHARS:
                raise refuse(
                    f"type {name} expands to more than the gateway composes (at most "
                    f"{MAX_FIELDS} fields, {MAX_DEPTH} levels deep, counting a type each "
                    "time it is used)"
                )
            annotations[attribute] = python
            namespace[attribute] = strawberry.field(
                name=f.name.value, description=f.description.value
            )
            parts.append(f.name.value if nested_object is None else f"{f.name.value} {{ %s }}")
            nests.append(nested_object)
            kinds_of.append((kind, many))
        if not shape:
            raise refuse(f"type {name} has no field the gateway may compose")
        cls = type(name, (), namespace)
        cls.__module__ = __name__
        built[name] = strawberry.type(cls, name=name, description=description)
        shapes[built[name]] = [
            (attribute, graphql, nested, kind, many)
            for (attribute, graphql, nested), (kind, many) in zip(shape, kinds_of, strict=True)
        ]
        sizes[name] = (fields_count, depth, chars)
        # Bounded by the check above: the text is at most MAX_SELECTION_CHARS long.
        selections[name] = " ".join(
            part if nest is None else part % selections[nest]
            for part, nest in zip(parts, nests, strict=True)
        )
        return built[name]

    fields: list[ResidentField] = []
    record_fields: list[tuple[str, Any]] = []
    selection: list[str] = []
    total_fields, total_chars = 0, 0
    for node in resident:
        for f in node.fields or ():
            _check_directives(f.directives, f"Resident.{f.name.value}", refuse)
    for f in contributed:
        name = f.name.value
        shown = f"Resident.{name}"
        if name in _FEDERATION_FIELDS:
            continue
        if name.startswith("__"):
            raise refuse(f"field {shown}: names starting with __ are reserved by GraphQL")
        if not f.description:
            raise refuse(f"field {shown} has no description")
        if f.arguments:
            raise refuse(f"field {shown} takes arguments (not supported)")
        if keyword.iskeyword(name) or name in ("view", "subject"):
            raise refuse(f"field {shown}: its name cannot be a record field")
        named, many = _resident_field_type(f.type)
        if named is None:
            raise refuse(f"field {shown} is a list of lists (not supported)")
        record_fields.append((name, Any))
        if named in SCALARS:  # a leaf: served as the matching scalar (ID as String)
            leaf = SCALARS[named]
            build_leaf = _leaf(name, named, many)
            fields.append(ResidentField(name, leaf, f.description.value, build_leaf, many))
            selection.append(name)
            graph["Resident"][name] = None
            continue
        cls = named_type(named, (), shown)
        if named in objects:
            total_fields += 1 + sizes[named][0]
            total_chars += len(name) + 5 + sizes[named][2]
        if total_fields > MAX_FIELDS or total_chars > MAX_SELECTION_CHARS:
            raise refuse(
                f"its Resident fields expand to more than the gateway composes (at most "
                f"{MAX_FIELDS} fields, counting a type each time it is used)"
            )
        builder = (
            _leaf(name, named, many, cls) if named in enums else _builder(name, cls, many, shapes)
        )
        fields.append(ResidentField(name, cls, f.description.value, builder, many))
        if named in enums:
            selection.append(name)
            graph["Resident"][name] = None
        else:
            selection.append(f"{name} {{ {selections[named]} }}")
            graph["Resident"][name] = named
    if code in DATASETS:
        raise refuse(f"its dataset is named after the agency, and dataset {code} already exists")
    record = make_dataclass(
        f"{code.title().replace('_', '')}Entity", record_fields, frozen=True, slots=True
    )
    record.__selection__ = " ".join(selection)  # type: ignore[attr-defined]
    record.__module__ = __name__
    return SubgraphContribution(
        dataset=Dataset(code, record), types=tuple(built.values()), fields=tuple(fields),
        graph=graph,
    )  # fmt: skip


def _objects(document: DocumentNode) -> dict[str, list[ObjectTypeDefinitionNode]]:
    found: dict[str, list[Any]] = {}
    for node in document.definitions:
        if isinstance(node, ObjectTypeDefinitionNode | ObjectTypeExtensionNode):
            found.setdefault(node.name.value, []).append(node)
    return found


def _enums(document: DocumentNode) -> dict[str, EnumTypeDefinitionNode]:
    return {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, EnumTypeDefinitionNode)
    }


def _kinds(document: DocumentNode) -> dict[str, str]:
    """What each named type of the SDL is, in words, for refusals."""
    words: dict[type, str] = {
        ScalarTypeDefinitionNode: "custom scalar",
        InterfaceTypeDefinitionNode: "interface",
        UnionTypeDefinitionNode: "union",
        InputObjectTypeDefinitionNode: "input type",
    }
    named: list[Any] = [node for node in document.definitions if type(node) in words]
    return {node.name.value: words[type(node)] for node in named}


def _keyed_by_rrn(node: Any) -> bool:
    for directive in node.directives or ():
        if directive.name.value != "key":
            continue
        for argument in directive.arguments:
            value = argument.value
            if (
                argument.name.value == "fields"
                and isinstance(value, StringValueNode)
                and value.value.split() == ["rrn"]
            ):
                return True
    return False


def _has(node: FieldDefinitionNode, directive: str) -> bool:
    return any(d.name.value == directive for d in node.directives or ())


def _description(nodes: list[Any]) -> str | None:
    return next((n.description.value for n in nodes if getattr(n, "description", None)), None)


def _python_name(name: str) -> str:
    """The attribute holding a GraphQL field (the GraphQL name is given explicitly)."""
    return f"f_{name}"


def _annotation(node: TypeNode, build: Any, nullable: bool = True) -> tuple[Any, str | None]:
    """The Python annotation of a GraphQL type, and the object type it names (if any)."""
    if isinstance(node, NonNullTypeNode):
        return _annotation(node.type, build, nullable=False)
    nested: str | None = None
    if isinstance(node, ListTypeNode):
        inner, nested = _annotation(node.type, build)
        python: Any = list[inner]  # type: ignore[valid-type]
    else:
        assert isinstance(node, NamedTypeNode)
        name = node.name.value
        if name in SCALARS:
            python = SCALARS[name]
        else:
            python, nested = build(name), name
    return (python | None if nullable else python), nested


def _resident_field_type(node: TypeNode) -> tuple[str | None, bool]:
    """The named type of a contributed field and whether it is a list of it."""
    if isinstance(node, NonNullTypeNode):
        node = node.type
    many = isinstance(node, ListTypeNode)
    if isinstance(node, ListTypeNode):
        node = node.type
        if isinstance(node, NonNullTypeNode):
            node = node.type
    return (node.name.value if isinstance(node, NamedTypeNode) else None), many


#: Strawberry class -> per field: attribute, GraphQL name, nested strawberry class (object or
#: enum) or None, the named GraphQL type, and whether it is declared a list.
Shape = dict[type, list[tuple[str, str, type | None, str, bool]]]

_INT32 = 2**31


class _WrongType(AgencyFailure):
    """A value of the subgraph that is not of its declared type (never quoted: it may be a
    resident's data)."""


def _leaf(name: str, kind: str, many: bool, convert: type | None = None) -> Any:
    """The builder of a scalar or enum ``Resident`` field: the value (an enum's member),
    checked against its declared type."""

    def build(record: Any, view: str, subject: str) -> Any:
        value = _shaped(getattr(record, name), many, f"Resident.{name}")
        if value is None:
            return None
        if isinstance(value, list):
            return [_scalar(item, kind, convert, f"Resident.{name}") for item in value]
        return _scalar(value, kind, convert, f"Resident.{name}")

    return build


def _builder(name: str, cls: type, many: bool, shapes: Shape) -> Any:
    def build(record: Any, view: str, subject: str) -> Any:
        value = _shaped(getattr(record, name), many, f"Resident.{name}")
        return _value(value, cls, view, subject, shapes)

    return build


def _shaped(value: Any, many: bool, coordinate: str) -> Any:
    """``value`` as a list when the field is declared a list; refused when its shape (list
    or not) is not the declared one."""
    if value is None:
        return None
    is_list = isinstance(value, list | tuple)
    if is_list != many:
        raise _WrongType(f"{coordinate}: {'not ' if many else ''}a list where "
                         f"{'a list' if many else 'one value'} is declared")  # fmt: skip
    return list(value) if is_list else value


def _scalar(value: Any, kind: str, convert: type | None, coordinate: str) -> Any:
    """A leaf checked against its declared scalar or enum (``convert``: the enum)."""
    if value is None:
        return None
    if convert is not None:
        members = getattr(convert, "__members__", {})
        if not isinstance(value, str) or value not in members:
            raise _WrongType(f"{coordinate}: not a value of enum {kind}")
        return convert(value)
    fine = {
        "String": isinstance(value, str),
        "ID": isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)),
        "Boolean": isinstance(value, bool),
        "Int": isinstance(value, int) and not isinstance(value, bool) and -_INT32 <= value < _INT32,
        "Float": isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value),
    }.get(kind, False)
    if not fine:
        raise _WrongType(f"{coordinate}: not a {kind}")
    return str(value) if kind == "ID" else value


def _value(value: Any, cls: type | None, view: str, subject: str, shapes: Shape) -> Any:
    """A JSON value of the subgraph (of its declared list-or-object shape) as the strawberry
    objects of the composed types; a value not of its declared type is an agency failure."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_value(item, cls, view, subject, shapes) for item in value]
    assert cls is not None
    if not isinstance(value, dict):
        raise _WrongType(f"{getattr(cls, '__name__', 'an object')}: not an object")
    values: dict[str, Any] = {}
    for attribute, graphql, nested, kind, many in shapes[cls]:
        coordinate = f"{cls.__name__}.{graphql}"
        item = _shaped(value.get(graphql), many, coordinate)
        if nested is not None and not isinstance(nested, enum.EnumMeta):
            values[attribute] = _value(item, nested, view, subject, shapes)
        elif isinstance(item, list):
            values[attribute] = [_scalar(i, kind, nested, coordinate) for i in item]
        else:
            values[attribute] = _scalar(item, kind, nested, coordinate)
    return cls(**values, view=view, subject=subject)


def _named(node: TypeNode) -> str:
    """The named type under lists and non-nulls."""
    while not isinstance(node, NamedTypeNode):
        assert isinstance(node, NonNullTypeNode | ListTypeNode)
        node = node.type
    return node.name.value


def _is_list(node: TypeNode) -> bool:
    if isinstance(node, NonNullTypeNode):
        node = node.type
    return isinstance(node, ListTypeNode)


def _check_directives(
    directives: Any, coordinate: str, refuse: Any, allowed: Any = SUPPORTED_DIRECTIVES
) -> None:
    """Refuse a directive the gateway does not honour: composing the field as if it were
    not there would serve what the subgraph restricts (``@requiresScopes``, ``@policy``,
    ``@authenticated``) or answer wrongly (``@requires``, ``@override``, ...)."""
    for directive in directives or ():
        assert isinstance(directive, DirectiveNode)
        name = directive.name.value
        if name not in allowed:
            raise refuse(f"{coordinate} has directive @{name} (not supported)")
