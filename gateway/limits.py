"""Query limits: tokens while parsing, then depth, aliases and cost in one linear pass, all
before graphql-core's own validation and long before any agency is called.

Why not strawberry's QueryDepthLimiter and MaxAliasesLimiter: they walk a fragment spread
by walking the fragment again, so a 1 KB document whose fragments each spread the previous
one twice takes 2^levels steps (24 levels: ~28 s on one core, with the event loop frozen).
Here each fragment is measured once, in dependency order (no recursion along spreads, so a
long chain of fragments cannot exhaust the stack), and a spread reuses its result. A
fragment cycle is refused before anything is measured.

The pass runs in ``on_validate`` ahead of graphql-core's standard rules, several of which
(OverlappingFieldsCanBeMergedRule above all) are themselves exponential or quadratic on
such documents: a document over a limit never reaches them.

Cost model (docs/query-safety.md has the worked example)::

    cost(selection set) = sum of its fields' costs (a spread adds its fragment's cost)
    cost(field)         = own + items * cost(its selection set)

``own`` is 1 for a field that no agency serves (leaf or object alike) and the agency's
``cost_weight`` for an agency-backed field (``FIELD_DATASET``). ``items`` is 1, except for
``residents(rrns)`` (the number of RRNs, at most ``max_batch``), ``Household.members``
(``[limits] max_household``) and ``Resident.taxes(years)`` (the number of years asked,
``TAX_YEARS_ASSUMED`` when omitted).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    ValueNode,
    VariableNode,
    get_named_type,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from gateway.config import DEFAULT_COST_WEIGHT, LimitsConfig
from gateway.errors import GatewayError, QueryTooComplex
from gateway.lru import LRU, ByNode

# Which agency-backed fields read which dataset (its weight is the cost_weight of the agency
# configured to serve it: ``gateway.config.cost_weights``).
# Resident.address is served from the registry's resident record. Root lookups (resident,
# residents, me) are not weighted: their count is bounded by max_batch, and what is asked
# about each resident is.
FIELD_DATASET: dict[tuple[str, str], str] = {
    ("Resident", "address"): "resident",
    ("Resident", "household"): "household",
    ("Resident", "insurance"): "insurance",
    ("Resident", "taxes"): "taxes",
    ("Resident", "pension"): "pension",
    ("Resident", "militaryService"): "military_service",
    ("Household", "head"): "resident",
}
#: What ``__schema`` or ``__type`` costs, whatever is selected under it: about what answering
#: it takes (~17 ms for the whole schema on this machine), against a request's 5,000.
INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
INTROSPECTION_COST = 2000
#: Items assumed for ``taxes`` when no ``years`` are given.
TAX_YEARS_ASSUMED = 10
#: Selection sets nested deeper than ``max_depth`` plus this (counting inline fragments and
#: introspection fields, which depth does not count) are refused before they are walked.
NESTING_SLACK = 16
_PARSE_CACHE_SIZE = 256

ObjectLike = GraphQLObjectType | GraphQLInterfaceType


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int = 0  # deepest field below, as QueryDepthLimiter counts (root fields are 0)
    aliases: int = 0
    cost: int = 0


ZERO = Measure()


@dataclass(frozen=True, slots=True)
class Measured:
    depth: int
    aliases: int
    cost: int  # of the operation that runs (the dearest one when that is ambiguous)


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse(query: str, max_tokens: int) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


#: Recent refusals of ``parse_limited``: (text, max_tokens) -> ("syntax", position,
#: description) or ("tokens",). A refused text is parsed once (twice: which error it was),
#: not again by each step that parses it in the same request (the rate limiter's measure,
#: the direct lane's ``prepare``, then QueryLimits on strawberry's way), nor by the next
#: request sending it.
_REFUSED: LRU[tuple[Any, ...]] = LRU(_PARSE_CACHE_SIZE)


def parse_limited(query: str, max_tokens: int) -> DocumentNode:
    """Parse (cached), refusing a document over ``max_tokens`` with QUERY_TOO_COMPLEX.

    graphql-core reports the token limit as a syntax error. Which one it was is decided by
    parsing once more with one more token allowed: a syntax error stays where it is, the
    limit moves on. Both parses stop within max_tokens + 1 tokens. The verdict on a refused
    text is kept (``_REFUSED``) and each refusal raised anew."""
    key = (query, max_tokens)
    refused = _REFUSED.get(key)
    if refused is None:
        try:
            return _parse(query, max_tokens)
        except GraphQLSyntaxError as limited:
            refused = ("tokens",)
            try:
                parse(query, max_tokens=max_tokens + 1)
            except GraphQLSyntaxError as again:
                if again.positions == limited.positions and limited.positions:
                    refused = ("syntax", next(iter(limited.positions)), limited.description)
            _REFUSED.put(key, refused)
    if refused[0] == "syntax":  # the document's own syntax error
        raise GraphQLSyntaxError(Source(query), refused[1], refused[2]) from None
    raise QueryTooComplex(f"The document has more than {max_tokens} tokens, the limit.") from None


class _Measurer:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: Mapping[str, Any],
        limits: LimitsConfig,
        weights: Mapping[str, int],
    ) -> None:
        self.schema = schema
        self.variables = variables
        self.limits = limits
        self.weights = weights
        self.max_nesting = limits.max_depth + NESTING_SLACK
        self.defaults: dict[str, ValueNode] = {}
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.memo: dict[str, Measure] = {}

    def measure_fragments(self) -> None:
        """Each fragment once, those it spreads first; a cycle is refused."""
        for name in _dependency_order(self.fragments):
            fragment = self.fragments[name]
            parent = self.schema.get_type(fragment.type_condition.name.value)
            self.memo[name] = self.selections(fragment.selection_set, _object_like(parent), 0)

    def operation(self, operation: OperationDefinitionNode) -> Measure:
        self.defaults = {
            v.variable.name.value: v.default_value
            for v in operation.variable_definitions or ()
            if v.default_value is not None
        }
        root = self.schema.get_root_type(operation.operation)
        return self.selections(operation.selection_set, root, 0)

    def selections(
        self, node: SelectionSetNode, parent: ObjectLike | None, nesting: int
    ) -> Measure:
        if nesting > self.max_nesting:
            raise QueryTooComplex(
                f"The document nests selections more than {self.max_nesting} levels deep."
            )
        depth = aliases = cost = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                m = self.field(selection, parent, nesting)
            elif isinstance(selection, InlineFragmentNode):
                inner = parent
                if selection.type_condition is not None:
                    inner = _object_like(self.schema.get_type(selection.type_condition.name.value))
                m = self.selections(selection.selection_set, inner, nesting + 1)
            elif isinstance(selection, FragmentSpreadNode):
                m = self.memo.get(selection.name.value, ZERO)  # unknown: validation says so
            else:  # pragma: no cover - no other selection kinds exist
                continue
            depth = max(depth, m.depth)
            aliases += m.aliases
            cost += m.cost
        return Measure(depth, aliases, cost)

    def field(self, node: FieldNode, parent: ObjectLike | None, nesting: int) -> Measure:
        name = node.name.value
        definition = parent.fields.get(name) if parent is not None else None
        inner = ZERO
        if node.selection_set is not None:
            child = _object_like(get_named_type(definition.type)) if definition else None
            inner = self.selections(node.selection_set, child, nesting + 1)
        # Introspection fields do not count toward depth (as in QueryDepthLimiter).
        introspection = name.startswith("__")
        depth = 0 if introspection or node.selection_set is None else 1 + inner.depth
        aliases = inner.aliases + (1 if node.alias is not None else 0)
        own, items = 1, 1
        if name in INTROSPECTION_ROOTS:
            # Cheap to write, dear to answer: its lists span the whole schema. A fixed price
            # keeps GraphiQL's one introspection query well within max_cost and refuses
            # documents that alias it many times over.
            own = INTROSPECTION_COST
        elif parent is not None:
            dataset = FIELD_DATASET.get((parent.name, name))
            if dataset is None and definition is not None:  # contributed (gateway.federation)
                dataset = definition.extensions.get("gateway.dataset")
            if dataset is not None:
                own = self.weights.get(dataset, DEFAULT_COST_WEIGHT)
            items = self.items(parent.name, name, node)
        return Measure(depth, aliases, own + items * inner.cost)

    def items(self, type_name: str, name: str, node: FieldNode) -> int:
        """How many times a list field's selection set is resolved, at most."""
        if (type_name, name) == ("Query", "residents"):
            # More than max_batch RRNs are refused by the field itself, before any agency.
            return min(self.list_length(node, "rrns", default=1), self.limits.max_batch)
        if (type_name, name) == ("Household", "members"):
            return self.limits.max_household
        if (type_name, name) == ("Resident", "taxes"):
            # An empty list asks for every year, as an omitted one does.
            return self.list_length(node, "years", default=TAX_YEARS_ASSUMED) or TAX_YEARS_ASSUMED
        return 1

    def list_length(self, node: FieldNode, argument: str, *, default: int) -> int:
        """The length of a list argument, with the request's variables."""
        value: Any = _MISSING
        for arg in node.arguments or ():
            if arg.name.value == argument:
                value = arg.value
        if isinstance(value, VariableNode):
            name = value.name.value
            if name in self.variables:
                value = self.variables[name]
            else:
                value = self.defaults.get(name, _MISSING)
        if value is _MISSING or value is None or isinstance(value, NullValueNode):
            return default
        if isinstance(value, ListValueNode):
            return len(value.values)
        if isinstance(value, list):
            return len(value)
        return 1  # a single value is coerced to a list of one


