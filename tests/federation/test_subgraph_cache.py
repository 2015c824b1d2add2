"""A GraphQL subgraph agency with a memory cache: its parts (``Dataset.narrowed``) are
answered at once from the process's cache (``AgencyLoader``), and still obey an invalidation
of their dataset; provenance says the same of a cached answer as of the read that filled
it; metrics label the configured dataset, not one series per forwarded selection."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ScratchDatabase, gateway_client, token
from tests.data import HEAD_RRN
from tests.federation.conftest import POLICY, vehicle_agency, vehicle_config
from tests.federation.subgraph_server import Subgraph
from tests.federation.test_subgraph import QUERY
from tests.observability.conftest import scrape

EXTRA = """
[roles.agency_system]
description = "x"
operations = ["Events.invalidate"]
agencies = ["vehicle"]
[roles.ops]
description = "y"
operations = ["Query.agencies"]
agencies = ["welfare"]
"""


async def test_peeked_parts_obey_invalidation(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    subgraph: Subgraph,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY + EXTRA)
    agency = vehicle_agency(subgraph.url, cache=True, cache_ttl_s=300)
    config = vehicle_config(agency_db, http_agencies, policy, agency)
    async with gateway_client(config, token("vehicle_officer", agency="welfare")) as gw:
        first = await gw.query(QUERY, {"rrn": HEAD_RRN}, extensions={"provenance": True})
        assert "errors" not in first, first
        before = subgraph.entities
        again = await gw.query(QUERY, {"rrn": HEAD_RRN}, extensions={"provenance": True})
        assert again["data"] == first["data"]
        assert subgraph.entities == before  # answered from the cache

        def vehicle(body: dict) -> list:  # type: ignore[type-arg]
            return [e for e in body["extensions"]["provenance"] if e["agency"] == "vehicle"]

        assert vehicle(again) == vehicle(first) != []
        accepted = await gw.http.post(
            "/events/invalidate",
            json={"agency": "vehicle", "keys": [HEAD_RRN]},
            headers={"Authorization": f"Bearer {token('agency_system', agency='vehicle')}"},
        )
        assert accepted.status_code == 202, accepted.text
        third = await gw.query(QUERY, {"rrn": HEAD_RRN})
        assert third["data"] == first["data"]
        assert subgraph.entities == before + 1  # asked again
        samples = await scrape(gw.as_(token("ops", agency="welfare")))
        labels = {
            dict(lab).get("dataset")
            for (name, lab), _ in samples.items()
            if name.startswith("gateway_agency_")
        }
        assert not any("@" in (d or "") for d in labels), labels
