"""GraphQL over HTTP: media types, status codes and methods (the GraphQL-over-HTTP spec for
``application/graphql-response+json``; the old behaviour for ``application/json``), and the
introspection switch."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config import Config, ConfigError, LimitsConfig, load
from gateway.media import GRAPHQL_RESPONSE, JSON, negotiate, without_suggestions
from tests.conftest import GatewayClient, gateway_client

VALID = "{ agencies { code } }"
UNKNOWN_FIELD = '{ resident(rrn: "940812-1001751", purpose: CIVIL_PETITION) { nam } }'
BAD_RRN = '{ resident(rrn: "941312-1001751", purpose: CIVIL_PETITION) { name } }'
INTROSPECTION = "{ __schema { queryType { name } } }"
TYPE_QUERY = '{ __type(name: "Resident") { fields { name } } }'


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        ("application/graphql-response+json", GRAPHQL_RESPONSE),
        ("application/graphql-response+json, application/json", GRAPHQL_RESPONSE),
        ("application/json, application/graphql-response+json", GRAPHQL_RESPONSE),
        ("application/graphql-response+json;q=0.9, application/json", JSON),
        ("application/json;q=0.5, application/graphql-response+json;q=0.8", GRAPHQL_RESPONSE),
        ("text/html, */*;q=0.8", JSON),
        ("application/json; charset=utf-8", JSON),
        ("APPLICATION/GRAPHQL-RESPONSE+JSON", GRAPHQL_RESPONSE),
        ("text/html", None),
        ("application/xml, text/plain", None),
        ("application/json;q=0", None),
        ("application/json;q=abc", None),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


async def post(
    client: GatewayClient, accept: str | None, query: str, variables: Any = None
) -> tuple[int, str, dict[str, Any]]:
    headers = dict(client.headers)
    if accept is not None:
        headers["accept"] = accept
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = await client.http.post("/graphql", json=body, headers=headers)
    return response.status_code, response.headers["content-type"], response.json()


REQUEST_ERRORS = [
    (UNKNOWN_FIELD, None),  # validation
    ("{ agencies { code }", None),  # parse
    ("query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) { name } }", {"r": 7}),
]


@pytest.mark.parametrize(("query", "variables"), REQUEST_ERRORS)
async def test_request_errors_are_400_without_data_for_graphql_response_json(
    client: GatewayClient, query: str, variables: Any
) -> None:
    status, ctype, body = await post(client, GRAPHQL_RESPONSE, query, variables)
    assert status == 400
    assert ctype == "application/graphql-response+json; charset=utf-8"
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(("query", "variables"), REQUEST_ERRORS)
@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
async def test_request_errors_stay_200_with_null_data_for_application_json(
    client: GatewayClient, accept: str | None, query: str, variables: Any
) -> None:
    status, ctype, body = await post(client, accept, query, variables)
    assert status == 200
    assert ctype.startswith("application/json")
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_field_errors_are_200_once_execution_started(
    client: GatewayClient, accept: str
) -> None:
    status, ctype, body = await post(client, accept, BAD_RRN)
    assert status == 200
    assert ctype.startswith(accept)
    assert body["data"] == {"resident": None}
    assert body["errors"][0]["extensions"]["code"] == "INVALID_RRN"


async def test_whole_response_errors_use_the_negotiated_media_type(
    client: GatewayClient,
) -> None:
    response = await client.http.post(
        "/graphql", content=b"{nope", headers={
            "content-type": "application/json", "accept": GRAPHQL_RESPONSE, **client.headers
        },
    )  # fmt: skip
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    response = await client.http.post(
        "/graphql", json={"query": VALID}, headers={"accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unservable_accept_is_406(client: GatewayClient, method: str) -> None:
    response = await client.http.request(
        method, "/graphql", params={"query": VALID} if method == "GET" else None,
        json={"query": VALID} if method == "POST" else None,
        headers={"accept": "application/xml", **client.headers},
    )  # fmt: skip
    assert response.status_code == 406
    assert response.headers["content-type"].startswith(JSON)
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_graphiql_page_still_served_to_browsers(client: GatewayClient) -> None:
    page = await client.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_get_serves_queries_and_refuses_mutations_with_405(
    client: GatewayClient, accept: str
) -> None:
    headers = {"accept": accept, **client.headers}
    response = await client.http.get("/graphql", params={"query": VALID}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(accept)
    assert {"code": "nts"} in response.json()["data"]["agencies"]
    mutation = 'mutation { revokeConsent(id: "x") { id } }'
    response = await client.http.get("/graphql", params={"query": mutation}, headers=headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith(accept)
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405_with_allow(client: GatewayClient, method: str) -> None:
    response = await client.http.request(method, "/graphql", headers=client.headers)
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


# Introspection: on by default (for authenticated callers only), switchable off.


async def test_introspection_needs_a_token(client: GatewayClient) -> None:
    response = await client.http.post("/graphql", json={"query": INTROSPECTION})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "data" not in response.json()


async def test_introspection_on_by_default(client: GatewayClient) -> None:
    body = await client.query(INTROSPECTION)
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
    body = await client.query(TYPE_QUERY)
    assert "name" in {f["name"] for f in body["data"]["__type"]["fields"]}
    body = await client.query(UNKNOWN_FIELD)
    assert "Did you mean 'name'" in body["errors"][0]["message"]


@pytest.fixture(scope="module")
async def closed(config: Config) -> AsyncIterator[GatewayClient]:
    off = dataclasses.replace(config, limits=LimitsConfig(introspection=False))
    async with gateway_client(off) as gateway:
        yield gateway


@pytest.mark.parametrize(
    "query",
    [
        INTROSPECTION,
        TYPE_QUERY,
        "query { agencies { code } ...F } fragment F on Query { __schema { types { name } } }",
        '{ a: __type(name: "Query") { name } }',
    ],
)
@pytest.mark.parametrize("accept", [GRAPHQL_RESPONSE, JSON])
async def test_introspection_off_refuses(closed: GatewayClient, query: str, accept: str) -> None:
    status, _, body = await post(closed, accept, query)
    assert status == (400 if accept == GRAPHQL_RESPONSE else 200)
    assert body.get("data") is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "introspection has been disabled" in error["message"]


async def test_introspection_off_keeps_typename(closed: GatewayClient) -> None:
    assert await closed.query("{ __typename agencies { __typename } }") == {
        "data": {"__typename": "Query", "agencies": [{"__typename": "AgencyStatus"}] * 5}
    }


@pytest.mark.parametrize(
    ("query", "variables", "still_said"),
    [
        (UNKNOWN_FIELD, None, "Cannot query field 'nam' on type 'Resident'."),
        ('{ resident(rrn: "940812-1001751", purpos: CIVIL_PETITION) { name } }', None,
         "Unknown argument 'purpos'"),
        ('{ resident(rrn: "940812-1001751", purpose: CIVIL_PETITIO) { name } }', None,
         "does not exist in 'Purpose' enum."),
        ("query($p: Purpose!) { resident(rrn: \"940812-1001751\", purpose: $p) { name } }",
         {"p": "CIVIL_PETITIO"}, "does not exist in 'Purpose' enum"),
        ("query($p: Purpos!) { agencies { code } }", None, "Unknown type 'Purpos'."),
    ],
)  # fmt: skip
async def test_introspection_off_drops_suggestions(
    client: GatewayClient, closed: GatewayClient, query: str, variables: Any, still_said: str
) -> None:
    def messages(body: dict[str, Any]) -> str:
        return " | ".join(error["message"] for error in body["errors"])

    hinted = messages(await client.query(query, variables))
    assert "Did you mean" in hinted  # the same mistake, introspection on
    message = messages(await closed.query(query, variables))
    assert still_said in message
    assert "Did you mean" not in message
    assert "CIVIL_PETITION" not in message


def test_without_suggestions() -> None:
    assert without_suggestions("Cannot query field 'nam' on type 'R'. Did you mean 'name'?") == (
        "Cannot query field 'nam' on type 'R'."
    )
    assert (
        without_suggestions(
            "Value 'X' does not exist in 'P' enum. Did you mean the enum value 'A', 'B', or 'C'?"
        )
        == "Value 'X' does not exist in 'P' enum."
    )


def test_introspection_setting_is_validated_and_overridable(tmp_path: Any) -> None:
    assert load(None, {}).limits.introspection is True
    path = tmp_path / "gateway.toml"
    path.write_text("[limits]\nintrospection = false\n")
    assert load(path, {}).limits.introspection is False
    assert load(path, {"GATEWAY__LIMITS__INTROSPECTION": "true"}).limits.introspection is True
    assert load(None, {"GATEWAY__LIMITS__INTROSPECTION": "false"}).limits.introspection is False
    path.write_text('[limits]\nintrospection = "no"\n')
    with pytest.raises(ConfigError, match="introspection must be bool"):
        load(path, {})
