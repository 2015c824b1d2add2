"""A hostile or broken GraphQL subgraph (``kind = "graphql"``): what it cannot make the
gateway do. Each test asserts the safe behaviour: refused at start-up in one line naming the
agency, or an AGENCY_UNAVAILABLE for the agency's fields, never its data misattributed,
quoted or served against its own directives."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType

from adapters.records import Dataset
from gateway.config import AgencyConfig, Config, ConfigError, PolicyConfig
from gateway.federation import Contribution, ResidentField
from gateway.graphql_schema import build_schema, schema_for
from gateway.subgraph import MAX_FIELDS, contribution, from_sdl, where
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN, members
from tests.federation.hostile import SDL, Hostile, Representations, entity, honest, serving

HERE = "[agencies.vehicle] (graphql subgraph http://127.0.0.1/graphql)"
POLICY = """
[roles.officer]
description = "Reads vehicles."
operations = ["Query.resident", "Query.residents"]
agencies = ["welfare"]
[roles.officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name", "Resident.household", "Household.*", "Resident.vehicles",
          "Vehicle.plate", "Vehicle.power", "Resident.penaltyPoints"]
"""
LOOKUP = "query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { %s } }"
#: Another resident's RRN, planted by the agency where a number is declared.
OTHER = "800101-1000001"


def config(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], url: str, tmp_path: Path,
    timeout_ms: int = 2000,
) -> Config:  # fmt: skip
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    agency = AgencyConfig(
        code="vehicle", kind="graphql", url=url, cache=False, retries=0, timeout_ms=timeout_ms
    )
    return make_config(
        agency_db.dsn, http_agencies, agencies={"vehicle": agency},
        policy=PolicyConfig(file=str(policy)),
    )  # fmt: skip


async def lookup(
    h: Hostile, agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path,
    selection: str,
) -> dict[str, Any]:  # fmt: skip
    cfg = config(agency_db, http_agencies, h.url, tmp_path)
    async with gateway_client(cfg, token("officer", agency="welfare")) as gw:
        return await gw.query(LOOKUP % selection, {"rrn": HEAD_RRN})


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or ()]


# Federation directives --------------------------------------------------------------------


async def test_an_inaccessible_field_is_neither_composed_nor_asked_for(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    with serving(Hostile(SDL, honest)) as h:
        cfg = config(agency_db, http_agencies, h.url, tmp_path)
        async with gateway_client(cfg, token("officer", agency="welfare")) as gw:
            hidden = await gw.query(LOOKUP % "vehicles { plate riskScore }", {"rrn": HEAD_RRN})
            shown = await gw.query(LOOKUP % "vehicles { plate power }", {"rrn": HEAD_RRN})
    assert codes(hidden) == ["BAD_REQUEST"], hidden
    assert "riskScore" in hidden["errors"][0]["message"]  # no such field on Vehicle
    assert "errors" not in shown, shown
    assert shown["data"]["resident"]["vehicles"] == [{"plate": "plate-of-" + HEAD_RRN[-4:],
                                                      "power": 80.5}]  # fmt: skip
    entities = [q["query"] for q in h.queries if "_entities" in q["query"]]
    assert entities
    assert not any("riskScore" in q for q in entities)


@pytest.mark.parametrize(
    ("where_", "directive"),
    [
        ("Vehicle.plate", '@requiresScopes(scopes: [["pii"]])'),
        ("Vehicle.plate", "@authenticated"),
        ("Vehicle.plate", '@policy(policies: [["officer"]])'),
        ("Vehicle.plate", '@requires(fields: "power")'),
        ("Vehicle.plate", '@override(from: "other")'),
        ("Vehicle.plate", '@provides(fields: "x")'),
        ("Vehicle", "@interfaceObject"),
        ("Vehicle", "@authenticated"),
        ("Resident.vehicles", '@requiresScopes(scopes: [["pii"]])'),
        ("Resident.vehicles", '@override(from: "other")'),
    ],
)
def test_an_unsupported_directive_stops_start_up(where_: str, directive: str) -> None:
    sdl = {
        "Vehicle.plate": SDL.replace("plate: String", f"plate: String {directive}"),
        "Vehicle": SDL.replace("type Vehicle {", f"type Vehicle {directive} {{"),
        "Resident.vehicles": SDL.replace("[Vehicle!]", f"[Vehicle!] {directive}"),
    }[where_]
    assert sdl != SDL
    with pytest.raises(ConfigError) as refused:
        from_sdl("vehicle", sdl, HERE)
    name = directive.split("(")[0]
    assert str(refused.value) == f"{HERE}: {where_} has directive {name} (not supported)"


def test_supported_directives_are_accepted() -> None:
    sdl = SDL.replace("type Vehicle {", 'type Vehicle @shareable @tag(name: "x") {')
    made = from_sdl("vehicle", sdl, HERE)
    assert [f.name for f in made.fields] == ["vehicles", "penaltyPoints"]


# Entity identity --------------------------------------------------------------------------


async def test_reordered_entities_are_never_shown_as_another_residents(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    def reversed_(reps: Representations) -> dict[str, Any]:
        return {"data": {"_entities": list(reversed(honest(reps)["data"]["_entities"]))}}

    selection = "household { members { rrn name vehicles { plate } } }"
    with serving(Hostile(SDL, reversed_)) as h:
        body = await lookup(h, agency_db, http_agencies, tmp_path, selection)
    asked = h.queries[-1]
    assert "__typename rrn" in asked["query"]
    assert len(asked["variables"]["representations"]) > 1
    shown = body["data"]["resident"]["household"]["members"]
    assert len(shown) == len(members())
    assert all(m["vehicles"] is None for m in shown), shown  # none is another member's
    assert set(codes(body)) == {"AGENCY_UNAVAILABLE"}
    assert len(codes(body)) == len(shown)


@pytest.mark.parametrize(
    "wrong",
    [
        {"__typename": "Vehicle"},  # not a Resident
        {"rrn": OTHER},  # another resident
        {"rrn": None},  # no key at all
    ],
)
async def test_an_entity_that_is_not_the_resident_asked_is_refused(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path,
    wrong: dict[str, Any],
) -> None:  # fmt: skip
    def answer(reps: Representations) -> dict[str, Any]:
        return {"data": {"_entities": [
            {**e, **wrong} for e in honest(reps)["data"]["_entities"]
        ]}}  # fmt: skip

    with serving(Hostile(SDL, answer)) as h:
        body = await lookup(h, agency_db, http_agencies, tmp_path, "vehicles { plate }")
    assert body["data"]["resident"]["vehicles"] is None
    assert codes(body) == ["AGENCY_UNAVAILABLE"]
    assert OTHER not in json.dumps(body)


@pytest.mark.parametrize("delta", [1, -1])
async def test_extra_or_missing_entities_fail_the_batch(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path, delta: int
) -> None:
    def wrong(reps: Representations) -> dict[str, Any]:
        found = honest(reps)["data"]["_entities"]
        return {"data": {"_entities": found + found[:1] if delta > 0 else found[:-1]}}

    with serving(Hostile(SDL, wrong)) as h:
        body = await lookup(h, agency_db, http_agencies, tmp_path, "vehicles { plate }")
    assert codes(body) == ["AGENCY_UNAVAILABLE"], body


# Values of the wrong type -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "selection"),
    [
        ({"vehicles": {"plate": "P"}}, "vehicles { plate }"),  # object where a list is declared
        ({"vehicles": [{"plate": {"owner": OTHER}}]}, "vehicles { plate }"),  # object, String
        ({"vehicles": [{"plate": "P", "power": OTHER}]}, "vehicles { plate power }"),  # Float
        ({"vehicles": [{"plate": ["P", OTHER]}]}, "vehicles { plate }"),  # list, String
        ({"vehicles": [OTHER]}, "vehicles { plate }"),  # a string where an object is declared
        ({"vehicles": [{"plate": "P", "power": True}]}, "vehicles { plate power }"),  # bool
        ({"penaltyPoints": OTHER}, "penaltyPoints"),  # a string where Int is declared
        ({"penaltyPoints": 2**40}, "penaltyPoints"),  # out of Int's range
        ({"penaltyPoints": [3]}, "penaltyPoints"),  # a list where one Int is declared
    ],
)
async def test_a_value_of_the_wrong_type_is_an_agency_failure_never_quoted(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path,
    fields: dict[str, Any], selection: str, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def answer(reps: Representations) -> dict[str, Any]:
        return {"data": {"_entities": [entity(r, **fields) for r in reps]}}

    with serving(Hostile(SDL, answer)) as h:
        body = await lookup(h, agency_db, http_agencies, tmp_path, selection)
    assert codes(body) == ["AGENCY_UNAVAILABLE"], body
    assert "vehicle" in body["errors"][0]["message"]
    assert body["data"]["resident"][selection.split()[0]] is None
    assert OTHER not in json.dumps(body)
    assert not any(OTHER in r.getMessage() for r in caplog.records)


# Start-up ---------------------------------------------------------------------------------


def fanout_sdl(levels: int, fan: int) -> str:
    """A small SDL whose types each use the next one ``fan`` times."""
    parts = ['"r" type Resident @key(fields: "rrn") { rrn: ID! "v" t0: T0 }']
    for i in range(levels):
        body = (
            " ".join(f'"f" f{j}: T{i + 1}' for j in range(fan))
            if i < levels - 1
            else '"x" x: String'
        )
        parts.append(f'"t" type T{i} {{ {body} }}')
    return "\n".join(parts)


def test_an_sdl_expanding_exponentially_stops_start_up() -> None:
    sdl = fanout_sdl(8, 10)  # under 1 KB; 10**7 fields once expanded
    assert len(sdl) < 1000
    with pytest.raises(ConfigError) as refused:
        from_sdl("vehicle", sdl, HERE)
    message = str(refused.value)
    assert message.startswith(f"{HERE}: type T")
    assert "\n" not in message
    assert f"at most {MAX_FIELDS} fields" in message


@pytest.mark.parametrize(("levels", "fan"), [(9, 2), (2, MAX_FIELDS + 1), (30, 1)])
def test_too_many_or_too_deep_fields_stop_start_up(levels: int, fan: int) -> None:
    with pytest.raises(ConfigError, match=r"expands to more than the gateway composes"):
        from_sdl("vehicle", fanout_sdl(levels, fan), HERE)


def test_a_moderate_sdl_is_composed_with_a_bounded_selection() -> None:
    made = from_sdl("vehicle", fanout_sdl(3, 10), HERE)
    selection: str = made.dataset.record.__selection__
    assert selection.count(" x") == 100  # every field, as often as it is reached
    assert len(selection) < 4000


@pytest.mark.parametrize(
    ("sdl", "problem"),
    [
        ('"v" type V { "x" __x: String }', "field V.__x: names starting with __ are reserved"),
        ('"v" type V { "x" x: E } "e" enum E { A __B }', "enum value E.__B: names starting"),
    ],
)
def test_a_reserved_name_stops_start_up_in_one_line(sdl: str, problem: str) -> None:
    full = '"r" type Resident @key(fields: "rrn") { rrn: ID! "v" v: V } ' + sdl
    with pytest.raises(ConfigError) as refused:
        from_sdl("vehicle", full, HERE)
    assert str(refused.value).startswith(f"{HERE}: {problem}")


def test_an_invalid_contributed_type_names_its_owner() -> None:
    """A schema that does not build because of a contribution's types: one line naming it."""

    @strawberry.type(description="Bad.")
    class Bad:
        view: strawberry.Private[str]
        subject: strawberry.Private[str]
        x: str | None = strawberry.field(name="__x", description="Reserved name.")

    @strawberry.type(description="Bad record.")
    class BadRecord:
        x: str | None = None

    bad = Contribution(
        dataset=Dataset("badpkg", BadRecord), types=(Bad,),
        fields=(ResidentField("badThing", Bad, "Bad.", lambda r, v, s: None),),
    )  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        build_schema(contributions=[("[agencies.badpkg]", bad)])
    message = str(refused.value)
    assert message.startswith("[agencies.badpkg]: its types make an invalid schema")
    assert "\n" not in message


