"""Our adapters keep the contract that integrators' adapters are held to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from adapters.base import Adapter
from adapters.contract import check_adapter
from adapters.http import HTTPAdapter
from adapters.records import DATASETS, HOUSEHOLD, INSURANCE, Dataset, InsuranceRecord
from adapters.sql import SQLAdapter
from gateway.demo.processes import demo_agency_settings
from tests.conftest import ScratchDatabase
from tests.data import BIG_HOUSEHOLD, HEAD_RRN

ABSENT = "900101-1234568"


@pytest.mark.parametrize(
    "dataset", ["resident", "insurance", "pension", "taxes", "military_service"]
)
async def test_sql_adapter_keeps_the_contract(agency_db: ScratchDatabase, dataset: str) -> None:
    async with SQLAdapter("demo", {"dsn": agency_db.dsn}) as adapter:
        problems = await check_adapter(adapter, DATASETS[dataset], [HEAD_RRN], [ABSENT])
    assert problems == []


async def test_sql_adapter_households(agency_db: ScratchDatabase) -> None:
    async with SQLAdapter("registry", {"dsn": agency_db.dsn}) as adapter:
        assert await check_adapter(adapter, HOUSEHOLD, [BIG_HOUSEHOLD], ["H000000000"]) == []
        [household] = await adapter.fetch(HOUSEHOLD, [BIG_HOUSEHOLD])
    assert household.head_rrn == HEAD_RRN
    assert household.member_rrns[0] == HEAD_RRN
    assert len(household.member_rrns) == 20


@pytest.mark.parametrize(("agency", "dataset"), [("nts", "taxes"), ("mma", "military_service")])
async def test_http_adapter_keeps_the_contract(
    http_agencies: dict[str, str], agency: str, dataset: str
) -> None:
    settings = {"url": http_agencies[agency], **demo_agency_settings()}
    async with HTTPAdapter(agency, settings) as adapter:
        problems = await check_adapter(adapter, DATASETS[dataset], [HEAD_RRN], [ABSENT])
    assert problems == []


class SloppyAdapter(Adapter):
    """Breaks the contract: answers each key with the record of the other."""

    datasets = frozenset({"insurance"})

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        import datetime as dt

        record = InsuranceRecord(HEAD_RRN, "EMPLOYEE", dt.date(2020, 1, 1), 1, 0, None)
        return [{} if key == HEAD_RRN else record for key in keys]


async def test_the_check_catches_a_broken_adapter() -> None:
    async with SloppyAdapter("nhis", {}) as adapter:
        problems = await check_adapter(adapter, INSURANCE, [HEAD_RRN], [ABSENT])
    assert any("expected no record" in p for p in problems), problems
    assert any("got dict, not InsuranceRecord" in p for p in problems), problems