_MISSING: Any = object()


def _object_like(named: Any) -> ObjectLike | None:
    return named if isinstance(named, GraphQLObjectType | GraphQLInterfaceType) else None


def _spreads(node: SelectionSetNode) -> Iterator[str]:
    """The fragment names spread anywhere in a selection set (no recursion)."""
    todo = [node]
    while todo:
        for selection in todo.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection.name.value
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                todo.append(selection.selection_set)


def _dependency_order(fragments: Mapping[str, FragmentDefinitionNode]) -> list[str]:
    """Fragment names, each after every fragment it spreads; a cycle raises."""
    spreads = {
        name: [s for s in dict.fromkeys(_spreads(f.selection_set)) if s in fragments]
        for name, f in fragments.items()
    }
    done: set[str] = set()
    order: list[str] = []
    for start in fragments:
        if start in done:
            continue
        path = [start]
        on_path = {start}
        stack = [iter(spreads[start])]
        while stack:
            after = next(stack[-1], None)
            if after is None:
                stack.pop()
                name = path.pop()
                on_path.discard(name)
                done.add(name)
                order.append(name)
            elif after in on_path:
                raise GraphQLError(
                    f"Cannot spread fragment '{after}' within itself.",
                    extensions={"code": "BAD_REQUEST"},
                )
            elif after not in done:
                path.append(after)
                on_path.add(after)
                stack.append(iter(spreads[after]))
    return order


