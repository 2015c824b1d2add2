"""The compiled executor (``gateway/executor.py``) answers as graphql-core does: the same
documents run through a schema with each executor must give equal results — data, and
errors with their messages, paths and locations in the same order. The schema here has what
the gateway's does not always exercise: non-null fields that fail (null propagation to the
nearest nullable parent), lists with failing and awaitable items, ``is_type_of``, literal
and variable arguments, @skip/@include on variables, and what the executor hands back to
graphql-core (unions, mutations, introspection, @defer-free documents only)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import strawberry
from graphql import parse
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway import executor as executor_module
from gateway import limits
from gateway.executor import PlannedExecutor
from gateway.lru import ByNode


class Boom(Exception):
    pass


@strawberry.type
class Item:
    n: int

    @strawberry.field
    def label(self) -> str:
        if self.n == 3:
            raise Boom("three is unlabelled")
        return f"item {self.n}"

    @strawberry.field
    async def later(self) -> int | None:
        await asyncio.sleep(0)
        if self.n == 2:
            raise Boom("two is late")
        return self.n * 10

    @strawberry.field
    def strict(self) -> str:
        return None  # type: ignore[return-value]  # a non-null field answering null


@strawberry.type
class Cat:
    name: str


@strawberry.type
class Dog:
    name: str
    barks: bool


Pet = Annotated[Cat | Dog, strawberry.union("Pet")]


@strawberry.type
class Query:
    @strawberry.field
    def items(self, count: int = 3) -> list[Item]:
        return [Item(n=i) for i in range(count)]

    @strawberry.field
    async def async_items(self, count: int = 3) -> list[Item | None]:
        return [Item(n=i) for i in range(count)]

    @strawberry.field
    def strict_items(self) -> list[Item]:
        return [Item(n=i) for i in range(4)]

    @strawberry.field
    def maybe(self, flag: bool) -> Item | None:
        return Item(n=7) if flag else None

    @strawberry.field
    async def fails(self) -> int:
        raise Boom("root failure")

    @strawberry.field
    def greeting(self, name: str = "you") -> str:
        return f"hello {name}"

    @strawberry.field
    def pets(self) -> list[Pet]:
        return [Cat(name="nabi"), Dog(name="baduk", barks=True)]

    @strawberry.field
    def wrong(self) -> Item:
        return Cat(name="not an item")  # type: ignore[return-value]


@strawberry.type
class Mutation:
    @strawberry.mutation
    def touch(self) -> int:
        return 1


def schemas() -> tuple[strawberry.Schema, strawberry.Schema]:
    # The parse cache hands every run of a text the same document: compiled once.
    compiled = strawberry.Schema(
        query=Query,
        mutation=Mutation,
        execution_context_class=PlannedExecutor,
        extensions=[ParserCache],
    )
    plain = strawberry.Schema(
        query=Query,
        mutation=Mutation,
        execution_context_class=StrawberryGraphQLCoreExecutionContext,
    )
    return compiled, plain


DOCUMENTS: list[tuple[str, dict[str, Any] | None]] = [
    ("{ greeting }", None),
    ('{ greeting(name: "Kim") a: greeting(name: "Lee") }', None),
    ("query($n: String!) { greeting(name: $n) }", {"n": "Park"}),
    ("{ items { n label } }", None),
    ("{ items(count: 5) { n label later } }", None),
    ("{ asyncItems(count: 5) { n label later } }", None),
    ("{ asyncItems(count: 5) { n strict } }", None),  # null propagates to each item
    ("{ strictItems { n strict } }", None),  # ... and through a non-null list to the root
    ("{ strictItems { n label } greeting }", None),
    ("{ fails greeting }", None),  # a non-null root field: data is null
    ("query($f: Boolean!) { maybe(flag: $f) { n label } }", {"f": True}),
    ("query($f: Boolean!) { maybe(flag: $f) { n label } }", {"f": False}),
    (
        "query($yes: Boolean!) { items { n label @include(if: $yes) later @skip(if: $yes) } }",
        {"yes": True},
    ),
    (
        "query($yes: Boolean!) { items { n label @include(if: $yes) later @skip(if: $yes) } }",
        {"yes": False},
    ),
    ("{ items { ...F ... on Item { again: n } } } fragment F on Item { n label }", None),
    ("{ items { __typename n } __typename }", None),
    ("{ pets { __typename ... on Cat { name } ... on Dog { name barks } } }", None),  # union
    ("{ wrong { n } }", None),
    ("{ __schema { queryType { name } } }", None),  # introspection: graphql-core's
    ("mutation { touch }", None),  # mutations: graphql-core's
    ("query($c: Int!) { items(count: $c) { n } }", {"c": 2}),
    ("query($c: Int!) { items(count: $c) { n } }", {"c": "two"}),  # a bad variable
    # A condition variable with a default may be sent as null: graphql-core refuses the
    # directive where it collects it, a field error at that object (here each list item,
    # then up the non-null list), not a request error.
    (
        "query($v: Boolean = true) { maybe(flag: true) { n label @include(if: $v) } greeting }",
        {"v": None},
    ),
    ("query($v: Boolean = true) { items(count: 2) { n label @skip(if: $v) } }", {"v": None}),
    ("query($v: Boolean = true) { greeting @include(if: $v) }", {"v": None}),
    ("query($v: Boolean = true) { greeting @include(if: $v) }", {}),
]


def newest(cache: ByNode[Any]) -> tuple[Any, Any, Any]:
    """The entry last stored: (its node, a weak reference to its schema, its value)."""
    node, schema, value = list(cache.lru.entries.values())[-1]
    return node, schema, value


def as_comparable(result: Any) -> tuple[Any, list[dict[str, Any]] | None]:
    errors = [e.formatted for e in result.errors] if result.errors else None
    return result.data, errors


@pytest.mark.parametrize(("document", "variables"), DOCUMENTS)
async def test_the_compiled_executor_answers_as_graphql_core(
    document: str, variables: dict[str, Any] | None
) -> None:
    compiled, plain = schemas()
    for _ in range(2):  # compiled, then the compiled tree from the cache
        ours = await compiled.execute(document, variable_values=variables)
        theirs = await plain.execute(document, variable_values=variables)
        assert as_comparable(ours) == as_comparable(theirs), document


async def test_queries_are_compiled_once_and_the_rest_is_left_to_graphql_core() -> None:
    compiled, _ = schemas()
    for _ in range(2):
        result = await compiled.execute("{ items { n label } greeting }")
        assert result.data == {"items": [{"n": i, "label": f"item {i}"} for i in range(3)]} | {
            "greeting": "hello you"
        }
    operation, _, entry = newest(executor_module._COMPILED)
    assert operation.loc is not None
    assert operation.loc.source.body == "{ items { n label } greeting }"
    assert [tree is not None for tree in entry.trees.values()] == [True]
    # A union under the selection: not compiled, answered by graphql-core all the same.
    for _ in range(2):
        result = await compiled.execute("{ pets { ... on Cat { name } } }")
    assert result.data == {"pets": [{"name": "nabi"}, {}]}
    _, _, entry = newest(executor_module._COMPILED)
    assert list(entry.trees.values()) == [None]


async def test_each_value_of_a_condition_variable_gets_its_own_tree() -> None:
    compiled, _ = schemas()
    document = "query($yes: Boolean!) { items(count: 1) { n label @include(if: $yes) } }"
    for _ in range(2):
        yes = await compiled.execute(document, variable_values={"yes": True})
        no = await compiled.execute(document, variable_values={"yes": False})
    assert yes.data == {"items": [{"n": 0, "label": "item 0"}]}
    assert no.data == {"items": [{"n": 0}]}
    _, _, entry = newest(executor_module._COMPILED)
    assert set(entry.trees) == {(False,), (True,)}


_shared_parse = functools.lru_cache(maxsize=64)(parse)


class SharedParse(SchemaExtension):
    """One parse cache for every schema, as the gateway's (``gateway.limits``)."""

    def on_parse(self) -> Iterator[None]:
        query = self.execution_context.query
        assert query is not None
        self.execution_context.graphql_document = _shared_parse(query)
        yield


