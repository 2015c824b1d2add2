"""The vehicle registry subgraph (a child process) and a gateway composing it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import AgencyConfig, Config, PolicyConfig
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config, token
from tests.federation.subgraph_server import Subgraph, serving

POLICY = """
[roles.vehicle_officer]
description = "Reads vehicles and licences."
operations = ["Query.resident", "Query.residents"]
agencies = ["welfare"]
[roles.vehicle_officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name", "Resident.household", "Household.*", "Resident.vehicles",
          "Vehicle.plate", "Vehicle.make", "Vehicle.year", "Vehicle.electric", "Vehicle.fuel",
          "Vehicle.inspections", "Inspection.passedOn", "Inspection.odometerKm",
          "Resident.licence", "Licence.number", "Licence.expiresOn",
          "Resident.penaltyPoints", "Resident.licenceStatus"]
[roles.vehicle_officer.views.CIVIL_PETITION]
fields = ["Resident.vehicles", "Vehicle.plate", "Vehicle.make", "Vehicle.year",
          "Vehicle.electric", "Vehicle.fuel", "Vehicle.inspections", "Resident.licence",
          "Licence.number", "Licence.expiresOn"]
consent = ["Resident.licence"]

[roles.plate_officer]
description = "Reads plates only."
operations = ["Query.resident"]
agencies = ["welfare"]
[roles.plate_officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.vehicles", "Vehicle.plate", "Vehicle.inspections"]

[roles.plain_officer]
description = "No vehicles."
operations = ["Query.resident"]
agencies = ["welfare"]
[roles.plain_officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name"]
"""


def vehicle_agency(url: str, **options: Any) -> AgencyConfig:
    options = {"cache": False, "retries": 0, **options}
    return AgencyConfig(code="vehicle", kind="graphql", url=url, **options)


def vehicle_config(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    policy: Path,
    agency: AgencyConfig,
) -> Config:
    return make_config(
        agency_db.dsn, http_agencies, agencies={"vehicle": agency},
        policy=PolicyConfig(file=str(policy)),
    )  # fmt: skip


@pytest.fixture(scope="session")
def vehicle_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    policy = tmp_path_factory.mktemp("vehicle") / "policy.toml"
    policy.write_text(POLICY)
    return policy


@pytest.fixture(scope="session")
def subgraph() -> Iterator[Subgraph]:
    with serving() as running:
        yield running


@pytest.fixture(scope="session")
async def gateway(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    subgraph: Subgraph,
    vehicle_policy: Path,
) -> AsyncIterator[GatewayClient]:
    config = vehicle_config(agency_db, http_agencies, vehicle_policy, vehicle_agency(subgraph.url))
    async with gateway_client(config, token("vehicle_officer", agency="welfare")) as client:
        yield client
