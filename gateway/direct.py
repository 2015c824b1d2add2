"""The direct lane: a query that is known to pass runs without strawberry's request machinery.

strawberry's ``Schema.execute`` wraps each request's parse, validation and execution in
its extension runner: one new instance per extension per request, an async context manager
per hook, a generator per extension per hook. For our extensions (``QueryLimits``,
``ValidatedOnce``, the introspection rule, ``Planned``, ``ObserveOperation``) every hook is a
look-up in a cache once a document has been seen, so the machinery around them cost more
than they do (``BENCHMARKS.md``, "Direct lane"). Here the same steps run in line, through
the same functions the extensions call (``measured_operation``, ``validated_once``,
``adopt_plan``, ``note_operation``, ``cost_extension``):

1. :func:`prepare`, before the request's context exists: parse (the token limit and the
   parse cache of ``parse_limited``), the operation (a query; strawberry's rules for which
   one), the measure against the limits, graphql-core's validation. Anything that would end
   in an error or is not a query answers ``None``, and the request goes strawberry's way,
   which gives the error (or runs the mutation) as it always did: nothing has happened yet.
2. :func:`execute`: the measured cost on the context, the operation's plan, the request's
   operation name and cost noted, then graphql-core's ``execute`` with the schema's
   execution context class, and the errors logged — what ``Schema.execute`` does.

The lane is used only while the schema's extensions are the ones :func:`build_schema` gave
it (a schema whose extensions were replaced, as the per-field reference in the tests does,
always goes strawberry's way), and only for what strawberry would run as a single
operation over HTTP: a POST of one JSON object, no streaming transport asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from graphql import ExecutionResult as CoreResult
from graphql import GraphQLError, MiddlewareManager
from graphql import execute as core_execute
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from gateway.limits import (
    cost_extension,
    measured_operation,
    over_limit,
    parse_limited,
    validated_once,
)
from gateway.observe import note_operation
from gateway.plans import adopt_plan

if TYPE_CHECKING:
    from gateway.graphql_schema import GatewaySchema

_QUERY_ONLY = frozenset({OperationType.QUERY})


class Prepared:
    """A query that passed parse, limits and validation: its execution context (strawberry's,
    so operation name and type follow strawberry's rules) and its measured cost."""

    __slots__ = ("context", "cost")

    def __init__(self, context: ExecutionContext, cost: int) -> None:
        self.context, self.cost = context, cost


def prepare(schema: GatewaySchema, body: Mapping[str, Any]) -> Prepared | None:
    """``body`` (one decoded JSON request) ready to execute, or ``None`` when it must go
    strawberry's way (see the module docstring). Touches nothing but the schema's caches."""
    if schema.extensions is not schema.direct_extensions or schema.directives:
        return None
    query = body.get("query")
    variables = body.get("variables")
    operation_name = body.get("operationName")
    extensions = body.get("extensions")
    if (
        not isinstance(query, str)
        or not query
        or not isinstance(variables, dict | None)
        or not isinstance(operation_name, str | None)
        or not isinstance(extensions, dict | None)
    ):
        return None
    context = ExecutionContext(
        query=query,
        schema=schema,
        allowed_operations=_QUERY_ONLY,
        variables=variables,
        provided_operation_name=operation_name,
        operation_extensions=extensions,
        validation_rules=schema.direct_rules,
    )
    try:
        context.graphql_document = parse_limited(query, schema.limits.max_tokens)
        if context.operation_type is not OperationType.QUERY:
            return None
        measured = measured_operation(context, schema.limits, schema.weights, schema.measured)
        if over_limit(measured, schema.limits) is not None or validated_once(context):
            return None
    except Exception:  # strawberry's way reports it
        return None
    return Prepared(context, measured.cost)


async def execute(schema: GatewaySchema, prepared: Prepared, context_value: Any) -> ExecutionResult:
    """Run a prepared query with ``context_value`` as strawberry's ``Schema.execute`` would
    with our extensions: same hooks in the same order, same result and errors."""
    context = prepared.context
    context.context = context_value
    if hasattr(context_value, "cost"):  # QueryLimits.on_validate
        context_value.cost = prepared.cost
    try:
        adopt_plan(context)  # Planned.on_execute
        note_operation(context)  # ObserveOperation.on_execute
        outcome = core_execute(
            schema._schema,
            context.graphql_document,  # type: ignore[arg-type]
            root_value=None,
            context_value=context_value,
            variable_values=context.variables,
            operation_name=context.operation_name,
            middleware=MiddlewareManager(),
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
            executor_class=schema.execution_context_class,
            operation_extensions=context.operation_extensions,
        )
        if isawaitable(outcome):
            outcome = await outcome
        assert isinstance(outcome, CoreResult)
        errors = outcome.errors
        data = outcome.data
    except Exception as exc:  # as Schema.execute: an error, not a 500
        error = exc if isinstance(exc, GraphQLError) else None
        errors = [error or GraphQLError(str(exc), original_error=exc)]
        data = None
    if errors:
        schema._process_errors(errors, context)
    return ExecutionResult(
        data=data, errors=errors, extensions=cost_extension(context, prepared.cost, schema.limits)
    )
