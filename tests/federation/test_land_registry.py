"""The worked example (examples/land_registry), installed as a package, contributes
Resident.landParcels over a SOAP-style XML agency, served through the gateway's machinery."""

from __future__ import annotations

import contextlib
import importlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry

from adapters.base import Adapter
from adapters.records import Dataset
from adapters.testing import AdapterCompliance
from gateway import federation
from gateway.config import AgencyConfig, Config, ConfigError, PolicyConfig
from gateway.federation import Contribution
from gateway.graphql_schema import build_schema
from tests.access.conftest import fetch
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN, members
from tests.demo_serve import serving_demo

EXAMPLE = Path(__file__).parents[2] / "examples" / "land_registry"
POLICY = """
[roles.land_officer]
description = "Reads land parcels."
operations = ["Query.resident", "Query.residents"]
agencies = ["welfare"]
[roles.land_officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name", "Resident.household", "Household.*", "Resident.landParcels",
          "LandParcel.parcelId", "LandParcel.address", "LandParcel.areaSqm",
          "LandParcel.acquiredOn"]
[roles.land_officer.views.CIVIL_PETITION]
fields = ["Resident.landParcels", "LandParcel.parcelId", "LandParcel.address",
          "LandParcel.areaSqm", "LandParcel.acquiredOn"]
consent = ["Resident.landParcels"]

[roles.plain_officer]
description = "No land parcels."
operations = ["Query.resident"]
agencies = ["welfare"]
[roles.plain_officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name"]
"""
PARCELS = "{ resident(rrn: $rrn, purpose: $purpose) { landParcels { parcelId address areaSqm acquiredOn } } }"  # noqa: E501
QUERY = f"query($rrn: String!, $purpose: Purpose!) {PARCELS}"


@pytest.fixture(scope="session")
def land_registry() -> Any:
    """The example package, installed into this venv as CI does (``.ci/run``) if it is not
    yet: found through the real ``gateway.datasets`` entry point."""
    if "land_parcels" not in entry_points(group=federation.ENTRY_POINT_GROUP).names:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(EXAMPLE)],
            check=True,
        )
        importlib.invalidate_caches()
    with contextlib.suppress(ImportError):
        importlib.import_module("land_registry")
        return importlib.import_module("land_registry.server")
    sys.path.insert(0, str(EXAMPLE))  # an editable install's finder runs at start-up only
    return importlib.import_module("land_registry.server")


@pytest.fixture(scope="session")
def land_agency(land_registry: Any) -> Iterator[Mapping[str, Any]]:
    with land_registry.demo() as tables:
        yield tables["land"]


def land_config(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    land_agency: Mapping[str, Any],
    policy: Path,
) -> Config:
    """The test gateway with the land registry as a sixth agency, under POLICY."""
    policy.write_text(POLICY)
    table = dict(land_agency)
    agency = AgencyConfig(
        code="land", kind=table["kind"], url=table["url"], cache=False,
        datasets=tuple(table["datasets"]), settings=table,
    )  # fmt: skip
    return make_config(
        agency_db.dsn, http_agencies, agencies={"land": agency},
        policy=PolicyConfig(file=str(policy)),
    )  # fmt: skip


