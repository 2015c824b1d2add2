"""The strawberry Schema: our types plus the request-wide extensions."""

from __future__ import annotations

import inspect
import operator
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLBoolean,
    GraphQLError,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLString,
    GraphQLUnionType,
    default_field_resolver,
    get_named_type,
    specified_rules,
    validate,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.exceptions import DuplicatedTypeName
from strawberry.extensions import AddValidationRules
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext
from strawberry.types.field import StrawberryField

from gateway import federation
from gateway.access import (
    ROOT_TYPES,
    planned_resolver,
    refused_resolver,
    root_resolver,
    rrn_resolver,
)
from gateway.config import Config, ConfigError, LimitsConfig, cost_weights
from gateway.errors import GatewayError, QueryTooComplex
from gateway.executor import PlannedExecutor
from gateway.limits import (
    FIELD_DATASET,
    MeasureCache,
    QueryLimits,
    ValidatedOnce,
    measure,
    over_limit,
    parse_limited,
)
from gateway.observe import ObserveOperation
from gateway.plans import Planned
from gateway.policy import ACCESS, SERVICE_TYPES, Policy
from gateway.view import log_errors
from resolvers.loading import WHEN_LOADED
from schema import Mutation, Query
from schema.enums import Purpose
from schema.scalars import SCALARS

if TYPE_CHECKING:
    from gateway.federation import Contribution


class GatewaySchema(strawberry.Schema):
    limits: LimitsConfig
    weights: Mapping[str, int]
    measured: MeasureCache
    #: Coordinates contributed by agency packages and subgraphs -> who contributes them
    #: (see :func:`contributed_fields`).
    contributed: Mapping[str, str]
    #: The extensions build_schema gave it and the validation rules they amount to: the
    #: direct lane (gateway/direct.py) is used while ``extensions`` is still this list.
    direct_extensions: object = None
    direct_rules: tuple[Any, ...] = ()

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


def build_schema(
    limits: LimitsConfig | None = None,
    *,
    weights: Mapping[str, int] | None = None,
    query: type = Query,
    mutation: type | None = Mutation,
    contributions: Sequence[tuple[str, Contribution]] = (),
) -> GatewaySchema:
    """The schema, with every object type classified (see ``resident_types``).

    ``weights``: dataset -> cost of one read (the ``cost_weight`` of the agency serving it,
    ``gateway.config.cost_weights``); datasets not named cost the default weight.
    ``contributions``: installed agency packages' types and ``Resident`` fields to merge in
    (``gateway.federation.enabled``). Authorization runs from operation plans
    (``gateway.plans``, ``install_plans``)."""
    limits = limits or LimitsConfig()
    weights = dict(weights or {})
    measured = MeasureCache()
    # Built once (ValidatedOnce keys on the rule classes).
    rules: list[Any] = []
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)  # __schema, __type; __typename stays
    extensions: list[Any] = [
        # Parse (cached, token limit) then depth, aliases and cost, linear in the document
        # and before graphql-core's own rules, which are slow on fragment bombs (see
        # gateway/limits.py). Parse and validation dominate a cached request's CPU time
        # (see STACK.md), hence the caches. Order matters: QueryLimits refuses first.
        lambda: QueryLimits(limits, weights, measured),
        ValidatedOnce,  # graphql-core's validation, once per document
        *([lambda: AddValidationRules(rules)] if rules else []),
        Planned,  # once per operation: its plan (decisions made once; see gateway/plans.py)
        ObserveOperation,
    ]
    try:
        schema = GatewaySchema(
            query=query,
            mutation=mutation,
            types=federation.object_types(contributions),
            extensions=extensions,
            config=StrawberryConfig(scalar_map=SCALARS),
            # Queries run compiled (gateway/executor.py); the rest through graphql-core.
            execution_context_class=PlannedExecutor,
        )
    except DuplicatedTypeName as exc:
        name = str(exc.message).split()[1]
        owner = federation.owner_of(contributions, name) or "a contribution"
        raise ConfigError(f"{owner}: type {name} already exists") from None
    except Exception as exc:
        if not contributions:
            raise
        raise ConfigError(_unbuildable(contributions, exc)) from None
    federation.add_fields(schema, contributions)
    schema.contributed = contributed_fields(schema, contributions)
    schema.limits = limits
    schema.weights = weights
    schema.measured = measured
    # The direct lane (gateway/direct.py) runs these extensions' steps in line, and only
    # while the schema keeps this very list.
    schema.direct_extensions = schema.extensions
    schema.direct_rules = (*specified_rules, *rules)
    found = resident_types(schema)  # refuse a schema with an unclassified type
    install_plans(schema, found)
    return schema


