"""Bad input gets a coded error in the contract's shape: never a 500, never a traceback."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GatewayClient


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    assert "Traceback" not in error["message"]
    return error


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b'"just a string"', "application/json", "JSON object"),
        (b"query { agencies { code } }", "text/plain", "Content-Type: application/json"),
        (b'{"query": 42}', "application/json", "must be a string"),
        (b'{"variables": {}}', "application/json", "No GraphQL query"),
    ],
)
async def test_malformed_requests_are_bad_request(
    client: GatewayClient, content: bytes, content_type: str, fragment: str
) -> None:
    response = await client.http.post(
        "/graphql", content=content, headers={"content-type": content_type, **client.headers}
    )
    assert response.status_code == 400
    error = only_error(response.json())
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert fragment in error["message"]


async def test_oversize_body_is_refused_before_parsing(client: GatewayClient) -> None:
    padding = "x" * 70_000
    response = await client.http.post("/graphql", json={"query": f"# {padding}\n{{ agencies }}"})
    assert response.status_code == 400
    error = only_error(response.json())
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "65536-byte limit" in error["message"]


async def test_unknown_field_is_bad_request(client: GatewayClient) -> None:
    body = await client.query(
        '{ resident(rrn: "940812-1001751", purpose: CIVIL_PETITION) { name shoeSize } }'
    )
    error = only_error(body)
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "shoeSize" in error["message"]
    assert body["data"] is None


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ resident(rrn: 940812, purpose: CIVIL_PETITION) { name } }", None),
        ('{ resident(rrn: "940812-1001751", purpose: SHOPPING) { name } }', None),
        ('{ resident(rrn: "940812-1001751") { name } }', None),
        (
            "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }",
            {"r": 940812},
        ),
    ],
)
async def test_wrong_argument_types_are_bad_request(
    client: GatewayClient, query: str, variables: dict[str, Any] | None
) -> None:
    error = only_error(await client.query(query, variables))
    assert error["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    "rrn",
    ["941312-1001751", "940230-1001751", "990101-3123456", "12345", "940812-10017511"],
)
async def test_invalid_rrn_is_coded_and_masked(client: GatewayClient, rrn: str) -> None:
    body = await client.query(
        "query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }", {"r": rrn}
    )
    error = only_error(body)
    assert error["extensions"]["code"] == "INVALID_RRN"
    assert error["path"] == ["resident"]
    assert rrn not in error["message"]
    assert body["data"] == {"resident": None}


async def test_mutations_are_not_allowed_over_get(client: GatewayClient) -> None:
    response = await client.http.get(
        "/graphql",
        params={"query": 'mutation { revokeConsent(id: "x") { id } }'},
        headers={"accept": "application/json", **client.headers},
    )
    assert response.status_code in (400, 405)
    assert only_error(response.json())["extensions"]["code"] == "BAD_REQUEST"


async def test_too_deep_query_is_refused(client: GatewayClient) -> None:
    nested = "household { members { " * 7 + "name" + " } }" * 7
    body = await client.query(
        f'{{ resident(rrn: "940812-1001751", purpose: CIVIL_PETITION) {{ {nested} }} }}'
    )
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert body["data"] is None


async def test_too_many_residents_in_one_batch(client: GatewayClient) -> None:
    rrns = ["940812-1001751"] * 101
    body = await client.query(
        "query($r: [String!]!) { residents(rrns: $r, purpose: CIVIL_PETITION) { name } }",
        {"r": rrns},
    )
    assert only_error(body)["extensions"]["code"] == "QUERY_TOO_COMPLEX"


async def test_every_response_carries_a_request_id(client: GatewayClient) -> None:
    response = await client.http.post(
        "/graphql",
        json={"query": "{ agencies { code } }"},
        headers={"x-request-id": "abc-123", **client.headers},
    )
    # Ours goes into the audit trail; the client's own comes back beside it.
    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-client-request-id"] == "abc-123"
    response = await client.http.post("/graphql", content=b"{", headers={
        "content-type": "application/json"
    })  # fmt: skip
    assert len(response.headers["x-request-id"]) == 32


async def test_health_ready_metrics_and_graphiql(client: GatewayClient) -> None:
    assert (await client.http.get("/healthz")).json() == {"status": "ok"}
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "up"
    assert set(ready.json()["agencies"]) == {"registry", "nhis", "nts", "nps", "mma"}
    metrics = await client.http.get("/metrics", headers=client.headers)
    assert 'gateway_agency_calls_total{agency="nhis",dataset="insurance"}' in metrics.text
    page = await client.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_an_unknown_operation_name_is_not_echoed_with_an_rrn(
    client: GatewayClient, method: str
) -> None:
    """Strawberry refuses an operationName the document lacks with a message quoting it: like
    every other error message, it masks any RRN wholly (the caller may be quoting someone's)."""
    rrn = "940812-1001751"
    params = {"query": "query A { agencies { code } }", "operationName": f"B {rrn}"}
    if method == "POST":
        response = await client.http.post("/graphql", json=params, headers=client.headers)
    else:
        response = await client.http.get("/graphql", params=params, headers=client.headers)
    assert response.status_code == 400, response.text
    error = only_error(response.json())
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "Unknown operation named" in error["message"]
    assert "******-*******" in error["message"]
    assert rrn not in response.text
    assert rrn.replace("-", "") not in response.text