@pytest.fixture(scope="session")
async def land(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    land_agency: Mapping[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[GatewayClient]:
    policy = tmp_path_factory.mktemp("land") / "policy.toml"
    config = land_config(agency_db, http_agencies, land_agency, policy)
    async with gateway_client(config, token("land_officer", agency="welfare")) as gateway:
        yield gateway


async def test_land_parcels_end_to_end(land: GatewayClient, land_registry: Any) -> None:
    variables = {"rrn": HEAD_RRN, "purpose": "WELFARE_ELIGIBILITY"}
    body = await land.query(QUERY, variables, extensions={"provenance": True})
    assert "errors" not in body, body
    expected = [
        {"parcelId": p["id"], "address": p["address"], "areaSqm": float(p["areaSqm"]),
         "acquiredOn": p["acquiredOn"]}
        for p in land_registry.parcels(HEAD_RRN)
    ]  # fmt: skip
    assert body["data"]["resident"]["landParcels"] == expected
    provenance = body["extensions"]["provenance"]
    assert {"path": ["resident", "landParcels"], "agency": "land"}.items() <= next(
        e for e in provenance if e["agency"] == "land"
    ).items()


async def test_forbidden_without_grant(land: GatewayClient) -> None:
    before = land.calls("land")
    variables = {"rrn": HEAD_RRN, "purpose": "WELFARE_ELIGIBILITY"}
    body = await land.as_(token("plain_officer", agency="welfare")).query(QUERY, variables)
    assert body["data"]["resident"]["landParcels"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert land.calls("land") == before  # a field the caller may not read is never fetched


async def test_consent_for_contributed_field(land: GatewayClient) -> None:
    variables = {"rrn": HEAD_RRN, "purpose": "CIVIL_PETITION"}
    body = await land.query(QUERY, variables)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["CONSENT_REQUIRED"]


async def test_household_is_one_call(land: GatewayClient, land_registry: Any) -> None:
    # As for our agencies: every member's parcels in one batch (a field asked at another
    # depth, such as the head's own landParcels, is resolved in a batch of its own).
    query = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
        household { members { name landParcels { parcelId } } } } }"""
    before = land.calls("land")
    body = await land.query(query, {"rrn": HEAD_RRN})
    assert "errors" not in body, body
    found = body["data"]["resident"]["household"]["members"]
    assert len(found) == len(members()) > 1
    assert land.calls("land") == before + 1
    owned = {rrn: [p["id"] for p in land_registry.parcels(rrn)] for rrn, *_ in members()}
    assert sorted(len(m["landParcels"]) for m in found) == sorted(map(len, owned.values()))


async def test_audit_lists_the_field(land: GatewayClient, agency_db: ScratchDatabase) -> None:
    sub = "land-audit-officer"
    bearer = token("land_officer", agency="welfare", sub=sub)
    variables = {"rrn": HEAD_RRN, "purpose": "WELFARE_ELIGIBILITY"}
    body = await land.as_(bearer).query(QUERY, variables)
    assert "errors" not in body, body
    rows = await fetch(
        agency_db.dsn, "select disclosed from gateway.audit_log where principal = $1", sub
    )
    assert [list(r["disclosed"]) for r in rows] == [
        ["LandParcel.acquiredOn", "LandParcel.address", "LandParcel.areaSqm",
         "LandParcel.parcelId", "Resident.landParcels"]
    ]  # fmt: skip


def test_cost_is_the_serving_agencys_weight(land_registry: Any) -> None:
    from gateway.limits import measure

    schema = build_schema(contributions=federation.installed())
    document = importlib.import_module("graphql").parse(QUERY)
    limits = schema.limits

    def cost(weight: int) -> int:
        found = measure(
            schema._schema, document, operation_name=None, variables=None, limits=limits,
            weights={"land_parcels": weight},
        )  # fmt: skip
        return int(found.cost)

    assert cost(500) - cost(5) == 495


# Start-up refuses a broken contribution with one line naming it ------------------------


def _contribution(land_registry: Any, **changes: Any) -> Contribution:
    original: Contribution = importlib.import_module("land_registry.contribution").CONTRIBUTION
    return Contribution(**{**original.__dict__, **changes})


def test_name_collisions_stop_start_up(land_registry: Any) -> None:
    @strawberry.type(name="Address", description="Clashes with ours.")
    class Clash:
        view: strawberry.Private[str]
        subject: strawberry.Private[str]
        x: int = strawberry.field(description="x")

    where = "package example (entry point gateway.datasets:land_parcels)"
    original = _contribution(land_registry)
    field = original.fields[0]
    taxes = type(field)("taxes", field.type, "clash", field.build)
    with pytest.raises(ConfigError, match=r"^package example .*: field Resident.taxes already"):
        build_schema(contributions=[(where, _contribution(land_registry, fields=(taxes,)))])
    clash = _contribution(land_registry, types=(*original.types, Clash))
    with pytest.raises(ConfigError, match=r"^package example .*: type Address already exists"):
        build_schema(contributions=[(where, clash)])


def test_undescribed_and_broken_packages_stop_start_up(land_registry: Any) -> None:

    @strawberry.type(description="Undescribed inside.")
    class Bare:
        view: strawberry.Private[str]
        subject: strawberry.Private[str]
        x: int

    field = _contribution(land_registry).fields[0]
    bare = _contribution(
        land_registry, types=(Bare,), fields=(type(field)("bare", Bare, "d", field.build),)
    )
    with pytest.raises(ConfigError, match=r"^here: field Bare.x has no description$"):
        federation._check(bare, "land_parcels", "here")
    nameless = _contribution(land_registry, dataset=Dataset("other", object))
    with pytest.raises(ConfigError, match="named 'land_parcels' like its entry point"):
        federation._check(nameless, "land_parcels", "here")
    missing = EntryPoint("x", "no_such_module:X", federation.ENTRY_POINT_GROUP)
    with pytest.raises(ConfigError, match="cannot be loaded: ModuleNotFoundError"):
        federation._load(missing, "here")
    wrong = EntryPoint("x", "os:getcwd", federation.ENTRY_POINT_GROUP)
    with pytest.raises(ConfigError, match="not a Contribution"):
        federation._load(wrong, "here")


async def test_a_package_whose_record_builder_fails_is_an_agency_failure(
    land_registry: Any,
    land_agency: Mapping[str, Any],
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review finding: a contribution's builder that raised answered INTERNAL (a gateway
    fault); it is the agency's: AGENCY_UNAVAILABLE naming it, nothing of its text shown."""
    field = _contribution(land_registry).fields[0]

    def broken(record: Any, view: str, subject: str) -> Any:
        raise RuntimeError(f"cannot parse {subject}")

    module = importlib.import_module("land_registry.contribution")
    failing = _contribution(land_registry, fields=(type(field)(
        field.name, field.type, field.description, broken
    ),))  # fmt: skip
    monkeypatch.setattr(module, "CONTRIBUTION", failing)
    policy = tmp_path / "policy.toml"
    config = land_config(agency_db, http_agencies, land_agency, policy)
    async with gateway_client(config, token("land_officer", agency="welfare")) as gateway:
        body = await gateway.query(QUERY, {"rrn": HEAD_RRN, "purpose": "WELFARE_ELIGIBILITY"})
    assert body["data"]["resident"]["landParcels"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "land"}
    assert HEAD_RRN not in str(body)


class TestLandRegistryCompliance(AdapterCompliance):
    """The worked example passes the compliance suite any integrator's adapter runs."""

    @pytest.fixture(autouse=True)
    def _registry(self, land_registry: Any, land_agency: Mapping[str, Any]) -> None:
        self.table = dict(land_agency)
        self.dataset = _contribution(land_registry).dataset
        candidates = [rrn for rrn, *_ in members()]
        self.present = [r for r in candidates if land_registry.parcels(r)][:2]
        self.absent = [r for r in candidates if not land_registry.parcels(r)][:1]
        assert self.present
        assert self.absent

    def filler_keys(self, count: int) -> list[str]:
        """Keys the example registry has no parcels for (it makes parcels up from the RRN)."""
        parcels = importlib.import_module("land_registry.server").parcels
        keys = (f"990101-9{n:06d}" for n in range(10 * count + 100))
        return [key for key in keys if not parcels(key)][:count]

    def make_adapter(self) -> Adapter:
        adapter_module = importlib.import_module("land_registry.adapter")
        adapter: Adapter = adapter_module.LandRegistryAdapter("land", self.table)
        return adapter


def test_gateway_serve_shows_the_installed_agency(land_registry: Any, tmp_path: Path) -> None:
    # Issue 8 item 7, through the real CLI: with the package installed, `gateway serve`
    # without a config starts its demo source and serves it as a sixth agency.
    with serving_demo(tmp_path) as demo:
        ready = httpx.get(f"{demo.url}/readyz", timeout=10).json()
        tokens = dict(re.findall(r"^  (\w+) +(\S+\.\S+\.\S+)$", demo.printed, re.M))
        response = httpx.post(
            f"{demo.url}/graphql",
            json={"query": "{ agencies { code kind } }"},
            headers={"Authorization": f"Bearer {tokens['operator']}"},
            timeout=10,
        )
        rrn = re.search(r'resident\(rrn: "(\d{6}-\d{7})"', demo.printed)
        assert rrn, demo.printed
        refused = httpx.post(
            f"{demo.url}/graphql",
            json={
                "query": "query($rrn: String!) { resident(rrn: $rrn, purpose: "
                "WELFARE_ELIGIBILITY) { name landParcels { parcelId } } }",
                "variables": {"rrn": rrn.group(1)},
            },
            headers={"Authorization": f"Bearer {tokens['welfare_officer']}"},
            timeout=10,
        ).json()
    # Whether each answered its health check within /readyz's second is the machine's
    # business (a loaded CI box may miss it); which agencies there are is the point.
    assert set(ready["agencies"]) == {"registry", "nhis", "nps", "nts", "mma", "land"}
    agencies = response.json()["data"]["agencies"]
    assert sorted((a["code"], a["kind"]) for a in agencies) == [
        ("land", "landregistry"), ("mma", "http"), ("nhis", "sql"), ("nps", "sql"),
        ("nts", "http"), ("registry", "sql"),
    ]  # fmt: skip
    # The field is in the schema, and FORBIDDEN until a policy grants it (the demo's does not).
    assert refused["data"]["resident"]["name"]
    assert refused["data"]["resident"]["landParcels"] is None
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]
