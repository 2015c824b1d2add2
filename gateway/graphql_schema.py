"""The strawberry Schema: our types plus the request-wide extensions."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLNamedType, GraphQLObjectType, get_named_type
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.access import ROOT_TYPES, Authorize
from gateway.config import ConfigError, LimitsConfig
from gateway.policy import SERVICE_TYPES
from gateway.view import log_errors
from schema import Mutation, Query
from schema.enums import Purpose
from schema.scalars import SCALARS


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


def build_schema(
    limits: LimitsConfig | None = None, *, query: type = Query, mutation: type | None = Mutation
) -> GatewaySchema:
    """The schema, with every object type classified (see ``resident_types``)."""
    limits = limits or LimitsConfig()
    # The limiters' rule classes are built once: ValidationCache keys on the rules, and a
    # limiter built per request makes new classes, so validation would never be cached.
    rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)  # __schema, __type; __typename stays
    extensions: list[Any] = [
        # Parse and validation dominate a cached request's CPU time (see STACK.md).
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        Authorize,
    ]
    schema = GatewaySchema(
        query=query,
        mutation=mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
    )
    resident_types(schema)  # refuse a schema with an unclassified type
    return schema


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
    todo: list[GraphQLNamedType] = [type_map["Resident"]]
    while todo:
        named = todo.pop()
        if not isinstance(named, GraphQLObjectType) or named.name in found:
            continue
        found.add(named.name)
        todo += [get_named_type(f.type) for f in named.fields.values()]
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