def _unbuildable(contributions: Sequence[tuple[str, Contribution]], exc: Exception) -> str:
    """One line naming the contribution whose types make the schema fail to build (found by
    building the schema with each alone), and the error's first line."""
    problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    for where, contribution in contributions:
        try:
            GatewaySchema(
                query=Query, types=federation.object_types([(where, contribution)]),
                config=StrawberryConfig(scalar_map=SCALARS),
            )  # fmt: skip
        except Exception:
            return f"{where}: its types make an invalid schema ({problem})"
    owners = ", ".join(where for where, _ in contributions)
    return f"{owners}: their types make an invalid schema ({problem})"


def install_plans(schema: strawberry.Schema, found: frozenset[str]) -> None:
    """Put every field of a resident data type and every root field behind the plan's
    decisions (``gateway.access.planned_resolver``): built once, here, so nothing runs per
    field but the field's own resolver."""
    for name, graphql_type in schema._schema.type_map.items():
        if not isinstance(graphql_type, GraphQLObjectType) or name.startswith("__"):
            continue
        for field_name, graphql_field in graphql_type.fields.items():
            resolve = graphql_field.resolve or default_field_resolver
            if name in found:
                if (name, field_name) == ("Resident", "rrn"):
                    graphql_field.resolve = rrn_resolver(resolve)
                    continue
                graphql_field.resolve = planned_resolver(
                    name,
                    field_name,
                    resolve,
                    _direct(graphql_field, resolve),
                    _when_loaded(graphql_field),
                )
            elif name in ROOT_TYPES:
                graphql_field.resolve = root_resolver(f"{name}.{field_name}", resolve)
            elif name not in SERVICE_TYPES:
                graphql_field.resolve = refused_resolver(f"{name}.{field_name}")


def _direct(graphql_field: GraphQLField, resolve: Any) -> Any:
    """For a strawberry field that only reads its object, a function doing just that:
    a plain attribute, or a resolver taking nothing but ``root``. None otherwise."""
    definition = (graphql_field.extensions or {}).get("strawberry-definition")
    if not isinstance(definition, StrawberryField) or definition.extensions:
        return None
    if getattr(resolve, "_is_default", False):
        return operator.attrgetter(definition.python_name)
    resolver = definition.base_resolver
    if resolver is None or resolver.is_async:
        return None
    function = resolver.wrapped_func
    if not callable(function) or list(inspect.signature(function).parameters) != ["root"]:
        return None
    return function


def _when_loaded(graphql_field: GraphQLField) -> Any:
    """For a strawberry field whose async resolver registered a synchronous twin
    (``resolvers.loading.when_loaded``), that twin. None otherwise."""
    definition = (graphql_field.extensions or {}).get("strawberry-definition")
    if not isinstance(definition, StrawberryField) or definition.extensions:
        return None
    resolver = definition.base_resolver
    if resolver is None:
        return None
    ready = WHEN_LOADED.get(resolver.wrapped_func)  # type: ignore[arg-type]
    if ready is not None:
        for name, argument in graphql_field.args.items():
            # graphql-core hands the twin its arguments as they are: by GraphQL name, enums
            # as their raw values, input objects as dicts. Only where strawberry would hand
            # them over unchanged may the twin stand in for the resolver.
            own = (argument.extensions or {}).get("strawberry-definition")
            python_name = getattr(own, "python_name", name)
            if python_name != name or get_named_type(argument.type) not in _AS_THEY_ARE:
                raise TypeError(
                    f"{definition.name}: its when_loaded twin cannot take argument {name}"
                    " (strawberry converts it; graphql-core would hand it over unconverted)"
                )
    return ready


#: Argument types graphql-core and strawberry hand a resolver alike.
_AS_THEY_ARE = (GraphQLInt, GraphQLFloat, GraphQLString, GraphQLBoolean, GraphQLID)


def schema_for(config: Config) -> GatewaySchema:
    """The schema a configuration serves: its limits, its agencies' cost weights, and the
    installed contributions whose datasets it names."""
    return build_schema(
        config.limits, weights=cost_weights(config), contributions=federation.enabled(config)
    )


def describe_access(schema: strawberry.Schema, policy: Policy) -> None:
    """Append the policy's access line to the description of every root operation and every
    resident data field (what GraphiQL's docs and ``gateway schema`` show), so the policy file
    is the only place it is written. Again on the same schema: the line is replaced."""
    for type_name, graphql_type in schema._schema.type_map.items():
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        if type_name not in ROOT_TYPES and type_name not in policy.resident_types:
            continue
        for name, field in graphql_type.fields.items():
            base = (field.description or "").split(f"\n\n{ACCESS} ")[0]
            line = policy.access_line(f"{type_name}.{name}")
            field.description = f"{base}\n\n{line}" if base else line


