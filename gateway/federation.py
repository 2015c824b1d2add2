"""Datasets, GraphQL types and ``Resident`` fields contributed by installed agency packages.

An agency package adds a dataset to the gateway without a fork: it registers a
:class:`Contribution` under the ``gateway.datasets`` entry-point group, named after its dataset::

    [project.entry-points."gateway.datasets"]
    land_parcels = "land_registry.contribution:CONTRIBUTION"

and its adapter under ``gateway.adapters`` as usual. When the configuration names the dataset
(``[agencies.<code>] datasets = ["land_parcels"]``, or ``[sources] unserved``) its types and
fields join the schema at start-up, and are served exactly as the built-in ones: through the
request's DataLoaders (one call per agency per request), the cache, the circuit breaker,
provenance, field-level policy, consent, audit and the cost model (the serving agency's
``cost_weight``). Installed but not configured, a contribution changes nothing.

Anything wrong with a package (it does not import, has the wrong shape, leaves a type or field
undescribed, or names a dataset, type or field that already exists) stops start-up with one
line naming the entry point and the problem.
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from graphql import (
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLString,
)
from strawberry.types.enum import StrawberryEnumDefinition
from strawberry.types.private import is_private

from adapters.records import DATASETS, Dataset
from gateway.config import Config, ConfigError
from gateway.errors import AgencyError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import strawberry

ENTRY_POINT_GROUP = "gateway.datasets"
#: The version of this contract; a contribution declaring another is refused.
API_VERSION = 1
#: Key in a contributed ``GraphQLField.extensions`` naming the dataset it reads (cost model).
DATASET_EXTENSION = "gateway.dataset"

#: Scalars a ``Resident`` field may have, and their GraphQL types.
LEAVES: dict[type, GraphQLScalarType] = {
    str: GraphQLString, int: GraphQLInt, float: GraphQLFloat, bool: GraphQLBoolean
}  # fmt: skip

_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_FIELD_NAME = re.compile(r"^[a-z][A-Za-z0-9]{0,62}$")

#: Builds the GraphQL object for one record: ``build(record, view, subject)``. ``view`` and
#: ``subject`` must be stored on the object (``strawberry.Private`` attributes of those names):
#: field-level policy and audit read them.
Builder = Callable[[Any, str, str], Any]
#: Starts a demo source for the embedded demo; yields agency code -> its ``[agencies.<code>]``
#: table, e.g. ``{"land": {"kind": "landregistry", "url": "http://127.0.0.1:8123",
#: "datasets": ["land_parcels"]}}``.
DemoSource = Callable[[], AbstractContextManager[Mapping[str, Mapping[str, Any]]]]


@dataclass(frozen=True)
class ResidentField:
    """One field added to ``Resident``. Its GraphQL type is ``[Type!]`` for a ``many`` dataset
    and ``Type`` otherwise, always nullable (a failing agency blanks only its own fields).

    ``name``: camelCase, unique on ``Resident`` (``landParcels``). ``type``: a strawberry object
    type of this contribution. ``description``: what analysts read in GraphiQL (required).
    ``build``: record -> object (see :data:`Builder`). ``many``: whether the field is a list
    of ``type``; None (the default) follows the dataset (a GraphQL subgraph's record holds
    several fields, some lists and some not)."""

    name: str
    type: type
    description: str
    build: Builder
    many: bool | None = None


@dataclass(frozen=True)
class Contribution:
    """What an agency package adds: one dataset, the GraphQL types that show its records and
    the ``Resident`` fields that expose them.

    * ``dataset``: ``adapters.records.Dataset(name, record, many)``; ``name`` is snake_case,
      equals the entry point's name and is unique among all datasets. Keys are RRNs.
    * ``types``: strawberry object types (``@strawberry.type(description=...)``), each with
      ``view: strawberry.Private[str]`` and ``subject: strawberry.Private[str]``, every field
      described, and strawberry enums (``strawberry.enum(..., description=...)``); their
      names must not exist in the schema already. Policies name object types' fields as
      ``Type.field`` like any resident data type (``LandParcel.*``).
    * ``fields``: the ``Resident`` fields; policies grant them as ``Resident.<name>``, and may
      require consent for them.
    * ``demo``: optional; lets ``gateway serve`` without a config file run this agency too.
    * ``api``: the version of this contract the package was written for (:data:`API_VERSION`).
    """

    dataset: Dataset
    types: tuple[type, ...]
    fields: tuple[ResidentField, ...]
    demo: DemoSource | None = None
    api: int = API_VERSION


def installed() -> list[tuple[str, Contribution]]:
    """Every installed contribution, checked on its own, with the entry point naming it."""
    found: list[tuple[str, Contribution]] = []
    names = set(DATASETS)
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = _where(ep)
        contribution = _load(ep, where)
        if contribution.dataset.name in names:
            raise ConfigError(f"{where}: dataset {contribution.dataset.name} already exists")
        names.add(contribution.dataset.name)
        found.append((where, contribution))
    return found


def datasets(config: Config | None = None) -> dict[str, Dataset]:
    """Every known dataset: ours, the installed contributions' and, given a configuration,
    those of its GraphQL subgraph agencies."""
    found = {**DATASETS, **{c.dataset.name: c.dataset for _, c in installed()}}
    if config is not None:
        found.update({c.dataset.name: c.dataset for _, c in subgraphs(config)})
    return found


def enabled(config: Config) -> list[tuple[str, Contribution]]:
    """The installed contributions whose dataset the configuration names, and the
    contributions of its GraphQL subgraph agencies (``kind = "graphql"``)."""
    from gateway.config import sources

    named = set(sources(config, complete=False)) | set(config.sources.unserved)
    found = [(where, c) for where, c in installed() if c.dataset.name in named]
    return found + subgraphs(config)


def subgraphs(config: Config) -> list[tuple[str, Contribution]]:
    """What each ``kind = "graphql"`` agency contributes, read from its SDL (once per
    process) and checked as a package's contribution is (``gateway.subgraph``)."""
    from gateway import subgraph
    from gateway.agencies import adapter_settings

    found: list[tuple[str, Contribution]] = []
    for agency in config.agencies.values():
        if agency.kind == subgraph.KIND:
            where = subgraph.where(agency)
            c = subgraph.contribution(agency, adapter_settings(agency))
            _check(c, agency.code, where)
            found.append((where, c))
    return found