def test_where_never_shows_the_urls_credential() -> None:
    agency = AgencyConfig(
        code="vehicle", kind="graphql", url="https://svc:s3cret@vehicles.example:8443/graphql"
    )
    assert (
        where(agency)
        == "[agencies.vehicle] (graphql subgraph https://vehicles.example:8443/graphql)"
    )
    unreachable = AgencyConfig(
        code="vehicle", kind="graphql", url="http://svc:s3cret@127.0.0.1:9/graphql", timeout_ms=500
    )
    with pytest.raises(ConfigError) as refused:
        contribution(unreachable, {**unreachable.settings, "url": unreachable.url})
    assert "s3cret" not in str(refused.value)
    assert "svc@" not in str(refused.value)


def test_a_trickled_sdl_stops_start_up_within_the_timeout(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" "
            await asyncio.sleep(0.2)  # under the 0.5 s read timeout: never idle long enough
        yield b'{"data": {"_service": {"sdl": ""}}}'

    outcome: list[BaseException | object] = []
    with serving(Hostile(SDL, honest, sdl_stream=trickle)) as h:
        cfg = config(agency_db, http_agencies, h.url, tmp_path, timeout_ms=500)

        def start() -> None:
            try:
                outcome.append(schema_for(cfg))
            except BaseException as exc:
                outcome.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        thread.join(10)
        took = time.monotonic() - started
    # Wide margin: the trickle lasts 20 s; start-up gives up near timeout_ms (0.5 s).
    assert not thread.is_alive()
    assert took < 10
    assert len(outcome) == 1
    assert isinstance(outcome[0], ConfigError), outcome
    message = str(outcome[0])
    assert message.startswith("[agencies.vehicle] (graphql subgraph http://127.0.0.1:")
    assert message.endswith(": cannot read its SDL: vehicle did not answer whole within 500 ms")
    assert "\n" not in message


def test_start_up_falls_back_to_the_last_sdl_saved(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """With ``sdl_cache``, a subgraph down at start-up does not keep the gateway down: it
    starts from the SDL last read, with a warning; without a saved copy it still refuses."""
    saved = tmp_path / "state" / "vehicle.sdl"

    def cfg(url: str, cache: Path) -> Config:
        agency = AgencyConfig(
            code="vehicle", kind="graphql", url=url, cache=False, retries=0, timeout_ms=1000,
            settings={"sdl_cache": str(cache)},
        )  # fmt: skip
        return make_config(agency_db.dsn, http_agencies, agencies={"vehicle": agency})

    with serving(Hostile(SDL, honest)) as h:
        schema_for(cfg(h.url, saved))
    assert saved.read_text() == SDL
    down = "http://127.0.0.1:9/graphql"  # nothing listens on the discard port
    with caplog.at_level("WARNING", logger="gateway.subgraph"):
        schema = schema_for(cfg(down, saved))._schema
    resident = schema.type_map["Resident"]
    assert isinstance(resident, GraphQLObjectType)
    assert "vehicles" in resident.fields
    assert [r.getMessage().split(" (graphql subgraph")[0] for r in caplog.records] == [
        "[agencies.vehicle]"
    ]
    assert "starting from the copy saved in" in caplog.records[0].getMessage()
    with pytest.raises(ConfigError, match=r"^\[agencies.vehicle\] .*: cannot read its SDL"):
        schema_for(cfg(down.replace("/graphql", "/other"), tmp_path / "none.sdl"))


async def test_no_error_message_quotes_an_rrn(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    """The second layer: graphql-core quotes a value it cannot coerce; the gateway masks any
    RRN in an outgoing message whoever wrote it."""
    with serving(Hostile(SDL, honest)) as h:
        cfg = config(agency_db, http_agencies, h.url, tmp_path)
        async with gateway_client(cfg, token("officer", agency="welfare")) as gw:
            body = await gw.query(LOOKUP % "name", {"rrn": int(OTHER.replace("-", ""))})
    assert codes(body) == ["BAD_REQUEST"], body
    message = body["errors"][0]["message"]
    assert "******-*******" in message
    assert OTHER.replace("-", "") not in json.dumps(body)