def _answering(word: str) -> strawberry.Schema:
    @strawberry.type
    class Query:
        @strawberry.field
        def word(self) -> str:
            return word

    return strawberry.Schema(
        query=Query, execution_context_class=PlannedExecutor, extensions=[SharedParse]
    )


async def test_a_tree_is_never_run_for_another_schema_at_the_same_address() -> None:
    """The cache is keyed by the schema's id: a schema freed while its entry lives may be
    followed by another at the same address (CPython reuses it), asked the same document
    (the parse cache is shared). Its answer must come from its own resolvers."""
    first, second = _answering("first"), _answering("second")
    document = "{ word }"
    for _ in range(2):
        assert (await first.execute(document)).data == {"word": "first"}
    entries: dict[Any, Any] = executor_module._COMPILED.lru.entries
    (schema_id, operation_id, extra), entry = list(entries.items())[-1]
    assert schema_id == id(first._schema)
    entries[(id(second._schema), operation_id, extra)] = entry  # the same address
    for _ in range(3):
        assert (await second.execute(document)).data == {"word": "second"}


@strawberry.type
class Counting:
    @strawberry.field
    def counted(self, years: list[int]) -> int:
        return len(years)


async def test_literal_arguments_are_not_shared_between_executions() -> None:
    """A resolver handed its arguments as graphql-core coerced them (a ``when_loaded`` twin,
    a contributed field) gets a fresh list every execution from graphql-core; one that
    changes it in place must not change the next request's arguments."""
    schema = strawberry.Schema(
        query=Counting, execution_context_class=PlannedExecutor, extensions=[SharedParse]
    )
    query_type = schema._schema.query_type
    assert query_type is not None

    def counted(_root: Any, _info: Any, years: list[int]) -> int:
        years.append(0)  # e.g. a default year added in place
        return len(years)

    query_type.fields["counted"].resolve = counted
    for _ in range(4):
        result = await schema.execute("{ counted(years: [2023, 2024]) }")
        assert result.data == {"counted": 3}


