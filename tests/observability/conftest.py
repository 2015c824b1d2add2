"""Fixtures for the observability tests: scraping /metrics, a demo agency we may break."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.demo.processes import AgencyProcess
from tests.conftest import GatewayClient, ScratchDatabase
from tests.resilience.conftest import Agent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(gateway: GatewayClient) -> Samples:
    """Every sample /metrics shows, as Prometheus would parse it."""
    response = await gateway.http.get("/metrics", headers=gateway.headers)
    assert response.status_code == 200, response.text
    return parse(response.text)


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def has(samples: Samples, name: str, **labels: str) -> bool:
    wanted = set(labels.items())
    return any(n == name and wanted <= ls for (n, ls) in samples)


@pytest.fixture(scope="package")
def nts_process(agency_db: ScratchDatabase) -> Iterator[AgencyProcess]:
    with AgencyProcess("nts", agency_db.dsn) as process:
        yield process


@pytest.fixture
async def nts(nts_process: AgencyProcess) -> AsyncIterator[Agent]:
    """This package's own nts agency, answering normally when the test starts and ends."""
    agent = Agent(nts_process.url)
    await agent.fault("ok")
    yield agent
    await agent.fault("ok")


def first_error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]
