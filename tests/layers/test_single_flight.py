"""Single flight over an in-memory agency: concurrent misses for a key make one call."""

from __future__ import annotations

import asyncio

from adapters.memory import InMemoryAdapter
from gateway.errors import AgencyError
from gateway.layers.single_flight import SingleFlight
from tests.layers.conftest import PEOPLE


def flight() -> SingleFlight:
    return SingleFlight(lambda: AgencyError("nts"))


async def test_twenty_concurrent_misses_for_one_key_make_one_call(
    agency: InMemoryAdapter,
) -> None:
    agency.delay_s = 0.02
    layer = flight()

    async def read(keys: list[str]) -> list[object]:
        return list(await agency.fetch(PEOPLE, keys))

    answers = await asyncio.gather(*(layer.run("resident", ["a"], read) for _ in range(20)))
    assert answers == [["record a"]] * 20
    assert agency.calls == [("resident", ("a",))]
    assert len(layer) == 0


async def test_only_the_keys_nobody_is_fetching_are_asked(agency: InMemoryAdapter) -> None:
    agency.delay_s = 0.02
    layer = flight()

    async def read(keys: list[str]) -> list[object]:
        return list(await agency.fetch(PEOPLE, keys))

    first = asyncio.create_task(layer.run("resident", ["a", "b"], read))
    await asyncio.sleep(0.005)
    second = await layer.run("resident", ["b", "c", "a"], read)
    assert await first == ["record a", "record b"]
    assert second == ["record b", "record c", "record a"]
    assert agency.calls == [("resident", ("a", "b")), ("resident", ("c",))]


async def test_waiters_of_a_cancelled_caller_get_an_error_not_a_hang(
    agency: InMemoryAdapter,
) -> None:
    agency.delay_s = 1.0
    layer = flight()

    async def read(keys: list[str]) -> list[object]:
        return list(await agency.fetch(PEOPLE, keys))

    leader = asyncio.create_task(layer.run("resident", ["a"], read))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(layer.run("resident", ["a"], read))
    await asyncio.sleep(0.01)
    leader.cancel()
    [answer] = await asyncio.wait_for(waiter, 0.5)
    assert isinstance(answer, AgencyError)
    assert len(layer) == 0
