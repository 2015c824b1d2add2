"""Authorization policy as data: roles -> operations, views (purposes) -> readable fields.

A *view* is what a lookup is for: one of the ``Purpose`` values declared by officials, or
``SELF`` (a citizen's own record through ``me``) and ``SELF_HOUSEHOLD`` (the other members of
that citizen's household). Fields are GraphQL coordinates, ``Type.field``; ``Type.*`` means every
field of the type that the gateway itself defines: fields contributed by agency packages and
GraphQL subgraphs (``gateway.graphql_schema.contributed_fields``) are granted only by name, so
a field an agency adds later is never granted unseen (``Vehicle.*`` on a contributed type is
refused). Anything not granted is forbidden.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import ConfigError
from gateway.errors import Forbidden, quote
from gateway.limits import FIELD_DATASET
from gateway.principal import MAX_AGENCY, is_agency_code

SELF = "SELF"
SELF_HOUSEHOLD = "SELF_HOUSEHOLD"

#: Object types that are neither roots nor resident data: reached only through root
#: operations the policy grants (citizens' own logs and consents, agency status). Resident
#: data types are not listed anywhere: they are every type reachable from ``Resident``
#: (``gateway.graphql_schema.resident_types``), and a type that is in neither set stops
#: start-up.
SERVICE_TYPES = frozenset(
    {"AgencyStatus", "AccessLogConnection", "AccessLogEdge", "AccessLogEntry", "PageInfo",
     "Consent", "Statistics", "StatisticsCell", "Permissions", "Certificate"}
)  # fmt: skip
#: Our Resident fields that may require consent (those read from an agency), derived from
#: the cost model's field -> dataset table. A schema with contributed fields passes its own
#: set to ``parse`` (``gateway.graphql_schema.agency_fields``).
CONSENTABLE = frozenset(f"Resident.{name}" for kind, name in FIELD_DATASET if kind == "Resident")


#: Operations that look residents up: the agencies of roles that may use them are the ones
#: a resident may consent to.
LOOKUPS = frozenset({"Query.resident", "Query.residents"})


#: How the access line appended to field descriptions begins (``Policy.access_line``).
ACCESS = "Access:"

#: Operations outside GraphQL that the policy also governs.
EXTRA_OPERATIONS: dict[str, frozenset[str]] = {"Events": frozenset({"invalidate"})}


@dataclass(frozen=True)
class Grant:
    """What one view lets a caller read."""

    fields: frozenset[str] = frozenset()
    consent: frozenset[str] = frozenset()
    unmasked_rrn: bool = False

    @property
    def shows_birth_date(self) -> bool:
        """A masked RRN shows its first six digits only where the birth date is granted."""
        return "Resident.birthDate" in self.fields

    @property
    def shows_seventh_digit(self) -> bool:
        """The 7th digit tells sex, foreign registration and the century of birth: shown only
        where all three (sex, isForeignResident, birthDate) are granted."""
        return self.shows_birth_date and {"Resident.sex", "Resident.isForeignResident"} <= (
            self.fields
        )

    def merge(self, other: Grant) -> Grant:
        # A field needs consent only if every role granting it asks for consent.
        consent = (self.consent | other.consent) - (
            (self.fields - self.consent) | (other.fields - other.consent)
        )
        return Grant(self.fields | other.fields, consent, self.unmasked_rrn or other.unmasked_rrn)


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    operations: frozenset[str]
    views: Mapping[str, Grant] = field(default_factory=dict)
    #: The agency codes a principal holding this role may claim; None: the role acts for no
    #: agency (a token holding only such roles claims none).
    agencies: frozenset[str] | None = None


class Policy:
    def __init__(
        self,
        roles: Mapping[str, Role],
        source: str = "<policy>",
        *,
        resident_types: frozenset[str],
    ) -> None:
        self.roles = dict(roles)
        self.source = source
        #: Types whose every field is checked against the view's grant (derived from the
        #: schema: everything reachable from Resident).
        self.resident_types = resident_types
        self._grants: dict[tuple[tuple[str, ...], str], Grant | None] = {}

    @property
    def consent_agencies(self) -> frozenset[str]:
        """The agencies a resident may consent to: those of the roles that look residents up."""
        return frozenset(
            code
            for role in self.roles.values()
            if role.agencies and role.operations & LOOKUPS
            for code in role.agencies
        )

    def admit(self, roles: Iterable[str], agency: str | None) -> None:
        """Raise Forbidden unless every role is known and the agency claim is one the roles
        may make: every role that acts for agencies must list it, and at least one must."""
        roles = list(roles)
        for name in roles:
            if name not in self.roles:
                raise Forbidden(
                    f"The token names a role this gateway does not know: {quote(name)}."
                )
        if agency is None:
            return
        bound = [self.roles[name] for name in roles if self.roles[name].agencies is not None]
        if not bound:
            held = ", ".join(roles) or "no role"
            raise Forbidden(
                f"The token claims the agency {quote(agency)}, but its roles ({held}) "
                "act for no agency."
            )
        for role in bound:
            assert role.agencies is not None
            if agency not in role.agencies:
                raise Forbidden(
                    f"The role {role.name} may not claim the agency {quote(agency)} "
                    f"(it may claim: {', '.join(sorted(role.agencies))})."
                )

    def allows_operation(self, roles: Iterable[str], coordinate: str) -> bool:
        return any(coordinate in r.operations for r in self._known(roles))

    def views_of(self, roles: Iterable[str]) -> frozenset[str]:
        return frozenset(v for r in self._known(roles) for v in r.views)

    def grant(self, roles: tuple[str, ...], view: str) -> Grant | None:
        """The merged grant of the caller's roles for a view; None if none may use it."""
        key = (roles, view)
        if key not in self._grants:
            merged: Grant | None = None
            for role in self._known(roles):
                grant = role.views.get(view)
                if grant is not None:
                    merged = grant if merged is None else merged.merge(grant)
            self._grants[key] = merged
        return self._grants[key]

    def _known(self, roles: Iterable[str]) -> list[Role]:
        return [self.roles[r] for r in roles if r in self.roles]

    def access_line(self, coordinate: str) -> str:
        """Who may use a root operation, or read a resident data field and for which views
        (and where the resident's consent is needed): the line every such field's description
        ends with (``gateway.graphql_schema.describe_access``)."""
        type_name = coordinate.partition(".")[0]
        if type_name not in self.resident_types:
            callers = [r.name for r in self.roles.values() if coordinate in r.operations]
            return f"{ACCESS} roles {', '.join(callers)}." if callers else f"{ACCESS} no role."
        if coordinate == "Resident.rrn":
            whole = [
                f"{role.name} for {view}"
                for role in self.roles.values()
                for view, grant in role.views.items()
                if grant.unmasked_rrn
            ]
            return (
                f"{ACCESS} every caller who reads a resident; shown whole to "
                f"{'; '.join(whole) or 'no role'}, masked to everyone else."
            )
        readers = []
        for role in self.roles.values():
            views = [
                view + (" (consent)" if coordinate in grant.consent else "")
                for view, grant in role.views.items()
                if coordinate in grant.fields
            ]
            if views:
                readers.append(f"{role.name} for {', '.join(views)}")
        if not readers:
            return f"{ACCESS} no role (FORBIDDEN to everyone)."
        return f"{ACCESS} {'; '.join(readers)}."

    def unreadable(self, schema_fields: Mapping[str, frozenset[str]]) -> list[str]:
        """Resident data fields no role may read in any view: FORBIDDEN to everyone.
        ``Resident.rrn`` is always readable (masked) and is not listed."""
        granted = {
            name for role in self.roles.values() for grant in role.views.values()
            for name in grant.fields
        }  # fmt: skip
        return [
            f"{type_name}.{name}"
            for type_name in sorted(self.resident_types)
            for name in sorted(schema_fields.get(type_name, ()))
            if f"{type_name}.{name}" not in granted and f"{type_name}.{name}" != "Resident.rrn"
        ]


