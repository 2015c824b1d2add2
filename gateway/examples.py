"""Example operations per role, generated from the schema and the policy (never written by
hand, so they track both): for each query a role may call, a document selecting what that
role may read. GraphiQL offers them (``gateway.graphiql``)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    is_leaf_type,
    is_required_argument,
)

from gateway.policy import LOOKUPS, SELF, SELF_HOUSEHOLD, Grant, Policy

#: Object levels below the root field; the deepest level selects leaves only.
MAX_LEVELS = 3
#: The widest line an object's leaves are written on before they wrap.
LINE = 96


@dataclass(frozen=True)
class Example:
    """One ready-to-run operation: ``variables`` fill its ``$rrn``/``$rrns``."""

    name: str
    title: str
    query: str
    variables: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "query": self.query,
            "variables": self.variables,
        }


def examples_by_role(
    schema: GraphQLSchema,
    policy: Policy,
    sample_rrn: str | None = None,
    unavailable: Collection[str] = (),
) -> dict[str, list[Example]]:
    """Every role's examples, in the policy's order of roles and operations."""
    return {
        name: examples_for(schema, policy, name, sample_rrn, unavailable) for name in policy.roles
    }


def examples_for(
    schema: GraphQLSchema,
    policy: Policy,
    role_name: str,
    sample_rrn: str | None = None,
    unavailable: Collection[str] = (),
) -> list[Example]:
    """The queries ``role_name`` may call, each selecting what the role may read (lookups:
    one per purpose the role declares). Mutations are left out: an example never changes
    anything; so are operations this gateway cannot serve (``unavailable``: certificates
    without a signing key, say)."""
    role = policy.roles[role_name]
    query_type = schema.query_type
    assert query_type is not None
    out: list[Example] = []
    for field_name, field in query_type.fields.items():
        coordinate = f"Query.{field_name}"
        if coordinate not in role.operations or coordinate in unavailable:
            continue
        if coordinate in LOOKUPS:
            for view, grant in role.views.items():
                if view in (SELF, SELF_HOUSEHOLD):
                    continue
                example = _operation(policy, field_name, field, (grant, grant), view, sample_rrn)
                if example is not None:
                    out.append(example)
        else:
            # A citizen's own household shows the other members under SELF_HOUSEHOLD.
            grants = (role.views.get(SELF), role.views.get(SELF_HOUSEHOLD))
            example = _operation(policy, field_name, field, grants, None, sample_rrn)
            if example is not None:
                out.append(example)
    return out


def _operation(
    policy: Policy,
    field_name: str,
    field: GraphQLField,
    grants: tuple[Grant | None, Grant | None],
    purpose: str | None,
    sample_rrn: str | None,
) -> Example | None:
    arguments: list[str] = []
    declared: list[str] = []
    variables: dict[str, Any] = {}
    for arg_name, arg in field.args.items():
        if arg_name in ("rrn", "rrns"):
            declared.append(f"${arg_name}: {arg.type}")
            rrn = sample_rrn or ""
            variables[arg_name] = rrn if arg_name == "rrn" else [rrn]
            arguments.append(f"{arg_name}: ${arg_name}")
        elif purpose is not None and get_named_type(arg.type).name == "Purpose":
            arguments.append(f"{arg_name}: {purpose}")
        elif is_required_argument(arg):
            literal = _literal(arg.type)
            if literal is None:
                return None  # an argument we cannot make up: no example
            arguments.append(f"{arg_name}: {literal}")
    named = get_named_type(field.type)
    if is_leaf_type(named):
        body: list[str] = []
    else:
        assert isinstance(named, GraphQLObjectType)
        selection = _selection(policy, named, grants, level=1)
        if not selection:
            return None
        body = _render(selection, "    ")
    name = _pascal(field_name) + (f"For{_pascal(purpose)}" if purpose else "")
    header = f"query {name}" + (f"({', '.join(declared)})" if declared else "")
    call = field_name + (f"({', '.join(arguments)})" if arguments else "")
    notes = _consent_note(grants[0])
    lines = [*notes, header + " {", f"  {call}" + (" {" if body else "")]
    if body:
        lines += [*body, "  }"]
    lines.append("}")
    title = f"{field_name} for {purpose}" if purpose else field_name
    return Example(name=name, title=title, query="\n".join(lines) + "\n", variables=variables)


Selection = list[tuple[str, "Selection | None"]]


def _selection(
    policy: Policy,
    object_type: GraphQLObjectType,
    grants: tuple[Grant | None, Grant | None],
    level: int,
) -> Selection:
    """What the grant lets the caller read of ``object_type``; a Resident below the root
    (a household member) is read under the second grant."""
    if object_type.name == "Resident" and level > 1:
        grants = (grants[1], grants[1])
    grant = grants[0]
    out: Selection = []
    for name, field in object_type.fields.items():
        coordinate = f"{object_type.name}.{name}"
        if (
            object_type.name in policy.resident_types
            and coordinate != "Resident.rrn"
            and (grant is None or coordinate not in grant.fields)
        ):
            continue
        if any(is_required_argument(arg) for arg in field.args.values()):
            continue
        named = get_named_type(field.type)
        if is_leaf_type(named):
            out.append((name, None))
        elif isinstance(named, GraphQLObjectType) and level < MAX_LEVELS:
            inner = _selection(policy, named, grants, level + 1)
            if inner:
                out.append((name, inner))
    return out


def _render(selection: Selection, indent: str) -> list[str]:
    """Leaves on shared lines, then one line per object (inline when it fits)."""
    lines: list[str] = []
    leaves = [name for name, inner in selection if inner is None]
    line = ""
    for leaf in leaves:
        if line and len(indent) + len(line) + 1 + len(leaf) > LINE:
            lines.append(indent + line)
            line = leaf
        else:
            line = f"{line} {leaf}" if line else leaf
    if line:
        lines.append(indent + line)
    for name, inner in selection:
        if inner is None:
            continue
        inline = _inline(inner)
        if inline is not None and len(indent) + len(name) + len(inline) + 1 <= LINE:
            lines.append(f"{indent}{name} {inline}")
        else:
            lines += [f"{indent}{name} {{", *_render(inner, indent + "  "), f"{indent}}}"]
    return lines


def _inline(selection: Selection) -> str | None:
    if any(inner is not None for _, inner in selection):
        return None
    return "{ " + " ".join(name for name, _ in selection) + " }"


def _literal(arg_type: GraphQLInputType) -> str | None:
    """A value for a required argument we know nothing about: an enum's first value (or a
    list of it), else nothing."""
    inner = arg_type.of_type if isinstance(arg_type, GraphQLNonNull) else arg_type
    if isinstance(inner, GraphQLList):
        item = _literal(inner.of_type)
        return None if item is None else f"[{item}]"
    if isinstance(inner, GraphQLEnumType) and inner.values:
        first: str = next(iter(inner.values))
        return first
    return None


def _consent_note(grant: Grant | None) -> list[str]:
    if grant is None or not grant.consent:
        return []
    fields = ", ".join(sorted(c.partition(".")[2] for c in grant.consent))
    return [f"# {fields}: CONSENT_REQUIRED unless the resident consented to your agency"]


def _pascal(name: str) -> str:
    if "_" in name or name.isupper():
        return "".join(part.capitalize() for part in name.lower().split("_"))
    return name[0].upper() + name[1:]
