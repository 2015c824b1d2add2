"""The strawberry Schema: our types plus the request-wide extensions."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLObjectType
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

from gateway.access import Authorize
from gateway.config import LimitsConfig
from gateway.view import log_errors
from schema import Mutation, Query
from schema.enums import Purpose
from schema.scalars import SCALARS


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


def build_schema(limits: LimitsConfig | None = None) -> GatewaySchema:
    limits = limits or LimitsConfig()
    # The limiters' rule classes are built once: ValidationCache keys on the rules, and a
    # limiter built per request makes new classes, so validation would never be cached.
    rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    extensions: list[Any] = [
        # Parse and validation dominate a cached request's CPU time (see STACK.md).
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
        Authorize,
    ]
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
    )


def schema_fields(schema: strawberry.Schema) -> dict[str, frozenset[str]]:
    """Object type name -> its field names, for checking a policy against the schema."""
    return {
        name: frozenset(graphql_type.fields)
        for name, graphql_type in schema._schema.type_map.items()
        if isinstance(graphql_type, GraphQLObjectType) and not name.startswith("__")
    }


PURPOSES = tuple(p.name for p in Purpose)
