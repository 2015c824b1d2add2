"""Persisted documents: Apollo's APQ protocol (POST and GET, as its persisted-query link sends
it), documentId, trusted documents, and two gateways sharing APQ documents through Redis."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway import config as config_module
from gateway import limits as limits_module
from gateway.config import CacheConfig, Config, ConfigError, PersistedConfig
from gateway.persisted import apollo_manifest, parse_manifest, sha256_hex
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.resilience.conftest import cache_of, drop_namespace

# What Apollo Client prints and hashes (it adds __typename to every selection set).
AGENCIES = "query Agencies {\n  agencies {\n    code\n    __typename\n  }\n}"
AGENCIES_HASH = sha256_hex(AGENCIES)
CODES = "query Codes {\n  agencies {\n    code\n  }\n}"


def apq(hash_: str, query: str | None = None, name: str = "Agencies") -> dict[str, Any]:
    """The body of apollo-link-persisted-queries (createPersistedQueryLink), in its order."""
    body: dict[str, Any] = {
        "operationName": name,
        "variables": {},
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": hash_}},
    }
    if query is not None:
        body["query"] = query
    return body


def get_params(hash_: str, name: str = "Agencies") -> dict[str, str]:
    """useGETForHashedQueries: the same fields as query parameters, JSON-encoded."""
    return {
        "operationName": name,
        "variables": "{}",
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": hash_}}),
    }


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


@pytest.fixture
async def redis_ns(machine_redis: aioredis.Redis) -> AsyncIterator[CacheConfig]:
    cache = cache_of("redis")
    yield cache
    await drop_namespace(machine_redis, cache.namespace)


def with_persisted(config: Config, **kw: Any) -> Config:
    return dataclasses.replace(config, persisted=PersistedConfig(**kw))


async def test_apollo_persisted_query_link_round_trip(config: Config) -> None:
    """Miss, then the retry with query and hash registers it, then the hash alone runs it."""
    async with gateway_client(with_persisted(config, mode="apq")) as gw:
        first = await gw.post(apq(AGENCIES_HASH))
        assert first.status_code == 200
        assert first.json() == {
            "errors": [
                {
                    "message": "PersistedQueryNotFound",
                    "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
                }
            ]
        }
        second = await gw.post(apq(AGENCIES_HASH, AGENCIES))
        assert second.status_code == 200, second.text
        assert "errors" not in second.json()
        assert {a["__typename"] for a in second.json()["data"]["agencies"]} == {"AgencyStatus"}
        third = await gw.post(apq(AGENCIES_HASH))
        assert third.status_code == 200
        assert third.json() == second.json()


async def test_get_form_of_a_hashed_query(config: Config) -> None:
    async with gateway_client(with_persisted(config, mode="apq")) as gw:
        miss = await gw.http.get("/graphql", params=get_params(AGENCIES_HASH), headers=gw.headers)
        assert miss.status_code == 200
        assert codes(miss.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        registered = await gw.post(apq(AGENCIES_HASH, AGENCIES))
        assert registered.status_code == 200
        hit = await gw.http.get("/graphql", params=get_params(AGENCIES_HASH), headers=gw.headers)
        assert hit.status_code == 200, hit.text
        assert hit.json() == registered.json()


async def test_a_hashed_mutation_is_not_run_by_get(config: Config) -> None:
    mutation = 'mutation Revoke { revokeConsent(id: "1") { id } }'
    async with gateway_client(with_persisted(config, mode="apq")) as gw:
        await gw.post(apq(sha256_hex(mutation), mutation, "Revoke"))
        response = await gw.http.get(
            "/graphql", params=get_params(sha256_hex(mutation), "Revoke"), headers=gw.headers
        )
        assert response.status_code == 405, response.text  # GraphQL over HTTP: 405 + Allow
        assert "mutation" in response.text.lower()


async def test_a_hash_that_does_not_match_the_query_is_refused(config: Config) -> None:
    async with gateway_client(with_persisted(config, mode="apq")) as gw:
        response = await gw.post(apq(sha256_hex("{ other }"), AGENCIES))
        assert response.status_code == 400
        assert codes(response.json()) == ["BAD_REQUEST"]
        bad = await gw.post(apq("not-a-hash"))
        assert bad.status_code == 400


async def test_only_valid_documents_are_registered(config: Config) -> None:
    invalid = "query Nope { nope }"
    async with gateway_client(with_persisted(config, mode="apq")) as gw:
        response = await gw.post(apq(sha256_hex(invalid), invalid, "Nope"))
        assert codes(response.json()) == ["BAD_REQUEST"]  # the validation error, as usual
        again = await gw.post(apq(sha256_hex(invalid), name="Nope"))
        assert codes(again.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_a_known_document_is_parsed_and_validated_once(config: Config) -> None:
    """The gateway's parse cache (gateway.limits) is keyed by the text: the stored text hits
    it, and validation (ValidatedOnce) is keyed by that same cached document."""
    parse_cache: Any = limits_module._parse  # an lru_cache: cache_info()
    async with gateway_client(with_persisted(config, mode="apq")) as gw:
        await gw.post(apq(AGENCIES_HASH, AGENCIES))
        before = parse_cache.cache_info()
        for _ in range(3):
            assert (await gw.post(apq(AGENCIES_HASH))).status_code == 200
        after = parse_cache.cache_info()
        assert after.misses == before.misses
        assert after.hits == before.hits + 3


async def test_persisted_queries_off(config: Config) -> None:
    async with gateway_client(config) as gw:
        response = await gw.post(apq(AGENCIES_HASH))
        assert response.status_code == 400
        assert response.json()["errors"][0]["message"] == "PersistedQueryNotSupported"
        # With the query too, the hash is ignored and the query runs.
        assert "errors" not in (await gw.post(apq(AGENCIES_HASH, AGENCIES))).json()


def write_manifest(tmp_path: Path, documents: dict[str, str]) -> Path:
    path = tmp_path / "persisted-documents.json"
    operations = [{"name": n, "type": "query", "body": b} for n, b in documents.items()]
    path.write_text(json.dumps(apollo_manifest(operations)))
    return path


async def test_document_id_forms(config: Config, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"Codes": CODES})
    h = sha256_hex(CODES)
    async with gateway_client(with_persisted(config, mode="apq", manifest=str(manifest))) as gw:
        for document_id in (f"sha256:{h}", h):
            response = await gw.post({"documentId": document_id, "variables": {}})
            assert response.status_code == 200, response.text
            assert response.json()["data"]["agencies"]
        got = await gw.http.get("/graphql", params={"documentId": h}, headers=gw.headers)
        assert got.status_code == 200, got.text
        assert got.json()["data"]["agencies"]
        # The APQ hash extension finds manifest documents too; free-form text still runs.
        assert "errors" not in (await gw.post(apq(h, name="Codes"))).json()
        assert "errors" not in (await gw.query("{ agencies { code } }"))
        unknown = await gw.post({"documentId": "sha256:" + "0" * 64})
        assert codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_trusted_mode_runs_only_the_manifest(config: Config, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"Codes": CODES})
    h = sha256_hex(CODES)
    trusted = with_persisted(
        config, mode="trusted", manifest=str(manifest), allow_free_form_roles=["agency_system"]
    )
    async with gateway_client(trusted) as gw:
        ok = await gw.post({"documentId": f"sha256:{h}"})
        assert ok.status_code == 200
        assert ok.json()["data"]["agencies"]
        assert "errors" not in (await gw.post(apq(h, name="Codes"))).json()
        assert "errors" not in (await gw.query(CODES))  # the very text of a trusted document
        refused = [
            await gw.post({"query": "{ agencies { code } }"}),  # free-form
            await gw.post(apq(AGENCIES_HASH)),  # an unknown hash
            await gw.post(apq(AGENCIES_HASH, AGENCIES)),  # APQ registration
            await gw.post({"documentId": "sha256:" + "0" * 64}),
            await gw.http.get(
                "/graphql", params={"query": "{ agencies { code } }"}, headers=gw.headers
            ),
        ]
        for response in refused:
            assert response.status_code == 403, response.text
            assert codes(response.json()) == ["OPERATION_NOT_ALLOWED"]
        # A role allowed free-form text (analysts in GraphiQL) is not refused for it.
        exempt = gw.as_(token("agency_system"))
        response = await exempt.post({"query": "{ agencies { code } }"})
        assert response.status_code == 200
        assert "OPERATION_NOT_ALLOWED" not in codes(response.json())


async def test_trusted_mode_needs_its_manifest(config: Config, tmp_path: Path) -> None:
    missing = with_persisted(config, mode="trusted", manifest=str(tmp_path / "none.json"))
    with pytest.raises(ConfigError, match="does not exist"):
        async with gateway_client(missing):
            pass


async def test_two_gateways_share_apq_documents_through_redis(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], redis_ns: CacheConfig
) -> None:
    shared = make_config(
        agency_db.dsn, http_agencies, cache=redis_ns, persisted=PersistedConfig(mode="apq")
    )
    async with gateway_client(shared) as one, gateway_client(shared) as two:
        assert one.app is not two.app
        assert codes((await two.post(apq(AGENCIES_HASH))).json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        assert "errors" not in (await one.post(apq(AGENCIES_HASH, AGENCIES))).json()
        hit = await two.post(apq(AGENCIES_HASH))
        assert hit.status_code == 200
        assert "errors" not in hit.json()
        assert hit.json()["data"]["agencies"]


def test_both_manifest_formats() -> None:
    h = sha256_hex(CODES)
    apollo = apollo_manifest([{"name": "Codes", "type": "query", "body": CODES}])
    assert apollo["operations"][0]["id"] == h
    assert parse_manifest(apollo) == {h: CODES}
    assert parse_manifest({f"sha256:{h}": CODES}) == {h: CODES}  # client preset's map
    with pytest.raises(ConfigError):
        parse_manifest({"format": "apollo-persisted-query-manifest", "version": 2})


def test_persisted_config_and_env(tmp_path: Path) -> None:
    loaded = config_module.load(None, {"GATEWAY__PERSISTED__MODE": "trusted"})
    assert loaded.persisted.mode == "trusted"
    with pytest.raises(ConfigError, match="mode"):
        config_module.load(None, {"GATEWAY__PERSISTED__MODE": "sometimes"})
    with pytest.raises(ConfigError, match="allow_free_form_roles"):
        config_module.from_dict({"persisted": {"allow_free_form_roles": "analyst"}})


async def test_get_of_unknown_document_id_over_real_http_shape(config: Config) -> None:
    async with gateway_client(with_persisted(config, mode="apq")) as gw:
        response = await gw.http.get(
            "/graphql", params={"documentId": "sha256:" + "1" * 64}, headers=gw.headers
        )
        assert response.status_code == 200
        assert codes(response.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
        assert isinstance(response, httpx.Response)
