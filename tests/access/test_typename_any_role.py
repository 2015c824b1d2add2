"""`{ __typename }` (what GraphQL-over-HTTP clients and audits send first) answers for an
authenticated caller of every role in the demo policy, whatever the role may otherwise read."""

from __future__ import annotations

import tomllib

import pytest

from gateway.runtime import DEMO_POLICY
from tests.conftest import GatewayClient, token
from tests.data import HEAD_RRN

ROLES = tomllib.loads(DEMO_POLICY.read_text())["roles"]


@pytest.mark.parametrize("role", sorted(ROLES))
async def test_typename_for_every_role(demo: GatewayClient, role: str) -> None:
    agencies = ROLES[role].get("agencies") or [None]
    rrn = HEAD_RRN if role == "citizen" else None
    caller = demo.as_(token(role, agency=agencies[0], rrn=rrn))
    for accept in ("application/json", "application/graphql-response+json"):
        response = await caller.http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={**caller.headers, "accept": accept},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"data": {"__typename": "Query"}}
        assert response.headers["content-type"].startswith(accept)