def measure(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    limits: LimitsConfig,
    weights: Mapping[str, int],
) -> Measured:
    """Depth and aliases over the document's operations (as strawberry's limiters counted
    them), and the cost of the operation that runs, in time linear in the document."""
    measurer = _Measurer(schema, document, variables or {}, limits, weights)
    measurer.measure_fragments()
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    depth = aliases = 0
    costs: dict[str | None, int] = {}
    for operation in operations:
        if schema.get_root_type(operation.operation) is None:
            continue  # validation reports the missing root type
        m = measurer.operation(operation)
        depth = max(depth, m.depth)
        aliases += m.aliases
        name = operation.name.value if operation.name else None
        costs[name] = max(costs.get(name, 0), m.cost)
    if operation_name is not None and operation_name in costs:
        cost = costs[operation_name]
    else:
        cost = max(costs.values(), default=0)
    return Measured(depth, aliases, cost)


def over_limit(measured: Measured, limits: LimitsConfig) -> str | None:
    """Why the document is refused, or None."""
    if measured.depth > limits.max_depth:
        return f"depth {measured.depth} is over the limit of {limits.max_depth}"
    if measured.aliases > limits.max_aliases:
        return f"{measured.aliases} aliases are over the limit of {limits.max_aliases}"
    if measured.cost > limits.max_cost:
        return f"cost {measured.cost} is over the limit of {limits.max_cost}"
    return None


class MeasureCache(LRU[Measured]):
    """Measurements of recent documents, shared by a schema's requests. A measurement
    depends on the document, the operation and, of the variables, only on whether each is a
    list (and how long), null or a single value (``_shape``): requests that differ only in
    an RRN share one, so a repeated document is measured once (about 0.1 ms each time
    otherwise, for the README's sample query). A key of None (no text) is never kept."""

    def __init__(self, size: int = 512) -> None:
        super().__init__(size)

    def get(self, key: Hashable | None) -> Measured | None:
        return None if key is None else super().get(key)

    def put(self, key: Hashable | None, value: Measured) -> None:
        if key is not None:
            super().put(key, value)


def _shape(variables: Mapping[str, Any] | None) -> Hashable:
    """What the measurement reads of the variables (see ``_Measurer.list_length``)."""
    if not variables:
        return ()
    return tuple(
        sorted(
            (name, len(value) if isinstance(value, list) else (-1 if value is None else -2))
            for name, value in variables.items()
        )
    )


