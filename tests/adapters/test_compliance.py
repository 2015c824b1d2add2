"""Our adapters pass the compliance suite integrators run (adapters.testing), and the suite
catches adapters that break the contract."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest

from adapters.base import Adapter, AgencyFailure
from adapters.http import HTTPAdapter
from adapters.memory import InMemoryAdapter
from adapters.records import (
    HOUSEHOLD,
    INSURANCE,
    MILITARY_SERVICE,
    PENSION,
    RESIDENT,
    TAXES,
    Dataset,
    InsuranceRecord,
    TaxRecord,
)
from adapters.sql import SQLAdapter
from adapters.testing import (
    AdapterCompliance,
    Case,
    check_cancellation,
    check_large_batch,
    check_open_adapter,
    check_timeouts,
)
from gateway.demo.processes import demo_agency_settings
from tests.conftest import ScratchDatabase
from tests.data import BIG_HOUSEHOLD, HEAD_RRN

ABSENT = "900101-1234568"
OTHER = "850315-2000003"
CLOSED_PORT = "127.0.0.1:1"


# -- our SQL adapter, on the test database -------------------------------------------


class SQLCompliance(AdapterCompliance):
    present = (HEAD_RRN,)
    absent = (ABSENT,)

    @pytest.fixture(autouse=True)
    def _database(self, agency_db: ScratchDatabase) -> None:
        self.dsn = agency_db.dsn

    def make_adapter(self) -> SQLAdapter:
        return SQLAdapter("registry", {"dsn": self.dsn})

    def make_unreachable_adapter(self) -> SQLAdapter:
        return SQLAdapter("registry", {"dsn": f"postgresql://postgres@{CLOSED_PORT}/none"})


class TestSQLResident(SQLCompliance):
    dataset = RESIDENT


class TestSQLHousehold(SQLCompliance):
    dataset = HOUSEHOLD
    present = (BIG_HOUSEHOLD,)
    absent = ("H000000000",)


class TestSQLInsurance(SQLCompliance):
    dataset = INSURANCE


class TestSQLTaxes(SQLCompliance):
    dataset = TAXES


class TestSQLPension(SQLCompliance):
    dataset = PENSION


class TestSQLMilitaryService(SQLCompliance):
    dataset = MILITARY_SERVICE


# -- our HTTP adapter, against the demo HTTP agencies --------------------------------


class HTTPCompliance(AdapterCompliance):
    agency: str
    present = (HEAD_RRN,)
    absent = (ABSENT,)

    @pytest.fixture(autouse=True)
    def _agencies(self, http_agencies: dict[str, str]) -> None:
        self.url = http_agencies[self.agency]

    def make_adapter(self) -> HTTPAdapter:
        return HTTPAdapter(self.agency, {"url": self.url, **demo_agency_settings()})

    def make_unreachable_adapter(self) -> HTTPAdapter:
        return HTTPAdapter(self.agency, {"url": f"http://{CLOSED_PORT}"})


class TestHTTPTaxes(HTTPCompliance):
    agency = "nts"
    dataset = TAXES


class TestHTTPMilitaryService(HTTPCompliance):
    agency = "mma"
    dataset = MILITARY_SERVICE


# -- the in-memory adapter integrators build on --------------------------------------


def insurance(rrn: str) -> InsuranceRecord:
    return InsuranceRecord(rrn, "EMPLOYEE", dt.date(2020, 1, 1), 1, 0, None)


def tax(rrn: str, year: int) -> TaxRecord:
    return TaxRecord(rrn, year, 1, 1, 1, 0)


class TestInMemoryInsurance(AdapterCompliance):
    dataset = INSURANCE
    present = (HEAD_RRN, OTHER)
    absent = (ABSENT,)
    failing = ("800101-1000002",)

    def make_adapter(self) -> InMemoryAdapter:
        return InMemoryAdapter(
            "nhis",
            {},
            records={"insurance": {k: insurance(k) for k in self.present}},
            failures={k: AgencyFailure("nhis: no such key today") for k in self.failing},
            delay_s=0.001,
            max_batch=50,
        )


class TestInMemoryTaxes(AdapterCompliance):
    dataset = TAXES
    present = (HEAD_RRN,)
    absent = (ABSENT, OTHER)

    def make_adapter(self) -> InMemoryAdapter:
        # OTHER answers (): no records, as None would.
        taxes = {HEAD_RRN: (tax(HEAD_RRN, 2024), tax(HEAD_RRN, 2025)), OTHER: ()}
        return InMemoryAdapter("nts", {}, records={"taxes": taxes})


async def test_in_memory_adapter_splits_batches_over_its_limit() -> None:
    async with InMemoryAdapter("nhis", {"max_batch": 2}, records={"insurance": {}}) as adapter:
        assert await adapter.fetch(INSURANCE, ["a", "b", "c", "d", "e"]) == [None] * 5
    assert [keys for _, keys in adapter.calls] == [("a", "b"), ("c", "d"), ("e",)]


async def test_in_memory_adapter_down_raises() -> None:
    async with InMemoryAdapter("nhis", records={"insurance": {}}) as adapter:
        adapter.down = True
        with pytest.raises(AgencyFailure, match="down"):
            await adapter.ping()
        with pytest.raises(AgencyFailure, match="down"):
            await adapter.fetch(INSURANCE, [HEAD_RRN])


# -- the suite catches adapters that break the contract ------------------------------

CASE = Case(INSURANCE, [HEAD_RRN], [ABSENT], patience_s=2)


class SloppyAdapter(Adapter):
    """Answers a dict for the present key and a record for the absent one."""

    datasets = frozenset({"insurance"})

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        return [{} if key == HEAD_RRN else insurance(HEAD_RRN) for key in keys]


class SwallowingAdapter(Adapter):
    """Turns cancellation into a failed batch: the gateway's timeouts stop working."""

    datasets = frozenset({"insurance"})

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            raise AgencyFailure("cancelled") from None
        return [insurance(k) if k == HEAD_RRN else None for k in keys]


