"""The strawberry Schema: our types plus the request-wide extensions."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from gateway.config import LimitsConfig
from gateway.view import log_errors
from schema import Query
from schema.scalars import SCALARS


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


def build_schema(limits: LimitsConfig | None = None) -> GatewaySchema:
    limits = limits or LimitsConfig()
    extensions: list[Any] = [
        # Parse and validation dominate a cached request's CPU time (see STACK.md).
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: QueryDepthLimiter(max_depth=limits.max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=limits.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
    ]
    return GatewaySchema(
        query=Query, extensions=extensions, config=StrawberryConfig(scalar_map=SCALARS)
    )
