"""The GraphiQL page over HTTP: everything it loads is served by the gateway, demo tokens
appear only in the embedded demo's page, and the example operations of each demo role run
with that role's token without a single FORBIDDEN."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from gateway.app import create_app
from gateway.cli import _loopback
from gateway.config import Config
from gateway.demo.embedded import DEMO_ROLES
from gateway.graphiql import CSP, DemoRole
from tests.access.conftest import DEMO
from tests.conftest import ScratchDatabase, make_config, token
from tests.data import HEAD_RRN
from tests.resilience.conftest import cache_of

STATIC = files("gateway") / "static" / "graphiql"
HTML = {"accept": "text/html,application/xhtml+xml"}
TOKENS = {
    role: token(role, agency=agency, rrn=HEAD_RRN if role == "citizen" else None)
    for role, agency in DEMO_ROLES.items()
}


@pytest.fixture(scope="module")
def demo_policy_config(agency_db: ScratchDatabase, http_agencies: dict[str, str]) -> Config:
    return make_config(agency_db.dsn, http_agencies, policy=DEMO)


@contextlib.asynccontextmanager
async def serve(config: Config, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(config, **options)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            yield http


def references(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', page)


async def test_page_loads_only_assets_served_by_the_gateway(demo_policy_config: Config) -> None:
    async with serve(demo_policy_config) as http:
        page = await http.get("/graphql", headers=HTML)
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP
        assert "connect-src 'self'" in CSP
        assert page.headers["cache-control"] == "no-store"
        assert "<title>Resident Gateway</title>" in page.text
        assert "unpkg" not in page.text
        assert "cdn" not in page.text.lower()
        found = references(page.text)
        assert len(found) == 7  # the icon, 2 stylesheets and 4 scripts
        for ref in found:
            if ref.startswith("data:"):
                continue
            assert ref.startswith("graphiql/assets/"), ref
            asset = await http.get(f"/{ref}")
            assert asset.status_code == 200, ref
            assert asset.content == (STATIC / ref.rsplit("/", 1)[1]).read_bytes(), ref
            kind = "javascript" if ref.endswith(".js") else "css"
            assert kind in asset.headers["content-type"], ref
        assert (await http.get("/graphiql/assets/LICENSE.graphiql")).status_code == 200
        assert (await http.get("/graphiql/assets/../app.py")).status_code == 404
        # The production page carries no token and no role picker data.
        assert '"demo": null' in page.text
        assert not any(t in page.text for t in TOKENS.values())


async def test_demo_page_offers_each_demo_role_and_its_token(demo_policy_config: Config) -> None:
    roles = [DemoRole(r, f"about {r}", t) for r, t in TOKENS.items()]
    async with serve(demo_policy_config, demo_roles=roles, sample_rrn=HEAD_RRN) as http:
        page = await http.get("/graphql", headers=HTML)
    assert "<title>Resident Gateway (demo)</title>" in page.text
    for role, bearer in TOKENS.items():
        assert f'"role": "{role}"' in page.text
        assert bearer in page.text


async def test_examples_need_a_token(demo_policy_config: Config) -> None:
    async with serve(demo_policy_config) as http:
        missing = await http.get("/graphiql/examples")
        bad = await http.get("/graphiql/examples", headers={"authorization": "Bearer nope"})
    for response in (missing, bad):
        assert response.status_code == 401
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_each_roles_examples_run_without_forbidden_fields(
    demo_policy_config: Config,
) -> None:
    """Generated from the policy: a role's examples read only what it may read (the only
    errors are consents the resident has not given)."""
    async with serve(demo_policy_config, sample_rrn=HEAD_RRN) as http:
        seen = {}
        for role, bearer in TOKENS.items():
            headers = {"authorization": f"Bearer {bearer}"}
            answer = (await http.get("/graphiql/examples", headers=headers)).json()
            assert answer["roles"] == [role]
            seen[role] = [e["name"] for e in answer["examples"]]
            for example in answer["examples"]:
                assert example["role"] == role
                response = await http.post(
                    "/graphql",
                    json={"query": example["query"], "variables": example["variables"]},
                    headers=headers,
                )
                assert response.status_code == 200, (role, example["name"], response.text)
                body = response.json()
                codes = {e["extensions"]["code"] for e in body.get("errors", [])}
                assert codes <= {"CONSENT_REQUIRED"}, (role, example["name"], body["errors"])
                assert any(v is not None for v in body["data"].values()), (role, example)
    # One per purpose the role declares, in the policy's order; one per other query. (Other
    # queries the policy grants later simply add theirs.)
    assert seen["welfare_officer"][:4] == [
        "ResidentForWelfareEligibility",
        "ResidentForCivilPetition",
        "ResidentsForWelfareEligibility",
        "ResidentsForCivilPetition",
    ]
    assert {"Me", "MyAccessLog", "MyConsents"} <= set(seen["citizen"])
    assert not any(name.startswith("Resident") for name in seen["citizen"])
    assert seen["military_officer"][0] == "ResidentForMilitaryAdministration"
    assert "Agencies" in seen["analyst"]
    assert not any(name.startswith("Resident") for name in seen["analyst"])


async def test_token_guessing_at_the_examples_is_limited_by_address(
    demo_policy_config: Config,
) -> None:
    limits = dataclasses.replace(demo_policy_config.limits, rate_requests=2)
    limited = dataclasses.replace(demo_policy_config, limits=limits, cache=cache_of("memory"))
    async with serve(limited) as http:
        bad = {"authorization": "Bearer guess"}
        assert (await http.get("/graphiql/examples", headers=bad)).status_code == 401
        assert (await http.get("/graphiql/examples", headers=bad)).status_code == 401
        third = await http.get("/graphiql/examples", headers=bad)
    assert third.status_code == 429
    assert third.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert int(third.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("host", "picker"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("10.1.2.3", False), ("gateway.example", False)],
)  # fmt: skip
def test_demo_offers_its_tokens_only_on_a_loopback_address(host: str, picker: bool) -> None:
    assert _loopback(host) is picker


async def test_the_demo_page_answers_only_requests_addressed_to_this_machine(
    demo_policy_config: Config,
) -> None:
    """Its tokens never go to a page elsewhere that rebinds its DNS name to 127.0.0.1."""
    roles = [DemoRole(r, f"about {r}", t) for r, t in TOKENS.items()]
    async with serve(demo_policy_config, demo_roles=roles, sample_rrn=HEAD_RRN) as http:
        rebound = await http.get("/graphql", headers={**HTML, "Host": "attacker.example:8000"})
        local = await http.get("/graphql", headers=HTML)
    assert rebound.status_code == 400
    assert not any(t in rebound.text for t in TOKENS.values())
    assert local.status_code == 200
    assert all(t in local.text for t in TOKENS.values())
