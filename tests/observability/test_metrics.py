"""Every metric on /metrics is there and moves when the gateway does the thing it counts."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.config import Config, DatabaseConfig, MetricsConfig, PolicyConfig
from gateway.metrics import OperationNames
from gateway.runtime import DEMO_POLICY
from tests.conftest import (
    GatewayClient,
    ScratchDatabase,
    create_database,
    drop_database,
    gateway_client,
    make_config,
    token,
)
from tests.data import HEAD_RRN, members
from tests.observability.conftest import first_error_codes, has, moved, scrape, value
from tests.resilience.conftest import TAXES, Agent, cache_of, http_agency

AGENCIES = "query AgencyList { agencies { code } }"
HOUSEHOLD = """query Household($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name household { members { name insurance { insuredType } } } } }"""
#: A member of the test household nobody consents for in these tests' database.
OTHER_RRN = members()[3][0]


async def test_requests_and_durations_by_operation_and_outcome(config: Config) -> None:
    async with gateway_client(config) as gateway:
        before = await scrape(gateway)
        await gateway.query(AGENCIES)
        await gateway.query("{ agencies { code } }")
        broken = await gateway.http.post(
            "/graphql",
            content=b"{",
            headers={**gateway.headers, "content-type": "application/json"},
        )
        assert broken.status_code == 400
        invalid = await gateway.post({"query": "query Invalid { nope }"})
        assert first_error_codes(invalid.json()) == ["BAD_REQUEST"]
        anonymous = await gateway.http.post("/graphql", json={"query": AGENCIES})
        assert anonymous.status_code == 401
        after = await scrape(gateway)

    def requests(operation: str, code: str) -> float:
        return moved(before, after, "gateway_requests_total", operation=operation, code=code)

    assert requests("AgencyList", "OK") == 1
    assert requests("anonymous", "OK") == 1
    assert requests("-", "BAD_REQUEST") == 2  # never executed: no name taken from them
    assert requests("-", "UNAUTHENTICATED") == 1
    assert value(after, "gateway_requests_total", operation="Invalid") == 0
    duration = "gateway_request_duration_seconds"
    labels = {"operation": "AgencyList", "code": "OK"}
    assert moved(before, after, f"{duration}_count", **labels) == 1
    assert moved(before, after, f"{duration}_bucket", le="+Inf", **labels) == 1
    assert 0 < moved(before, after, f"{duration}_sum", **labels) < 10


async def test_the_operation_label_takes_a_bounded_set_of_names(config: Config) -> None:
    bounded = dataclasses.replace(config, metrics=MetricsConfig(max_operations=2))
    async with gateway_client(bounded) as gateway:
        before = await scrape(gateway)
        for name in ("First", "Second", "Third", "Fourth", "First"):
            await gateway.query(f"query {name} {{ agencies {{ code }} }}")
        # A name holding a number an RRN could start with is never a label.
        await gateway.query("query Q940812 { agencies { code } }")
        after = await scrape(gateway)
    names = {
        dict(labels)["operation"]
        for (name, labels), _ in after.items()
        if name == "gateway_requests_total" and dict(labels)["operation"] in
        {"First", "Second", "Third", "Fourth", "Q940812", "other"}
    }  # fmt: skip
    assert {"First", "Second", "other"} <= names
    assert not names & {"Third", "Fourth", "Q940812"}
    assert moved(before, after, "gateway_requests_total", operation="First") == 2
    assert moved(before, after, "gateway_requests_total", operation="other") == 3


async def test_authorization_denials_by_code(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    config = make_config(agency_db.dsn, http_agencies, policy=PolicyConfig(file=str(DEMO_POLICY)))
    officer = token("welfare_officer", agency="welfare")
    query = """query Eligibility($rrn: String!) {
      resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
        name taxes { year } militaryService { status } } }"""
    async with gateway_client(config, officer) as gateway:
        before = await scrape(gateway.as_(token("operator")))
        body = await gateway.query(query, {"rrn": OTHER_RRN})
        assert sorted(first_error_codes(body)) == ["CONSENT_REQUIRED", "FORBIDDEN"]
        assert body["data"]["resident"]["name"]
        refused = await gateway.http.post(
            "/graphql", json={"query": AGENCIES}, headers={"Authorization": "Bearer nope"}
        )
        assert refused.status_code == 401
        after = await scrape(gateway.as_(token("operator")))
    denials = "gateway_authorization_denials_total"
    assert moved(before, after, denials, code="FORBIDDEN") == 1
    assert moved(before, after, denials, code="CONSENT_REQUIRED") == 1
    assert moved(before, after, denials, code="UNAUTHENTICATED") == 1
    # The request itself is labelled with its most severe code.
    assert moved(before, after, "gateway_requests_total", operation="Eligibility",
                 code="FORBIDDEN") == 1  # fmt: skip


async def test_agency_calls_batch_sizes_and_latency(config: Config) -> None:
    async with gateway_client(config) as gateway:
        before = await scrape(gateway)
        assert has(before, "gateway_agency_calls_total", agency="nhis", dataset="insurance")
        body = await gateway.query(HOUSEHOLD, {"rrn": HEAD_RRN})
        size = len(body["data"]["resident"]["household"]["members"])
        assert size > 1
        after = await scrape(gateway)
    labels = {"agency": "nhis", "dataset": "insurance"}
    assert moved(before, after, "gateway_agency_calls_total", **labels) == 1
    assert moved(before, after, "gateway_agency_batch_size_count", **labels) == 1
    assert moved(before, after, "gateway_agency_batch_size_sum", **labels) == size
    assert moved(before, after, "gateway_agency_batch_size_bucket", le="1.0", **labels) == 0
    assert moved(before, after, "gateway_agency_call_duration_seconds_count", **labels) == 1
    assert 0 < moved(before, after, "gateway_agency_call_duration_seconds_sum", **labels) < 5
    # The head, then the household, then its members: three registry calls, not one per member.
    calls = "gateway_agency_calls_total"
    assert moved(before, after, calls, agency="registry", dataset="resident") == 2
    assert moved(before, after, calls, agency="registry", dataset="household") == 1


async def test_agency_errors_by_code_retries_and_the_circuit_state(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    breaker = {"breaker_threshold": 3, "breaker_reset_s": 30}
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", nts.url, retries=1, timeout_ms=200, settings=breaker)},
    )
    errors = "gateway_agency_errors_total"
    async with gateway_client(config) as gateway:
        start = await scrape(gateway)
        assert value(start, "gateway_agency_circuit_state", agency="nts") == 0
        await nts.fault("error")
        failed = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert first_error_codes(failed) == ["AGENCY_UNAVAILABLE"]
        failing = await scrape(gateway)
        assert moved(start, failing, errors, agency="nts", code="AGENCY_UNAVAILABLE",
                     reason="failure") == 2  # fmt: skip
        assert moved(start, failing, "gateway_agency_retries_total", agency="nts") == 1

        await nts.fault("ok", delay_ms=600)
        slow = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert first_error_codes(slow) == ["AGENCY_TIMEOUT"]
        opened = await scrape(gateway)
        assert moved(failing, opened, errors, agency="nts", code="AGENCY_TIMEOUT",
                     reason="timeout") >= 1  # fmt: skip
        assert value(opened, "gateway_agency_circuit_state", agency="nts") == 2  # open

        refused = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert first_error_codes(refused) == ["AGENCY_UNAVAILABLE"]
        after = await scrape(gateway)
        assert moved(opened, after, errors, agency="nts", code="AGENCY_UNAVAILABLE",
                     reason="circuit_open") == 1  # fmt: skip
        assert moved(opened, after, "gateway_agency_calls_total", agency="nts") == 0


async def test_cache_hits_misses_and_stale_answers(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        cached=True,
        cache=cache_of("memory"),
        agencies={  # never fresh, so every read asks nts; stale for an hour when it fails
            "nts": http_agency("nts", nts.url, retries=0, cache_ttl_s=0, stale_ttl_s=3600)
        },
    )
    async with gateway_client(config) as gateway:
        before = await scrape(gateway)
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        await nts.fault("error")
        stale = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert "errors" not in stale, stale
        assert stale["extensions"]["provenance"][0]["stale"] is True
        after = await scrape(gateway)
    labels = {"agency": "nhis", "dataset": "insurance"}
    assert moved(before, after, "gateway_agency_cache_misses_total", **labels) == 1
    assert moved(before, after, "gateway_agency_cache_hits_total", **labels) == 2
    assert moved(before, after, "gateway_agency_cache_misses_total", agency="nts") == 3
    assert moved(before, after, "gateway_agency_stale_total", agency="nts") == 1


@pytest.fixture
async def store(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    db = await create_database(admin_dsn, prefix="gwobs")
    yield db
    await drop_database(db)


async def test_audit_commits_their_latency_batch_sizes_and_failures(
    config: Config, store: ScratchDatabase
) -> None:
    own = dataclasses.replace(config, database=DatabaseConfig(url=store.dsn))
    async with gateway_client(own) as gateway:
        before = await scrape(gateway)
        body = await gateway.query(HOUSEHOLD, {"rrn": HEAD_RRN})
        assert "errors" not in body, body
        committed = await scrape(gateway)
        conn = await asyncpg.connect(store.dsn)
        try:
            rows = await conn.fetchval("select count(*) from gateway.audit_log")
            await conn.execute("update gateway.audit_head set mac = 'forged'")
        finally:
            await conn.close()
        withheld = await gateway.query(HOUSEHOLD, {"rrn": HEAD_RRN})
        assert first_error_codes(withheld) == ["AUDIT_UNAVAILABLE"]
        after = await scrape(gateway)
    assert moved(before, committed, "gateway_audit_commits_total") == 1
    assert moved(before, committed, "gateway_audit_records_total") == rows
    assert moved(before, committed, "gateway_audit_commit_records_sum") == rows
    assert moved(before, committed, "gateway_audit_commit_duration_seconds_count") == 1
    assert 0 < moved(before, committed, "gateway_audit_commit_duration_seconds_sum") < 5
    assert moved(committed, after, "gateway_audit_failures_total") == 1
    assert moved(committed, after, "gateway_audit_commits_total") == 0
    assert moved(committed, after, "gateway_requests_total", code="AUDIT_UNAVAILABLE") == 1


async def test_every_metric_is_documented(client: GatewayClient) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    names = {name for name, _ in await scrape(client) if name.startswith("gateway_")}
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}
    assert len(families) >= 17
    missing = sorted(f for f in families if f"`{f}`" not in docs)
    assert not missing, f"not in docs/operations.md: {missing}"


def test_an_exception_escaping_the_view_is_an_internal_error() -> None:
    from prometheus_client import REGISTRY

    from gateway.observe import Observer

    def count() -> float:
        labels = {"operation": "-", "code": "INTERNAL"}
        return REGISTRY.get_sample_value("gateway_requests_total", labels) or 0.0

    before = count()
    observer = Observer(Config())
    with pytest.raises(RuntimeError), observer.request({}, "POST", "0" * 32, None):
        raise RuntimeError("a bug")
    assert count() == before + 1


def test_listed_operation_names_alone_label_metrics() -> None:
    """With `[metrics] operations`, no caller can crowd the real names out of the label set."""
    names = OperationNames(limit=2, allowed=["ResidentCard"])
    assert [names.label([f"Junk{n}"]) for n in range(5)] == ["other"] * 5
    assert names.label(["ResidentCard"]) == "ResidentCard"
    unlisted = OperationNames(limit=2)
    assert [unlisted.label([n]) for n in ("A", "B", "ResidentCard")] == ["A", "B", "other"]
