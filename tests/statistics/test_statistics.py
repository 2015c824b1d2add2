"""Query.statistics against the seeded demo agencies: the counts are the agencies' own (SQL
GROUP BY for registry, nhis, nps; the aggregate endpoint of the HTTP agencies nts and mma),
no argument combination shows a small count or a derivable suppressed one, and no rows cross
the gateway."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Hashable
from itertools import product
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.aggregates import CATEGORIES, DIMENSIONS, age_band, household_size, income_band
from gateway.demo.processes import demo_agency_headers
from tests.access.conftest import fetch
from tests.conftest import GatewayClient, ScratchDatabase
from tests.statistics.conftest import statistics
from tests.statistics.oracle import derivable

MEASURES = {
    "RESIDENTS": "resident",
    "HOUSEHOLDS": "household",
    "INSURED": "insurance",
    "PENSION": "pension",
    "MILITARY_SERVICE": "military_service",
    "TAX_FILERS": "taxes",
}


async def units(dsn: str, dataset: str) -> list[dict[str, str]]:
    """Each counted record of a dataset as its categories, read straight from the tables."""
    if dataset == "resident":
        rows = await fetch(
            dsn,
            """select r.birth_date, r.sex, r.status, h.region from registry.residents r
               join registry.households h on h.id = r.household_id""",
        )
        today = dt.date.today()
        return [
            {
                "region": r["region"],
                "age_band": age_band(
                    today.year - r["birth_date"].year
                    - ((today.month, today.day) < (r["birth_date"].month, r["birth_date"].day))
                ),
                "sex": r["sex"],
                "status": r["status"],
            }
            for r in rows
        ]  # fmt: skip
    if dataset == "household":
        rows = await fetch(
            dsn,
            """select h.region, count(*) as members from registry.households h
               join registry.residents r on r.household_id = h.id group by h.id, h.region""",
        )
        return [
            {"region": r["region"], "household_size": household_size(r["members"])} for r in rows
        ]
    if dataset == "taxes":
        rows = await fetch(
            dsn,
            """select reported_income from nts.tax_returns
               where tax_year = (select max(tax_year) from nts.tax_returns)""",
        )
        return [{"income_band": income_band(r["reported_income"])} for r in rows]
    column, table = {
        "insurance": ("insured_type", "nhis.enrolments"),
        "pension": ("subscriber_type", "nps.subscriptions"),
        "military_service": ("status", "mma.service_records"),
    }[dataset]
    rows = await fetch(dsn, f"select {column} as value from {table}")
    return [{DIMENSIONS[dataset][0]: r["value"]} for r in rows]


def groupings(dataset: str) -> list[list[str]]:
    dims = DIMENSIONS[dataset]
    return [[], *([d] for d in dims), *([a, b] for a in dims for b in dims if a != b)]


@pytest.mark.parametrize("measure", sorted(MEASURES))
async def test_counts_are_the_agencies_own(
    analyst_k1: GatewayClient, agency_db: ScratchDatabase, measure: str
) -> None:
    """With k = 1 only empty cells are small: every shown count equals the count taken
    directly from the seeded tables, for every grouping (SQL and HTTP agencies alike)."""
    dataset = MEASURES[measure]
    records = await units(agency_db.dsn, dataset)
    assert records
    for by in groupings(dataset):
        table = await statistics(analyst_k1, measure, [d.upper() for d in by])
        expected = Counter(tuple(r[d] for d in by) for r in records)
        keys = [tuple(cell["key"]) for cell in table["cells"]]
        assert keys == list(product(*(CATEGORIES[d] for d in by)))
        shown = [c for c in table["cells"] if not c["suppressed"]]
        assert shown, (measure, by)
        for cell in shown:
            assert cell["count"] == expected[tuple(cell["key"])], (measure, by, cell)
        for cell in table["cells"]:
            if expected[tuple(cell["key"])] == 0:
                assert cell == {"key": cell["key"], "count": None, "suppressed": True}
        assert table["total"] == {"key": [], "count": len(records), "suppressed": False}


async def test_a_filtered_count_is_the_agencies_own(
    analyst_k1: GatewayClient, agency_db: ScratchDatabase
) -> None:
    records = await units(agency_db.dsn, "resident")
    table = await statistics(analyst_k1, "RESIDENTS", ["AGE_BAND"], {"sex": "FEMALE"})
    women = Counter(r["age_band"] for r in records if r["sex"] == "FEMALE")
    assert table["total"]["count"] == sum(women.values())
    for cell in table["cells"]:
        assert cell["count"] in (None, women[cell["key"][0]])


async def test_tax_filers_of_an_earlier_year(
    analyst_k1: GatewayClient, agency_db: ScratchDatabase
) -> None:
    rows = await fetch(agency_db.dsn, "select count(*) from nts.tax_returns where tax_year = 2023")
    table = await statistics(analyst_k1, "TAX_FILERS", ["INCOME_BAND"], {"taxYear": 2023})
    assert table["total"]["count"] == rows[0][0] > 0


# --- no argument combination discloses ------------------------------------------------------


@st.composite
def arguments(draw: st.DrawFn) -> tuple[str, list[str], dict[str, Any]]:
    measure = draw(st.sampled_from(sorted(MEASURES)))
    dims = DIMENSIONS[MEASURES[measure]]
    chosen = draw(st.lists(st.sampled_from(dims), unique=True, max_size=min(2, len(dims))))
    split = draw(st.integers(0, len(chosen)))
    by, filtered = chosen[:split], chosen[split:]
    where: dict[str, Any] = {_camel(d): draw(st.sampled_from(CATEGORIES[d])) for d in filtered}
    if measure == "TAX_FILERS":
        year = draw(st.sampled_from([None, 2022, 2024, 2025]))
        if year is not None:
            where["taxYear"] = year
    return measure, by, where


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(args=arguments())
async def test_no_argument_combination_shows_a_small_or_derivable_count(
    analyst: GatewayClient, args: tuple[str, list[str], dict[str, Any]]
) -> None:
    """Any measure, grouping and filter: no shown count is under k, a suppressed count is
    null, the response is the slice of the same protected tables that every other grouping
    of that population is answered from, and nothing suppressed in any of those tables can be
    worked out from everything they show together (tests/statistics/oracle.py)."""
    measure, by, where = args
    year = {"taxYear": where["taxYear"]} if "taxYear" in where else {}
    fixed = {d: where[_camel(d)] for d in DIMENSIONS[MEASURES[measure]] if _camel(d) in where}
    table = await statistics(analyst, measure, [d.upper() for d in by], where or None)
    k = table["threshold"]
    assert k == 10
    for cell in [*table["cells"], table["total"]]:
        assert cell["suppressed"] == (cell["count"] is None)
        assert cell["count"] is None or cell["count"] >= k, cell

    # The family of tables of this population: the total, each one-way and the two-way table.
    dims = [d for d in DIMENSIONS[MEASURES[measure]] if d in by or d in fixed]
    family: dict[frozenset[tuple[str, str]], int | None] = {}
    for size in range(len(dims) + 1):
        for grouping in ([[]], [[d] for d in dims], [dims])[size]:
            answer = await statistics(analyst, measure, [d.upper() for d in grouping], year or None)
            family[frozenset()] = answer["total"]["count"]
            for cell in answer["cells"]:
                family[frozenset(zip(grouping, cell["key"], strict=True))] = cell["count"]

    # The response is a slice of the family: no second answer for the same value.
    for cell in table["cells"]:
        fixed_here = frozenset({**fixed, **dict(zip(by, cell["key"], strict=True))}.items())
        assert family[fixed_here] == cell["count"]
    assert family[frozenset(fixed.items())] == table["total"]["count"]

    # Nothing suppressed in the family follows from what the family shows.
    cells = list(product(*(CATEGORIES[d] for d in dims)))

    def form(fixed_values: frozenset[tuple[str, str]]) -> dict[Hashable, int]:
        wanted = dict(fixed_values)
        return {
            cell: 1
            for cell in cells
            if all(wanted.get(d, value) == value for d, value in zip(dims, cell, strict=True))
        }

    shown = [form(f) for f, v in family.items() if v is not None]
    hidden = [form(f) for f, v in family.items() if v is None]
    assert derivable(shown, hidden) == []


# --- computed where the data lives ---------------------------------------------------------


async def test_no_record_crosses_the_gateway(
    analyst: GatewayClient, http_agencies: dict[str, str]
) -> None:
    """Statistics ask the agencies for counts: no key is looked up at any agency, SQL or HTTP,
    and the HTTP agencies are asked for their aggregate endpoint, not their batches."""
    agencies = analyst.app.state.agencies.by_code
    before = {code: agency.stats.keys for code, agency in agencies.items()}
    async with httpx.AsyncClient(headers=demo_agency_headers()) as http:
        remote = {c: (await http.get(f"{u}/stats")).json() for c, u in http_agencies.items()}
        for measure in MEASURES:
            await statistics(analyst, measure, [])
        after = {c: (await http.get(f"{u}/stats")).json() for c, u in http_agencies.items()}
    assert {code: agency.stats.keys for code, agency in agencies.items()} == before
    for code in http_agencies:
        assert after[code]["keys"] == remote[code]["keys"]
        assert after[code]["calls"] == remote[code]["calls"] + 1  # one aggregate call
