"""Compiled execution: a query's selection worked out once, then run without graphql-core's
per-field dispatch.

graphql-core executes a field by looking its definition up in the schema, asking the
middleware for a resolver, coercing arguments, then completing the value through a chain of
type predicates (non-null? list? leaf? abstract? object?), and it collects the subfields of
every object anew in each request. None of that depends on data: for one operation it is
the same every time. ``PlannedExecutor`` (the schema's executor class) works it out once per
(operation, values of the variables its @skip/@include read) — the parse cache
(``gateway.limits.parse_limited``) hands every request with the same text the same document
node — into a tree of ``Step``s — the
field's definition, its resolver, its literal arguments coerced once, and its completion as
a precomputed ``Shape`` — and runs that tree.

Same semantics, by construction: fields are collected by graphql-core's own
``collect_fields``/``collect_subfields``; the run mirrors graphql-core's ``execute_fields``,
``execute_field`` and ``complete_*`` step by step (the same resolve-info objects, paths,
located errors, null propagation, error collection and concurrency); anything outside the
compiled subset falls back to graphql-core, whole (``execute_operation``) or for one value
(``complete_value``). Operations not compiled: mutations and subscriptions, anything with
a directive other than @skip/@include, abstract types, schema introspection (``__schema``,
``__type``), resolver middleware, an abort signal. The differential test
(``tests/access/test_planned.py``) runs random documents through this executor and through
graphql-core's and compares the response bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from graphql import (
    DirectiveNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    OperationType,
    VariableNode,
    located_error,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    GroupedFieldSet,
    collect_fields,
    collect_subfields,
)
from graphql.execution.executor import invalid_return_type_error
from graphql.execution.values import get_argument_values
from graphql.language import Visitor, visit
from graphql.pyutils import Path, Undefined, gather_with_cancel, is_iterable
from graphql.type import is_leaf_type, is_list_type, is_non_null_type, is_object_type
from strawberry.schema.schema import (
    StrawberryGraphQLCoreExecutionContext,
    _OperationContextAwareGraphQLResolveInfo,
)

from gateway.lru import ByNode

#: Compiled operations kept (least recently used out first); each holds one tree per
#: combination of the values its @skip/@include variables took.
CACHE_SIZE = 256
#: Trees kept per operation (combinations of its condition variables); past that graphql-core.
TREES_PER_OPERATION = 16
_CONDITIONS = frozenset({"skip", "include"})
_Info = _OperationContextAwareGraphQLResolveInfo
# NamedTuples built from a tuple without their Python-level ``__new__``.
_info = cast("Callable[[type[_Info], tuple[Any, ...]], Any]", tuple.__new__)
_path = cast("Callable[[type[Path], tuple[Any, ...]], Path]", tuple.__new__)
_INTROSPECTION = frozenset({"__schema", "__type"})


class Kind(enum.Enum):
    NON_NULL = 1
    LIST = 2
    LEAF = 3
    OBJECT = 4


@dataclass(slots=True)
class Shape:
    """How a value of one output type is completed."""

    kind: Kind
    type: GraphQLOutputType
    inner: Shape | None = None  # NON_NULL, LIST: of the wrapped type
    steps: tuple[Step, ...] = ()  # OBJECT: its selected fields


@dataclass(slots=True)
class Step:
    """One response key of an object's selection: graphql-core's ``execute_field`` with
    everything that does not depend on data decided."""

    key: str
    name: str
    parent_type: GraphQLObjectType
    parent_name: str
    field_def: GraphQLField
    details: FieldDetailsList
    nodes: list[FieldNode]
    resolve: Callable[..., Any]
    #: Arguments coerced once (literal scalars and enums only); None: coerced per execution
    #: (variables, lists, input objects).
    args: dict[str, Any] | None
    shape: Shape
    #: A scalar or enum field (``Leaf`` or ``Leaf!``): completed in line.
    leaf: GraphQLLeafType | None = None
    non_null: bool = False
    #: What every resolve info of this field starts with (name, nodes, type, parent type).
    head: tuple[Any, ...] = ()


class Unsupported(Exception):
    """The operation is outside the compiled subset: graphql-core executes it."""


@dataclass(slots=True)
class Compiled:
    """One operation: its tree per combination of condition variables."""

    conditions: tuple[str, ...] | None  # variables @skip/@include read; None: not compiled
    trees: dict[Hashable, tuple[Step, ...] | None]


#: (schema, operation node) -> its trees (``gateway.lru.ByNode``: by identity, never by the
#: syntax tree's hash; a freed schema's entries never serve another at its address).
_COMPILED: ByNode[Compiled] = ByNode(CACHE_SIZE)


def _conditions(document_or_operation: Any) -> tuple[str, ...] | None:
    """The variables read by @skip/@include in ``document_or_operation``; None if it uses
    any other directive (incremental delivery, error propagation, unknown ones)."""
    found: set[str] = set()
    other = False

    class Directives(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            nonlocal other
            if node.name.value not in _CONDITIONS:
                other = True
            for argument in node.arguments or ():
                if isinstance(argument.value, VariableNode):
                    found.add(argument.value.name.value)

    visit(document_or_operation, Directives())
    return None if other else tuple(sorted(found))


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, running compiled queries (see the module's docstring)."""

    _tail: tuple[Any, ...] = ()

    def execute_operation(self, serially: bool | None = None) -> Any:
        tree = self._tree() if serially is None else None
        if tree is None:
            return super().execute_operation(serially)
        # What every resolve info of this execution ends with (see ``_field``).
        self._tail = (
            self.schema,
            self.fragment_definitions,
            self.root_value,
            self.operation,
            self.variable_values.coerced,
            self.context_value,
            self.is_awaitable,
            self.abort_signal,
            self.async_helpers,
            self.operation_extensions,
        )
        try:
            result = self._fields(tree, self.root_value, None)
        except GraphQLError as error:
            self.collected_errors.add(error, None)
            return self.build_response(None)
        if self.is_awaitable(result):

            async def await_result() -> Any:
                try:
                    data = await result
                except GraphQLError as error:
                    self.collected_errors.add(error, None)
                    return self.build_response(None)
                return self.build_response(data)

            return await_result()
        return self.build_response(cast("dict[str, Any]", result))

    def build_response(self, data: dict[str, Any] | None) -> Any:
        """graphql-core's, then the executor lets go of itself: its resolve-info helpers are
        its own bound methods, so it sits in a reference cycle with the request's context
        behind it (loaders, futures, records: the whole request), kept until the collector
        walks it (cold household: 0.31 of 4.1 ms per request, pauses up to 77 ms; BENCHMARKS.md)."""
        try:
            return super().build_response(data)
        finally:
            self.async_helpers = _ENDED
            tail = self._tail
            if tail:  # it holds the helpers too: work still settling gets the ended ones
                self._tail = (*tail[:8], _ENDED, *tail[9:])

    # Compiling ---------------------------------------------------------------------------

    def _tree(self) -> tuple[Step, ...] | None:
        operation = self.operation
        if (
            operation.operation is not OperationType.QUERY
            or self.abort_signal is not None
            or (self.middleware_manager is not None and self.middleware_manager.middlewares)
            or self.schema.query_type is None
        ):
            return None
        compiled = _COMPILED.get(self.schema, operation)
        if compiled is None:
            # The fragments' condition variables count too.
            found = [_conditions(operation)]
            found += [_conditions(f.definition) for f in self.fragments.values()]
            conditions = (
                None
                if any(names is None for names in found)
                else tuple(sorted({name for names in found for name in names or ()}))
            )
            compiled = Compiled(conditions, {})
            _COMPILED.put(self.schema, operation, compiled)
        if compiled.conditions is None:
            return None
        coerced = self.variable_values.coerced
        signature = tuple(coerced.get(name, Undefined) for name in compiled.conditions)
        try:
            return compiled.trees[signature]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: not worth a tree
            return None
        if len(compiled.trees) >= TREES_PER_OPERATION:
            # Compiled every time and never kept, a tree would cost each request a walk of
            # the whole selection, reached or not (graphql-core collects only what it
            # reaches): a caller varying the conditions would make every request pay it.
            return None
        try:
            tree: tuple[Step, ...] | None = self._compile_root()
        except (Unsupported, GraphQLError, RecursionError):
            # GraphQLError: a selection graphql-core refuses only where it collects it (a
            # condition variable declared ``Boolean = true`` and sent as null): there it is
            # a field error of the object holding the selection, the rest served, whereas
            # raised from here it would end the whole request. graphql-core answers it.
            tree = None
        compiled.trees[signature] = tree
        return tree

    def _compile_root(self) -> tuple[Step, ...]:
        root_type = self.schema.query_type
        assert root_type is not None
        grouped, defer_usages, _ = collect_fields(
            self.schema,
            self.fragments,
            self.variable_values,
            root_type,
            self.operation,
            self.hide_suggestions,
        )
        if defer_usages:
            raise Unsupported
        return self._compile_fields(root_type, grouped)

    def _compile_fields(
        self, parent_type: GraphQLObjectType, grouped: GroupedFieldSet
    ) -> tuple[Step, ...]:
        steps = []
        for key, details in grouped.items():
            first = details[0]
            if first.fragment_variable_values is not None or first.defer_usage is not None:
                raise Unsupported
            name = first.node.name.value
            if name in _INTROSPECTION:
                raise Unsupported
            field_def = self.schema.get_field(parent_type, name)
            if field_def is None:
                continue  # graphql-core leaves such a key out too
            args: dict[str, Any] | None = {}
            if field_def.args or first.node.arguments:
                args = None
                if not _reads_variables(first.node):
                    try:
                        args = get_argument_values(
                            field_def, first.node, self.variable_values, None,
                            self.hide_suggestions,
                        )  # fmt: skip
                    except GraphQLError:
                        args = None  # the error is raised, located, at execution
                    if args is not None and not all(map(_immutable, args.values())):
                        # A list or an input object: every execution gets its own, as from
                        # graphql-core, or a resolver changing it in place (one handed
                        # graphql-core's values: a when_loaded twin, a contributed field)
                        # would change the next request's arguments.
                        args = None
            shape = self._compile_shape(field_def.type, details)
            leaf = shape if shape.kind is Kind.LEAF else shape.inner
            nodes = [d.node for d in details]
            steps.append(
                Step(
                    key=key,
                    name=name,
                    parent_type=parent_type,
                    parent_name=parent_type.name,
                    field_def=field_def,
                    details=details,
                    nodes=nodes,
                    resolve=field_def.resolve or self.field_resolver,
                    args=args,
                    shape=shape,
                    leaf=(
                        cast("GraphQLLeafType", leaf.type)
                        if leaf is not None and leaf.kind is Kind.LEAF
                        else None
                    ),
                    non_null=shape.kind is Kind.NON_NULL,
                    head=(name, nodes, field_def.type, parent_type),
                )
            )
        return tuple(steps)

    def _compile_shape(self, type_: GraphQLOutputType, details: FieldDetailsList) -> Shape:
        if is_non_null_type(type_):
            inner = type_.of_type
            return Shape(Kind.NON_NULL, type_, self._compile_shape(inner, details))
        if is_list_type(type_):
            inner = type_.of_type
            return Shape(Kind.LIST, type_, self._compile_shape(inner, details))
        if is_leaf_type(type_):
            return Shape(Kind.LEAF, type_)
        if is_object_type(type_):
            object_type = type_
            grouped, defer_usages, _ = collect_subfields(
                self.schema,
                self.fragments,
                self.variable_values,
                self.operation,
                object_type,
                details,
                self.hide_suggestions,
            )
            if defer_usages:
                raise Unsupported
            return Shape(Kind.OBJECT, type_, steps=self._compile_fields(object_type, grouped))
        raise Unsupported  # interfaces and unions

    # Running: graphql-core's execute_fields, execute_field and complete_* ----------------

    def _fields(self, steps: Sequence[Step], source: Any, path: Path | None) -> Any:
        results: dict[str, Any] = {}
        awaitable_keys: list[str] = []
        tail = self._tail
        field = self._field
        try:
            for step in steps:
                field(step, source, _path(Path, (path, step.key, step.parent_name)), tail,
                      results, awaitable_keys)  # fmt: skip
        except Exception:
            if awaitable_keys:
                self.settle_in_background([results[key] for key in awaitable_keys])
            raise
        if not awaitable_keys:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_keys) == 1:
                key = awaitable_keys[0]
                results[key] = await results[key]
            else:
                awaited = await gather_with_cancel(*(results[key] for key in awaitable_keys))
                results.update(zip(awaitable_keys, awaited, strict=True))
            return results

        return get_results()

    def _field(
        self,
        step: Step,
        source: Any,
        path: Path,
        tail: tuple[Any, ...],
        results: dict[str, Any],
        awaitable_keys: list[str],
    ) -> None:
        """graphql-core's ``execute_field``, its result put in ``results`` (its key in
        ``awaitable_keys`` too when it is awaitable)."""
        info = _info(_Info, (*step.head, path, *tail))
        try:
            args = step.args
            if args is None:
                args = get_argument_values(
                    step.field_def, step.nodes[0], self.variable_values, None,
                    self.hide_suggestions,
                )  # fmt: skip
            result = step.resolve(source, info, **args)
            if self.is_awaitable(result):
                results[step.key] = self._awaited(step.shape, step, info, path, result)
                awaitable_keys.append(step.key)
                return
            leaf = step.leaf
            if leaf is not None:  # complete_value for Leaf and Leaf!, in line
                if isinstance(result, Exception):
                    raise result
                if result is None or result is Undefined:
                    if step.non_null:
                        raise TypeError(
                            "Cannot return null for non-nullable field"
                            f" {step.parent_name}.{step.name}."
                        )
                    results[step.key] = None
                else:
                    results[step.key] = self.complete_leaf_value(leaf, result)
                return
            completed = self._complete(step.shape, step, info, path, result)
            if self.is_awaitable(completed):
                results[step.key] = self._completing(step.shape, step, path, completed)
                awaitable_keys.append(step.key)
                return
        except Exception as raw_error:
            self._error(raw_error, step.shape, step, path)
            completed = None
        results[step.key] = completed

    async def _completing(self, shape: Shape, step: Step, path: Path, completed: Any) -> Any:
        try:
            return await completed
        except Exception as raw_error:
            self._error(raw_error, shape, step, path)
            return None

    async def _awaited(self, shape: Shape, step: Step, info: Any, path: Path, value: Any) -> Any:
        try:
            resolved = await value
            completed = self._complete(shape, step, info, path, resolved)
            if self.is_awaitable(completed):
                completed = await completed
        except Exception as raw_error:
            self._error(raw_error, shape, step, path)
            completed = None
        return completed

    def _error(self, raw_error: Exception, shape: Shape, step: Step, path: Path) -> None:
        """graphql-core's ``handle_field_error``."""
        error = located_error(raw_error, step.nodes, path.as_list())
        if self.error_propagation and shape.kind is Kind.NON_NULL:
            raise error
        self.collected_errors.add(error, path)

    def _complete(self, shape: Shape, step: Step, info: Any, path: Path, result: Any) -> Any:
        if isinstance(result, Exception):
            raise result
        kind = shape.kind
        if kind is Kind.NON_NULL:
            assert shape.inner is not None
            completed = self._complete(shape.inner, step, info, path, result)
            if completed is None:
                raise TypeError(
                    "Cannot return null for non-nullable field"
                    f" {info.parent_type}.{info.field_name}."
                )
            return completed
        if result is None or result is Undefined:
            return None
        if kind is Kind.LEAF:
            return self.complete_leaf_value(cast("GraphQLLeafType", shape.type), result)
        if kind is Kind.OBJECT:
            object_type = cast("GraphQLObjectType", shape.type)
            if object_type.is_type_of:
                is_type_of = object_type.is_type_of(result, info)
                if self.is_awaitable(is_type_of):  # as graphql-core does it
                    return self.complete_value(shape.type, step.details, info, path, result, None)
                if not is_type_of:
                    raise invalid_return_type_error(object_type, result, step.details)
            return self._fields(shape.steps, result, path)
        return self._list(shape, step, info, path, result)

    def _list(self, shape: Shape, step: Step, info: Any, path: Path, result: Any) -> Any:
        if self.is_async_iterable(result):  # graphql-core's own way
            return self.complete_value(shape.type, step.details, info, path, result, None)
        if not is_iterable(result):
            raise GraphQLError(
                "Expected Iterable, but did not find one for field"
                f" '{info.parent_type}.{info.field_name}'."
            )
        item_shape = shape.inner
        assert item_shape is not None
        is_awaitable = self.is_awaitable
        completed_results: list[Any] = []
        append = completed_results.append
        awaitable_indices: list[int] = []
        iterator = iter(result)
        index = 0
        try:
            for item in iterator:
                item_path = _path(Path, (path, index, None))
                if is_awaitable(item):
                    append(self._awaited(item_shape, step, info, item_path, item))
                    awaitable_indices.append(index)
                else:
                    try:
                        completed = self._complete(item_shape, step, info, item_path, item)
                        if is_awaitable(completed):
                            append(self._completing(item_shape, step, item_path, completed))
                            awaitable_indices.append(index)
                        else:
                            append(completed)
                    except Exception as raw_error:
                        self._error(raw_error, item_shape, step, item_path)
                        append(None)
                index += 1
        except Exception:
            pending = [completed_results[i] for i in awaitable_indices]
            pending.extend(item for item in iterator if is_awaitable(item))
            if pending:
                self.settle_in_background(pending)
            raise
        if not awaitable_indices:
            return completed_results

        async def get_completed_results() -> list[Any]:
            if len(awaitable_indices) == 1:
                i = awaitable_indices[0]
                completed_results[i] = await completed_results[i]
            else:
                awaited = await gather_with_cancel(
                    *(completed_results[i] for i in awaitable_indices)
                )
                for i, value in zip(awaitable_indices, awaited, strict=True):
                    completed_results[i] = value
            return completed_results

        return get_completed_results()


async def _gather_after(values: Sequence[Any]) -> list[Any]:
    raise RuntimeError("the operation has been answered")


def _track_after(values: Sequence[Any]) -> None:
    raise RuntimeError("the operation has been answered")


#: Resolve-info helpers of an executor whose operation is answered (see ``build_response``).
_ENDED = GraphQLResolveInfoHelpers(gather=_gather_after, track=_track_after)

_IMMUTABLE = (str, int, float, bool, enum.Enum, type(None))


def _immutable(value: Any) -> bool:
    return isinstance(value, _IMMUTABLE)


def _reads_variables(node: FieldNode) -> bool:
    found = False

    class Variables(Visitor):
        def enter_variable(self, *_: Any) -> None:
            nonlocal found
            found = True

    for argument in node.arguments or ():
        visit(argument, Variables())
    return found