def contributed_fields(
    schema: strawberry.Schema, contributions: Sequence[tuple[str, Contribution]]
) -> dict[str, str]:
    """Every coordinate an agency package or GraphQL subgraph contributes (its ``Resident``
    fields and every field of its types) -> the contribution's description (``where``).
    A policy wildcard (``Resident.*``) does not grant these: the agency decides what they
    hold and may add fields at any time, so each must be named (``gateway.policy``)."""
    type_map = schema._schema.type_map
    found: dict[str, str] = {}
    for where, c in contributions:
        found.update({f"Resident.{f.name}": where for f in c.fields})
        for cls in c.types:
            named = type_map.get(cls.__strawberry_definition__.name)  # type: ignore[attr-defined]
            if isinstance(named, GraphQLObjectType):
                found.update({f"{named.name}.{name}": where for name in named.fields})
    return found


def agency_fields(schema: strawberry.Schema) -> frozenset[str]:
    """``Resident`` fields read from an agency, ours and contributed: the fields a policy
    may ask the resident's consent for."""
    resident = schema._schema.type_map["Resident"]
    assert isinstance(resident, GraphQLObjectType)
    return frozenset(
        f"Resident.{name}"
        for name, f in resident.fields.items()
        if ("Resident", name) in FIELD_DATASET or federation.DATASET_EXTENSION in f.extensions
    )


def check_text(schema: GatewaySchema, text: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
    """Parse and validate a document as a request would be (token, depth, alias and cost
    limits included, cost with no variables): the document, or None and the errors."""
    try:
        document = parse_limited(text, schema.limits.max_tokens)
        reason = over_limit(
            measure(
                schema._schema,
                document,
                operation_name=None,
                variables=None,
                limits=schema.limits,
                weights=schema.weights,
            ),
            schema.limits,
        )
    except GraphQLError as exc:
        return None, [exc]
    except GatewayError as exc:
        return None, [GraphQLError(exc.message, original_error=exc)]
    except RecursionError:
        return None, [GraphQLError("The document is nested too deeply.")]
    if reason is not None:
        error = QueryTooComplex(f"The query is too complex: {reason}.")
        return None, [GraphQLError(error.message, original_error=error)]
    errors = validate(schema._schema, document, specified_rules)
    return (None, errors) if errors else (document, [])


def schema_fields(schema: strawberry.Schema) -> dict[str, frozenset[str]]:
    """Object type name -> its field names, for checking a policy against the schema."""
    return {
        name: frozenset(graphql_type.fields)
        for name, graphql_type in schema._schema.type_map.items()
        if isinstance(graphql_type, GraphQLObjectType) and not name.startswith("__")
    }


PURPOSES = tuple(p.name for p in Purpose)


def resident_types(schema: strawberry.Schema) -> frozenset[str]:
    """Every object type reachable from ``Resident``: their fields carry resident data and
    are authorized field by field. Derived from the schema, so a type added under Resident is
    checked (and denied unless the policy grants it) without anyone listing it.

    Every other object type must be a root or a declared service type (``SERVICE_TYPES``,
    reached only through root operations the policy grants); anything else is refused here
    rather than served unchecked."""
    type_map = schema._schema.type_map
    if "Resident" not in type_map:
        raise ConfigError("the schema has no Resident type")
    found: set[str] = set()
    seen: set[str] = set()
    todo: list[GraphQLNamedType] = [type_map["Resident"]]
    while todo:
        named = todo.pop()
        if named.name in seen:
            continue
        seen.add(named.name)
        if isinstance(named, GraphQLUnionType | GraphQLInterfaceType):
            # Every object a union or interface can resolve to is reachable too: a member
            # that is a service type would otherwise be served without a grant.
            todo += list(schema._schema.get_possible_types(named))
        if isinstance(named, GraphQLInterfaceType | GraphQLObjectType):
            todo += [get_named_type(f.type) for f in named.fields.values()]
        if isinstance(named, GraphQLObjectType):
            found.add(named.name)
    objects = {
        name for name, t in type_map.items()
        if isinstance(t, GraphQLObjectType) and not name.startswith("__")
    }  # fmt: skip
    both = found & (SERVICE_TYPES | ROOT_TYPES)
    if both:
        raise ConfigError(
            f"type(s) {', '.join(sorted(both))} are reachable from Resident, so they carry "
            "resident data: they cannot also be service or root types"
        )
    unclassified = objects - found - SERVICE_TYPES - ROOT_TYPES
    if unclassified:
        raise ConfigError(
            f"type(s) {', '.join(sorted(unclassified))} are neither reachable from Resident "
            "nor declared service types (gateway.policy.SERVICE_TYPES): refusing to serve "
            "them unchecked"
        )
    return frozenset(found)