class LeakyAdapter(Adapter):
    """Loses a pool slot to every call cut short: after a few, it hangs."""

    datasets = frozenset({"insurance"})

    def __init__(self, agency: str, settings: dict[str, Any]) -> None:
        super().__init__(agency, settings)
        self.slots = asyncio.Semaphore(5)

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        await self.slots.acquire()
        await asyncio.sleep(0.002)
        self.slots.release()  # not in a finally: a cancelled call keeps its slot
        return [insurance(k) if k == HEAD_RRN else None for k in keys]


class SmallBatchAdapter(Adapter):
    """An agency that refuses more than 100 keys, and an adapter that does not split."""

    datasets = frozenset({"insurance"})

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        if len(keys) > 100:
            raise AgencyFailure("413 Payload Too Large")
        return [insurance(k) if k == HEAD_RRN else None for k in keys]


async def test_the_suite_catches_wrong_records() -> None:
    async with SloppyAdapter("nhis", {}) as adapter:
        problems = await check_open_adapter(adapter, CASE)
    assert any("expected no record" in p for p in problems), problems
    assert any("got dict, not InsuranceRecord" in p for p in problems), problems


async def test_the_suite_catches_a_swallowed_cancellation() -> None:
    async with SwallowingAdapter("nhis", {}) as adapter:
        assert await check_open_adapter(adapter, CASE) == []
        problems = await check_cancellation(adapter, CASE)
        assert any("let asyncio.CancelledError through" in p for p in problems), problems
        problems = await check_timeouts(adapter, CASE)
    assert any("not TimeoutError" in p for p in problems), problems


async def test_the_suite_catches_slots_lost_to_timeouts() -> None:
    async with LeakyAdapter("nhis", {}) as adapter:
        assert await check_open_adapter(adapter, CASE) == []
        problems = await check_timeouts(adapter, CASE)
    assert any("did not finish within" in p for p in problems), problems


async def test_the_suite_catches_an_unsplit_large_batch() -> None:
    fillers = [f"990101-9{i:06d}" for i in range(500)]
    async with SmallBatchAdapter("nhis", {}) as adapter:
        assert await check_open_adapter(adapter, CASE) == []
        with pytest.raises(AssertionError, match="413 Payload Too Large"):
            await check_large_batch(adapter, CASE, fillers)


async def test_http_adapter_survives_requests_cancelled_in_flight(
    http_agencies: dict[str, str],
) -> None:
    """Regression (found by the suite): cancelled requests leaked httpx pool slots
    (encode/httpcore#1093); after max_concurrency of the gateway's timeouts every call
    answered PoolTimeout until restart."""
    settings = {
        "url": http_agencies["nts"],
        "max_concurrency": 2,
        "timeout_ms": 1000,
        **demo_agency_settings(),
    }
    async with HTTPAdapter("nts", settings) as adapter:
        for _ in range(5):
            tasks = [asyncio.ensure_future(adapter.fetch(TAXES, [HEAD_RRN])) for _ in range(10)]
            await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        [records] = await adapter.fetch(TAXES, [HEAD_RRN])
    assert records


async def test_the_suite_catches_fetch_after_close_and_a_failing_start() -> None:
    from adapters.testing import check_close, check_unreachable

    class Careless(SmallBatchAdapter):
        async def start(self) -> None:
            if self.settings.get("down"):
                raise OSError("connection refused")

    assert await check_close(lambda: Careless("nhis", {}), CASE) == [
        "fetch after close() did not raise"
    ]
    problems = await check_unreachable(lambda: Careless("nhis", {"down": True}), CASE)
    assert problems == ["start() raised OSError for an unreachable agency: it must not"]


def test_the_suite_imports_without_pytest() -> None:
    """pytest is a test extra: the gateway and the suite's checks must import without it."""
    import subprocess
    import sys

    code = "import sys; sys.modules['pytest'] = None; import adapters.testing, adapters.contract"
    subprocess.run([sys.executable, "-c", code], check=True)
