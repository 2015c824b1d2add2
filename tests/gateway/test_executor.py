"""The compiled executor (``gateway/executor.py``) answers as graphql-core does: the same
documents run through a schema with each executor must give equal results — data, and
errors with their messages, paths and locations in the same order. The schema here has what
the gateway's does not always exercise: non-null fields that fail (null propagation to the
nearest nullable parent), lists with failing and awaitable items, ``is_type_of``, literal
and variable arguments, @skip/@include on variables, and what the executor hands back to
graphql-core (unions, mutations, introspection, @defer-free documents only)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest
import strawberry
from strawberry.extensions import ParserCache
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from gateway import executor as executor_module
from gateway.executor import PlannedExecutor


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
]


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
    entry = list(executor_module._COMPILED.items.values())[-1]
    assert entry.operation.loc is not None
    assert entry.operation.loc.source.body == "{ items { n label } greeting }"
    assert [tree is not None for tree in entry.trees.values()] == [True]
    # A union under the selection: not compiled, answered by graphql-core all the same.
    for _ in range(2):
        result = await compiled.execute("{ pets { ... on Cat { name } } }")
    assert result.data == {"pets": [{"name": "nabi"}, {}]}
    entry = list(executor_module._COMPILED.items.values())[-1]
    assert list(entry.trees.values()) == [None]


async def test_each_value_of_a_condition_variable_gets_its_own_tree() -> None:
    compiled, _ = schemas()
    document = "query($yes: Boolean!) { items(count: 1) { n label @include(if: $yes) } }"
    for _ in range(2):
        yes = await compiled.execute(document, variable_values={"yes": True})
        no = await compiled.execute(document, variable_values={"yes": False})
    assert yes.data == {"items": [{"n": 0, "label": "item 0"}]}
    assert no.data == {"items": [{"n": 0}]}
    entry = list(executor_module._COMPILED.items.values())[-1]
    assert set(entry.trees) == {(False,), (True,)}
