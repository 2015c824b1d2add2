"""One failing agency nulls its own fields, names itself, and leaves the rest served."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

from gateway.config import AgencyConfig, PolicyConfig, SourcesConfig
from gateway.demo.processes import AgencyProcess
from tests.conftest import ALLOW_ALL, ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN

QUERY = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name insurance { insuredType } taxes { year } militaryService { status } } }"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_unreachable_agency_is_unavailable_and_the_rest_is_served(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    urls = {**http_agencies, "nts": f"http://127.0.0.1:{closed_port()}"}
    async with gateway_client(make_config(agency_db.dsn, urls)) as gateway:
        body = await gateway.query(QUERY, {"rrn": HEAD_RRN})
        ready = (await gateway.http.get("/readyz")).json()
    person = body["data"]["resident"]
    assert person["name"] == "Kim Min-jun"
    assert person["insurance"] == {"insuredType": "EMPLOYEE"}
    assert person["militaryService"] == {"status": "COMPLETED"}
    assert person["taxes"] is None
    [error] = body["errors"]
    assert error["path"] == ["resident", "taxes"]
    assert error["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "nts"}
    assert ready["agencies"]["nts"] == "down"


async def test_slow_agency_times_out(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    with AgencyProcess("mma", agency_db.dsn, delay_ms=1000) as slow_mma:
        config = make_config(
            agency_db.dsn,
            {**http_agencies, "mma": slow_mma.url},
            agencies={
                "mma": AgencyConfig(
                    code="mma",
                    kind="http",
                    url=slow_mma.url,
                    timeout_ms=150,
                    settings=slow_mma.settings,
                )
            },
        )
        async with gateway_client(config) as gateway:
            body = await gateway.query(QUERY, {"rrn": HEAD_RRN})
    assert body["data"]["resident"]["militaryService"] is None
    assert body["data"]["resident"]["taxes"] == [{"year": 2024}, {"year": 2025}]
    [error] = body["errors"]
    assert error["path"] == ["resident", "militaryService"]
    assert error["extensions"] == {"code": "AGENCY_TIMEOUT", "agency": "mma"}
    assert "150 ms" in error["message"]


async def test_unconfigured_agency_is_unavailable(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    config = make_config(agency_db.dsn, http_agencies)
    agencies = {k: v for k, v in config.agencies.items() if k != "nps"}
    # Only when declared: a dataset without an agency otherwise stops start-up (and so does
    # a policy letting an agency that is not configured invalidate its records).
    unserved = SourcesConfig(unserved=("pension",))
    policy = tmp_path / "policy.toml"
    policy.write_text(ALLOW_ALL.read_text().replace('"nps", ', ""))
    config = replace(
        config, agencies=agencies, sources=unserved, policy=PolicyConfig(file=str(policy))
    )

    async with gateway_client(config) as gateway:
        body = await gateway.query(
            """query($rrn: String!) { resident(rrn: $rrn, purpose: PENSION_ADMINISTRATION) {
                 name pension { monthsContributed } } }""",
            {"rrn": HEAD_RRN},
        )
    assert body["data"]["resident"] == {"name": "Kim Min-jun", "pension": None}
    assert body["errors"][0]["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "nps"}
    assert "not configured" in body["errors"][0]["message"]