def load(
    path: Path,
    schema_fields: Mapping[str, frozenset[str]],
    views: Iterable[str],
    *,
    resident_types: frozenset[str],
    consentable: frozenset[str] = CONSENTABLE,
    contributed: Mapping[str, str] | None = None,
) -> Policy:
    """Read and check a policy file against the schema's types and the known views.
    ``contributed``: coordinates contributed by agencies -> who contributes them; wildcards
    do not grant them."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"policy file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse(
        raw,
        schema_fields,
        views,
        source=str(path),
        resident_types=resident_types,
        consentable=consentable,
        contributed=contributed,
    )


def parse(
    raw: Mapping[str, Any],
    schema_fields: Mapping[str, frozenset[str]],
    views: Iterable[str],
    source: str = "<policy>",
    *,
    resident_types: frozenset[str],
    consentable: frozenset[str] = CONSENTABLE,
    contributed: Mapping[str, str] | None = None,
) -> Policy:
    contributed = contributed or {}
    known_views = set(views) | {SELF, SELF_HOUSEHOLD}
    unknown = set(raw) - {"roles"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s): {', '.join(sorted(unknown))}")
    roles_raw = raw.get("roles")
    if not isinstance(roles_raw, dict) or not roles_raw:
        raise ConfigError(f"{source}: declare at least one [roles.<name>]")
    roles = {}
    for name, table in roles_raw.items():
        where = f"{source}: [roles.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        extra = set(table) - {"description", "operations", "views", "agencies"}
        if extra:
            raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(extra))}")
        operations = frozenset(
            _coordinates(
                table.get("operations", []), schema_fields, where, resident_types, {}, roots=True
            )
        )
        grants = {}
        for view, grant_raw in table.get("views", {}).items():
            gwhere = f"{where} view {view}"
            if view not in known_views:
                raise ConfigError(
                    f"{gwhere}: unknown purpose (known: {', '.join(sorted(known_views))})"
                )
            extra = set(grant_raw) - {"fields", "consent", "unmasked_rrn"}
            if extra:
                raise ConfigError(f"{gwhere}: unknown key(s): {', '.join(sorted(extra))}")
            fields = frozenset(
                _coordinates(
                    grant_raw.get("fields", []), schema_fields, gwhere, resident_types, contributed
                )
            )
            consent = frozenset(
                _coordinates(
                    grant_raw.get("consent", []), schema_fields, gwhere, resident_types, contributed
                )
            )
            if consent - consentable:
                stray = ", ".join(sorted(consent - consentable))
                raise ConfigError(
                    f"{gwhere}: consent applies to agency fields of Resident only "
                    f"({', '.join(sorted(consentable))}), not {stray}"
                )
            if consent - fields:
                raise ConfigError(
                    f"{gwhere}: consent lists fields the view does not grant: "
                    f"{', '.join(sorted(consent - fields))}"
                )
            unmasked = grant_raw.get("unmasked_rrn", False)
            if not isinstance(unmasked, bool):
                raise ConfigError(f"{gwhere}: unmasked_rrn must be true or false")
            grants[view] = Grant(fields, consent, unmasked)
        agencies = _agencies(table["agencies"], where) if "agencies" in table else None
        if agencies is None and any(g.consent for g in grants.values()):
            raise ConfigError(
                f"{where}: its views ask for consent, which is honoured for the caller's "
                "agency only: declare agencies = [...]"
            )
        if agencies is None and operations & _EXTRA_COORDINATES:
            raise ConfigError(
                f"{where}: {', '.join(sorted(operations & _EXTRA_COORDINATES))} acts for the "
                "caller's agency: declare agencies = [...]"
            )
        roles[name] = Role(name, str(table.get("description", "")), operations, grants, agencies)
    return Policy(roles, source, resident_types=resident_types)


_EXTRA_COORDINATES = frozenset(
    f"{kind}.{name}" for kind, names in EXTRA_OPERATIONS.items() for name in names
)


def _agencies(entries: Any, where: str) -> frozenset[str]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: agencies must be a non-empty list of agency codes")
    for entry in entries:
        if not is_agency_code(entry):
            shown = quote(entry) if isinstance(entry, str) else repr(entry)
            raise ConfigError(
                f"{where}: agencies: {shown} is not an agency code (lower-case letters, "
                f"digits, - and _, starting with a letter, at most {MAX_AGENCY} characters)"
            )
    if len(set(entries)) != len(entries):
        raise ConfigError(f"{where}: agencies lists a code twice")
    return frozenset(entries)


def _coordinates(
    entries: Any,
    schema_fields: Mapping[str, frozenset[str]],
    where: str,
    resident_types: frozenset[str],
    contributed: Mapping[str, str],
    roots: bool = False,
) -> list[str]:
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"{where}: expected a list of Type.field names")
    out: list[str] = []
    for entry in entries:
        type_name, _, field_name = entry.partition(".")
        allowed_types = {"Query", "Mutation", *EXTRA_OPERATIONS} if roots else resident_types
        known = {**schema_fields, **EXTRA_OPERATIONS}
        if type_name not in allowed_types or type_name not in known:
            raise ConfigError(
                f"{where}: {entry!r} names no "
                f"{'root operation' if roots else 'resident data field'} "
                f"(types: {', '.join(sorted(allowed_types))})"
            )
        fields = known[type_name]
        if field_name == "*":
            # Fields an agency contributes are granted by name only: it may add any later.
            own = [f"{type_name}.{f}" for f in sorted(fields)]
            theirs = [c for c in own if c in contributed]
            if theirs and len(theirs) == len(own):
                raise ConfigError(
                    f"{where}: {entry!r}: {type_name} is contributed by "
                    f"{contributed[theirs[0]]}; name the fields to grant ({', '.join(theirs)}): "
                    "a wildcard would grant fields the agency adds later"
                )
            out += [c for c in own if c not in contributed]
        elif field_name in fields:
            out.append(entry)
        else:
            raise ConfigError(f"{where}: {type_name} has no field {field_name!r}")
    return out
