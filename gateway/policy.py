"""Authorization policy as data: roles -> operations, views (purposes) -> readable fields.

A *view* is what a lookup is for: one of the ``Purpose`` values declared by officials, or
``SELF`` (a citizen's own record through ``me``) and ``SELF_HOUSEHOLD`` (the other members of
that citizen's household). Fields are GraphQL coordinates, ``Type.field``; ``Type.*`` means every
field of the type. Anything not granted is forbidden.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import ConfigError

SELF = "SELF"
SELF_HOUSEHOLD = "SELF_HOUSEHOLD"

#: Object types that are neither roots nor resident data: reached only through root
#: operations the policy grants (citizens' own logs and consents, agency status). Resident
#: data types are not listed anywhere: they are every type reachable from ``Resident``
#: (``gateway.graphql_schema.resident_types``), and a type that is in neither set stops
#: start-up.
SERVICE_TYPES = frozenset(
    {"AgencyStatus", "AccessLogConnection", "AccessLogEdge", "AccessLogEntry", "PageInfo",
     "Consent"}
)  # fmt: skip
#: Resident fields that may require consent (those read from an agency).
CONSENTABLE = frozenset(
    {"Resident.household", "Resident.insurance", "Resident.taxes", "Resident.pension",
     "Resident.militaryService", "Resident.address"}
)  # fmt: skip


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


def load(
    path: Path,
    schema_fields: Mapping[str, frozenset[str]],
    views: Iterable[str],
    *,
    resident_types: frozenset[str],
) -> Policy:
    """Read and check a policy file against the schema's types and the known views."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"policy file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse(raw, schema_fields, views, source=str(path), resident_types=resident_types)


def parse(
    raw: Mapping[str, Any],
    schema_fields: Mapping[str, frozenset[str]],
    views: Iterable[str],
    source: str = "<policy>",
    *,
    resident_types: frozenset[str],
) -> Policy:
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
        extra = set(table) - {"description", "operations", "views"}
        if extra:
            raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(extra))}")
        operations = frozenset(
            _coordinates(
                table.get("operations", []), schema_fields, where, resident_types, roots=True
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
                _coordinates(grant_raw.get("fields", []), schema_fields, gwhere, resident_types)
            )
            consent = frozenset(
                _coordinates(grant_raw.get("consent", []), schema_fields, gwhere, resident_types)
            )
            if consent - CONSENTABLE:
                stray = ", ".join(sorted(consent - CONSENTABLE))
                raise ConfigError(
                    f"{gwhere}: consent applies to agency fields of Resident only "
                    f"({', '.join(sorted(CONSENTABLE))}), not {stray}"
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
        roles[name] = Role(name, str(table.get("description", "")), operations, grants)
    return Policy(roles, source, resident_types=resident_types)


def _coordinates(
    entries: Any,
    schema_fields: Mapping[str, frozenset[str]],
    where: str,
    resident_types: frozenset[str],
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
            out += [f"{type_name}.{f}" for f in sorted(fields)]
        elif field_name in fields:
            out.append(entry)
        else:
            raise ConfigError(f"{where}: {type_name} has no field {field_name!r}")
    return out