def request_cost(
    schema: GraphQLSchema,
    measured: MeasureCache,
    query: Any,
    operation_name: Any,
    variables: Any,
    limits: LimitsConfig,
    weights: Mapping[str, int],
) -> int:
    """The cost of a request's document, as QueryLimits will measure it (the measurement is
    cached, so measuring it here first costs nothing twice); 0 for anything QueryLimits or
    validation will refuse anyway."""
    if not isinstance(query, str) or not isinstance(operation_name, str | None):
        return 0
    variables = variables if isinstance(variables, dict) else None
    key = (query, operation_name, _shape(variables))
    found = measured.get(key)
    if found is None:
        try:
            document = parse_limited(query, limits.max_tokens)
            found = measure(
                schema,
                document,
                operation_name=operation_name,
                variables=variables,
                limits=limits,
                weights=weights,
            )
        except (GraphQLError, GatewayError, RecursionError):
            return 0
        measured.put(key, found)
    return found.cost


class QueryLimits(SchemaExtension):
    """Parses with the token limit (and a cache), then refuses a document over the depth,
    alias or cost limit before graphql-core validates it. Must come before ValidatedOnce
    in the schema's extensions: hooks run in that order, and a refusal stops the rest.

    A client that sends ``"extensions": {"cost": true}`` gets
    ``extensions.cost = {"requested": N, "limit": M}`` in the response."""

    def __init__(
        self,
        limits: LimitsConfig,
        weights: Mapping[str, int],
        measured: MeasureCache | None = None,
    ) -> None:
        super().__init__()
        self.limits = limits
        self.weights = weights
        self.measured = measured if measured is not None else MeasureCache()
        self.cost: int | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            context.graphql_document = parse_limited(context.query, self.limits.max_tokens)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        found = measured_operation(context, self.limits, self.weights, self.measured)
        self.cost = found.cost
        if hasattr(context.context, "cost"):  # our Context: the rate limiter charges it
            context.context.cost = found.cost
        reason = over_limit(found, self.limits)
        if reason is not None:
            raise QueryTooComplex(f"The query is too complex: {reason}.")
        yield

    def get_results(self) -> dict[str, Any]:
        return cost_extension(self.execution_context, self.cost, self.limits)


def measured_operation(
    context: ExecutionContext,
    limits: LimitsConfig,
    weights: Mapping[str, int],
    measured: MeasureCache,
) -> Measured:
    """The measure of ``context``'s parsed operation with its variables, from ``measured``
    (keyed by text, operation name and the variables' shape) or taken now and kept."""
    assert context.graphql_document is not None
    key = None
    if context.query is not None:
        key = (context.query, context.operation_name, _shape(context.variables))
    found = measured.get(key)
    if found is None:
        found = measure(
            context.schema._schema,
            context.graphql_document,
            operation_name=context.operation_name,
            variables=context.variables,
            limits=limits,
            weights=weights,
        )
        measured.put(key, found)
    return found


def cost_extension(
    context: ExecutionContext, cost: int | None, limits: LimitsConfig
) -> dict[str, Any]:
    """``{"cost": {"requested": N, "limit": M}}`` for a client that sent
    ``"extensions": {"cost": true}``, else nothing."""
    asked = context.operation_extensions or {}
    if asked.get("cost") is not True or cost is None:
        return {}
    return {"cost": {"requested": cost, "limit": limits.max_cost}}


#: (schema, document, rules) -> validation errors (``gateway.lru.ByNode``).
_VALIDATED: ByNode[list[Any]] = ByNode(256)


class ValidatedOnce(SchemaExtension):
    """graphql-core's validation, once per document: its errors are kept (bounded LRU, shared
    by the schema's requests) and keyed by the document's identity — the parse cache hands
    every request with the same text the same document — with the schema and the rules.

    strawberry's ``ValidationCache`` keys an ``lru_cache`` on the document itself, whose
    hash walks the whole syntax tree on every request (88 node hashes per request for the
    bench's full query, under cProfile). A document parsed anew (no parse
    cache in front) is validated again."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        context.pre_execution_errors = validated_once(context)
        yield


def validated_once(context: ExecutionContext) -> list[Any]:
    """graphql-core's validation errors for ``context``'s document and rules (kept once per
    document, see :class:`ValidatedOnce`)."""
    document = context.graphql_document
    assert document is not None
    schema = context.schema._schema
    rules = tuple(context.validation_rules)
    errors = _VALIDATED.get(schema, document, rules)
    if errors is None:
        errors = validate_document(schema, document, rules)
        _VALIDATED.put(schema, document, errors, rules)
    return errors


__all__ = [
    "FIELD_DATASET",
    "QueryLimits",
    "ValidatedOnce",
    "cost_extension",
    "measure",
    "measured_operation",
    "over_limit",
    "parse_limited",
    "validated_once",
]
