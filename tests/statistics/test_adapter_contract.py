"""The compliance suite's statistics check finds an agency whose groupings count different
populations (which would let two groupings be subtracted)."""

from __future__ import annotations

from adapters.aggregates import CATEGORIES, AggregateQuery, Counts
from adapters.memory import InMemoryAdapter
from adapters.records import RESIDENT
from adapters.testing import Case, check_aggregates


class DropsUnknownSex(InMemoryAdapter):
    """Counts 10 residents in total but leaves one out when grouping by sex."""

    async def aggregate(self, query: AggregateQuery) -> Counts:
        if query.dimensions == ("sex",):
            return {("MALE",): 4, ("FEMALE",): 5}
        if "sex" in query.dimensions:
            index = query.dimensions.index("sex")
            return {tuple("MALE" if i == index else self._first(d) for i, d in
                          enumerate(query.dimensions)): 10}  # fmt: skip
        return {tuple(self._first(d) for d in query.dimensions): 10}

    @staticmethod
    def _first(dimension: str) -> str:
        return CATEGORIES[dimension][0]


async def test_groupings_of_different_populations_are_reported() -> None:
    adapter = DropsUnknownSex("registry", records={"resident": {}})
    problems = await check_aggregates(adapter, Case(RESIDENT, (), ()))
    assert "aggregate of resident by ['sex'] counts 9 records, the total is 10" in problems
    assert any("its sex margin is not the table by sex alone" in p for p in problems)
