"""``gateway schema diff``: what changed between two schemas, and what it means for clients.

Breaking and dangerous changes are graphql-core's (``find_breaking_changes``,
``find_dangerous_changes``); the safe ones (additions, descriptions, deprecations) are listed
here so a reviewer sees the whole change. A schema is read from SDL or from an introspection
result (JSON, as ``gateway schema --format json`` writes it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    build_client_schema,
    build_schema,
    find_breaking_changes,
    find_dangerous_changes,
    introspection_from_schema,
    is_required_input_field,
    is_specified_scalar_type,
)

from gateway.config import ConfigError


class Severity(Enum):
    BREAKING = "breaking"  # existing clients' operations fail
    DANGEROUS = "dangerous"  # existing clients may behave differently
    SAFE = "safe"  # existing clients are unaffected


@dataclass(frozen=True)
class Change:
    severity: Severity
    kind: str
    description: str

    def line(self) -> str:
        return f"{self.severity.name:<10} {self.kind:<34} {self.description}"


def introspection(schema: GraphQLSchema) -> dict[str, Any]:
    """The introspection result a client's introspection query gets (``{"data": ...}``)."""
    return {
        "data": introspection_from_schema(
            schema,
            specified_by_url=True,
            directive_is_repeatable=True,
            input_value_deprecation=True,
        )
    }


def load(path: Path) -> GraphQLSchema:
    """A schema from an SDL file, or from an introspection result (a .json file, with or
    without its ``data`` wrapper). ConfigError naming the file when it is neither."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        if path.suffix != ".json" and not text.lstrip().startswith("{"):
            return build_schema(text)
        data = json.loads(text)
    except (GraphQLError, TypeError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not a schema: {message}") from None
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        data = data["data"]
    if not isinstance(data, dict) or not isinstance(data.get("__schema"), dict):
        raise ConfigError(f"{path}: JSON without __schema (not an introspection result)")
    try:
        return build_client_schema(data)  # type: ignore[arg-type]
    except (GraphQLError, TypeError, ValueError, KeyError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not a schema: {message}") from None


def diff(old: GraphQLSchema, new: GraphQLSchema) -> list[Change]:
    """Every change from ``old`` to ``new``, breaking first, then dangerous, then safe."""
    changes = [
        Change(Severity.BREAKING, c.type.name, c.description)
        for c in find_breaking_changes(old, new)
    ]
    changes += [
        Change(Severity.DANGEROUS, c.type.name, c.description)
        for c in find_dangerous_changes(old, new)
    ]
    return changes + _safe_changes(old, new)


Note = Callable[[str, str], None]


def _safe_changes(old: GraphQLSchema, new: GraphQLSchema) -> list[Change]:
    out: list[Change] = []

    def safe(kind: str, description: str) -> None:
        out.append(Change(Severity.SAFE, kind, description))

    for name, new_type in _named_types(new).items():
        old_type = _named_types(old).get(name)
        if old_type is None:
            if not is_specified_scalar_type(new_type):  # Int, String...: always there
                safe("TYPE_ADDED", f"{name} was added.")
            continue
        if type(old_type) is not type(new_type):
            continue  # TYPE_CHANGED_KIND: breaking, listed by graphql-core
        if old_type.description != new_type.description:
            safe("DESCRIPTION_CHANGED", f"{name} has a new description.")
        if isinstance(new_type, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(old_type, GraphQLObjectType | GraphQLInterfaceType)
            for field_name, field in new_type.fields.items():
                coordinate = f"{name}.{field_name}"
                before = old_type.fields.get(field_name)
                if before is None:
                    safe("FIELD_ADDED", f"{coordinate} was added.")
                    continue
                _described(safe, coordinate, before.description, field.description)
                _deprecated(safe, coordinate, before.deprecation_reason, field.deprecation_reason)
                for arg_name, arg in field.args.items():
                    old_arg = before.args.get(arg_name)
                    if old_arg is not None:
                        _described(
                            safe, f"{coordinate}({arg_name}:)", old_arg.description, arg.description
                        )
        elif isinstance(new_type, GraphQLInputObjectType):
            assert isinstance(old_type, GraphQLInputObjectType)
            for field_name, input_field in new_type.fields.items():
                coordinate = f"{name}.{field_name}"
                before_input = old_type.fields.get(field_name)
                if before_input is None:
                    if not is_required_input_field(input_field):  # required: breaking
                        safe("OPTIONAL_INPUT_FIELD_ADDED", f"{coordinate} was added (optional).")
                    continue
                _described(safe, coordinate, before_input.description, input_field.description)
        elif isinstance(new_type, GraphQLEnumType):
            assert isinstance(old_type, GraphQLEnumType)
            for value_name, value in new_type.values.items():
                old_value = old_type.values.get(value_name)
                if old_value is not None:  # an added value is dangerous: graphql-core's
                    coordinate = f"{name}.{value_name}"
                    _described(safe, coordinate, old_value.description, value.description)
                    _deprecated(
                        safe, coordinate, old_value.deprecation_reason, value.deprecation_reason
                    )
    old_directives = {d.name for d in old.directives}
    for directive in new.directives:
        if directive.name not in old_directives:
            safe("DIRECTIVE_ADDED", f"@{directive.name} was added.")
    return out


def _named_types(schema: GraphQLSchema) -> dict[str, GraphQLNamedType]:
    return {name: t for name, t in schema.type_map.items() if not name.startswith("__")}


def _described(safe: Note, coordinate: str, before: str | None, after: str | None) -> None:
    if (before or "") != (after or ""):
        safe("DESCRIPTION_CHANGED", f"{coordinate} has a new description.")


def _deprecated(safe: Note, coordinate: str, before: str | None, after: str | None) -> None:
    if before is None and after is not None:
        safe("DEPRECATED", f"{coordinate} was deprecated: {after}")
    elif before is not None and after is None:
        safe("DEPRECATION_REMOVED", f"{coordinate} is no longer deprecated.")