def _where(ep: EntryPoint) -> str:
    package = ep.dist.name if ep.dist is not None else "?"
    return f"package {package} (entry point {ENTRY_POINT_GROUP}:{ep.name} = {ep.value})"


def _load(ep: EntryPoint, where: str) -> Contribution:
    try:
        loaded = ep.load()
    except Exception as exc:
        raise ConfigError(f"{where}: cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not isinstance(loaded, Contribution):
        raise ConfigError(f"{where}: is a {type(loaded).__name__}, not a Contribution")
    _check(loaded, ep.name, where)
    return loaded


def _check(c: Contribution, name: str, where: str) -> None:
    def refuse(problem: str) -> ConfigError:
        return ConfigError(f"{where}: {problem}")

    if c.api != API_VERSION:
        raise refuse(f"written for contract version {c.api}; this gateway has {API_VERSION}")
    if not isinstance(c.dataset, Dataset) or c.dataset.name != name:
        raise refuse(f"dataset must be a Dataset named {name!r} like its entry point")
    if not _DATASET_NAME.match(name):
        raise refuse(f"dataset name {name!r} is not snake_case")
    if not c.types or not c.fields:
        raise refuse("contributes no types or no fields")
    for cls in c.types:
        definition = getattr(cls, "__strawberry_definition__", None)
        if isinstance(definition, StrawberryEnumDefinition):
            if not definition.description:
                raise refuse(f"enum {definition.name} has no description")
            continue
        if definition is None or definition.is_input or definition.is_interface:
            raise refuse(f"{getattr(cls, '__name__', cls)!r} is not a strawberry object type")
        if not definition.description:
            raise refuse(f"type {definition.name} has no description")
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except Exception as exc:
            raise refuse(f"type {definition.name}: {type(exc).__name__}: {exc}") from None
        private = {name for name, hint in hints.items() if is_private(hint)}
        if not {"view", "subject"} <= private:
            raise refuse(
                f"type {definition.name} must carry view and subject "
                "(strawberry.Private[str]): policy and audit read them"
            )
        for f in definition.fields:
            if f.python_name not in private and not f.description:
                shown = f"{definition.name}.{f.graphql_name or f.python_name}"
                raise refuse(f"field {shown} has no description")
    for f in c.fields:
        if not _FIELD_NAME.match(f.name):
            raise refuse(f"Resident field name {f.name!r} is not camelCase")
        if not f.description:
            raise refuse(f"field Resident.{f.name} has no description")
        if f.type not in c.types and f.type not in LEAVES:
            raise refuse(f"field Resident.{f.name} has a type the contribution does not list")
        if not callable(f.build):
            raise refuse(f"field Resident.{f.name}: build is not callable")


def object_types(contributions: Sequence[tuple[str, Contribution]]) -> list[type]:
    """The strawberry types (objects and enums) to build into the schema."""
    return [cls for _, c in contributions for cls in c.types]


def add_fields(
    schema: strawberry.Schema, contributions: Sequence[tuple[str, Contribution]]
) -> None:
    """Add the contributed fields to the built schema's ``Resident``. Resolvers are plain
    graphql-core ones: the schema's extensions (authorization first) wrap them as they wrap
    every resolver."""
    resident = schema._schema.type_map["Resident"]
    assert isinstance(resident, GraphQLObjectType)
    for where, c in contributions:
        for f in c.fields:
            if f.name in resident.fields:
                raise ConfigError(f"{where}: field Resident.{f.name} already exists")
            graphql_type: GraphQLOutputType
            if f.type in LEAVES:
                graphql_type = LEAVES[f.type]
            else:
                name = f.type.__strawberry_definition__.name  # type: ignore[attr-defined]
                if name not in _type_names(c):
                    raise ConfigError(f"{where}: type {name} is not its own")
                graphql_type = schema._schema.type_map[name]  # type: ignore[assignment]
            if c.dataset.many if f.many is None else f.many:
                graphql_type = GraphQLList(GraphQLNonNull(graphql_type))
            resident.fields[f.name] = GraphQLField(
                graphql_type,
                description=f.description,
                resolve=_resolver(c.dataset, f.build, getattr(c, "part", None)),
                extensions={DATASET_EXTENSION: c.dataset.name},
            )


def _type_names(c: Contribution) -> Iterator[str]:
    for cls in c.types:
        yield cls.__strawberry_definition__.name  # type: ignore[attr-defined]


#: What of each record a field occurrence needs fetched (``part(info, root)``), for sources
#: asked for part of a record: a GraphQL subgraph forwards only what the request selects
#: (``gateway.subgraph.SubgraphContribution.part``). Packages fetch whole records.
Part = Callable[[GraphQLResolveInfo[Any], Any], Awaitable[str]]


def _resolver(dataset: Dataset, build: Builder, part: Part | None) -> Callable[..., Any]:
    from resolvers.loading import load

    async def resolve(root: Any, info: GraphQLResolveInfo[Any]) -> Any:
        subject: str = root.record.rrn
        wanted = "" if part is None else await part(info, root)
        value = await load(info, dataset.name, subject, wanted)  # type: ignore[arg-type]
        try:
            if dataset.many:
                return [build(record, root.view, subject) for record in value or ()]
            return None if value is None else build(value, root.view, subject)
        except Exception as exc:
            # The package's fault, not the gateway's: an agency failure, named by its
            # agency; only the error's kind is logged (its text may quote a record).
            found = info.context.agencies.for_dataset(dataset.name)
            code = found[0].code if found is not None else dataset.name
            log.warning("%s: building a %s record failed (%s)", code, dataset.name,
                        type(exc).__name__)  # fmt: skip
            raise AgencyError(code, f"The {code} agency's record could not be read.") from None

    return resolve


def owner_of(contributions: Sequence[tuple[str, Contribution]], type_name: str) -> str | None:
    """The entry point contributing a type named ``type_name``, if any."""
    return next((where for where, c in contributions if type_name in set(_type_names(c))), None)