async def test_past_its_tree_budget_an_operation_is_not_compiled_again_and_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operation with many condition variables: once it holds TREES_PER_OPERATION trees,
    a new combination runs on graphql-core, not compiled anew (and dropped) per request."""
    compiled, plain = schemas()
    document = (
        "query($a: Boolean!, $b: Boolean!, $c: Boolean!, $d: Boolean!, $e: Boolean!) {"
        " items(count: 1) { n @include(if: $a) label @include(if: $b) later @include(if: $c)"
        " again: n @include(if: $d) } greeting @include(if: $e) }"
    )
    calls = 0
    compile_root = PlannedExecutor._compile_root

    def counting(self: PlannedExecutor) -> Any:
        nonlocal calls
        calls += 1
        return compile_root(self)

    monkeypatch.setattr(PlannedExecutor, "_compile_root", counting)
    combinations = [{name: bool(i >> k & 1) for k, name in enumerate("abcde")} for i in range(32)]
    for _ in range(2):
        for variables in combinations:
            ours = await compiled.execute(document, variable_values=variables)
            theirs = await plain.execute(document, variable_values=variables)
            assert as_comparable(ours) == as_comparable(theirs)
    assert calls == executor_module.TREES_PER_OPERATION


async def test_validation_is_never_reused_for_another_schema_at_the_same_address() -> None:
    """``ValidatedOnce`` keys its entries by the schema's id too (gateway.limits): a schema
    at a freed one's address, asked the same document, is validated against itself."""

    @strawberry.type
    class Words:
        @strawberry.field
        def word(self) -> str:
            return "word"

    @strawberry.type
    class Other:
        @strawberry.field
        def other(self) -> str:
            return "other"

    def validated(query: type) -> strawberry.Schema:
        return strawberry.Schema(query=query, extensions=[SharedParse, limits.ValidatedOnce])

    first, second = validated(Words), validated(Other)
    document = "{ word }"
    assert (await first.execute(document)).errors is None
    entries: dict[Any, Any] = limits._VALIDATED.lru.entries
    (schema_id, document_id, rules), entry = list(entries.items())[-1]
    assert schema_id == id(first._schema)
    entries[(id(second._schema), document_id, rules)] = entry  # the same address
    result = await second.execute(document)
    assert result.errors, result
    assert "Cannot query field 'word'" in result.errors[0].message
