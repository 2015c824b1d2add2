"""What a response discloses, and what the audit says it disclosed (issue 7: findings 1, 4,
6, 8 and 12). Each test failed on the code before the fix."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
import strawberry
from strawberry.dataloader import DataLoader

from gateway import policy as policy_module
from gateway.access import Access
from gateway.config import ConfigError, LimitsConfig, PolicyConfig
from gateway.graphql_schema import PURPOSES, build_schema, resident_types, schema_fields
from gateway.principal import Principal
from gateway.rrn import mask
from schema.agency import AgencyStatus
from tests.access.conftest import KEYS, demo_gateway, error_codes, fetch, scratch_store
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN

WELFARE = token("welfare_officer", agency="welfare")
ANALYST = token("analyst")

# A clerk who may read names only: no birth date, sex or foreign registration.
NAMES_ONLY = """
[roles.clerk]
description = "Reads names only."
operations = ["Query.resident", "Query.residents"]
agencies = ["welfare"]
[roles.clerk.views.CIVIL_PETITION]
fields = ["Resident.name", "Resident.household", "Household.members",
          "Resident.insurance", "HealthInsurance.insuredBy", "Resident.pension"]
consent = ["Resident.pension"]
"""


async def one(dsn: str, sql: str) -> Any:
    rows = await fetch(dsn, sql)
    assert rows, sql
    return rows[0][0]


# --- Finding 1: the masked RRN shows only what the view grants ------------------------------


async def test_a_foreign_residents_7th_digit_is_hidden_where_foreign_status_is_forbidden(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    foreigner = await one(
        agency_db.dsn, "select rrn from registry.residents where is_foreign order by rrn limit 1"
    )
    query = """query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) {
        rrn isForeignResident birthDate sex insurance { insuredType } } }"""
    async with scratch_store(admin_dsn) as db, demo_gateway(agency_db, http_agencies, db) as gw:
        body = await gw.as_(WELFARE).query(query, {"r": foreigner})
    resident = body["data"]["resident"]
    assert resident["isForeignResident"] is None  # FORBIDDEN for CIVIL_PETITION
    # Birth date and sex are granted, foreign registration is not: no 7th digit.
    assert resident["rrn"] == f"{foreigner[:6]}-*******"
    codes = error_codes(body)
    assert codes[("resident", "isForeignResident")] == "FORBIDDEN"
    assert codes[("resident", "insurance")] == "CONSENT_REQUIRED"
    message = next(e["message"] for e in body["errors"] if e["path"][-1] == "insurance")
    assert f"{foreigner[:6]}-*******" in message
    assert foreigner[:8] not in str(body)  # the 7th digit appears nowhere


async def test_a_view_without_birth_date_shows_no_digit_anywhere(
    tmp_path: Path, admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(NAMES_ONLY)
    dependant = await one(
        agency_db.dsn,
        """select e.rrn from nhis.enrolments e join registry.residents r using (rrn)
           where e.insured_by is not null and r.household_id is not null order by rrn limit 1""",
    )
    query = """query($r: String!) { resident(rrn: $r, purpose: CIVIL_PETITION) {
        rrn name household { members { rrn name } } insurance { insuredBy } pension { __typename }
    } }"""
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(
            agency_db, http_agencies, db, policy=PolicyConfig(file=str(policy))
        ) as gateway,
    ):
        body = await gateway.as_(token("clerk", agency="welfare")).query(query, {"r": dependant})
    resident = body["data"]["resident"]
    assert resident["name"]
    assert resident["rrn"] == "******-*******"
    assert {m["rrn"] for m in resident["household"]["members"]} == {"******-*******"}
    assert resident["insurance"]["insuredBy"] == "******-*******"
    assert error_codes(body) == {("resident", "pension"): "CONSENT_REQUIRED"}
    assert "******-*******" in body["errors"][0]["message"]
    assert dependant[:6] not in str(body)


def test_masking_levels() -> None:
    assert mask("711231-1234567") == "711231-1******"
    assert mask("711231-1234567", seventh_digit=False) == "711231-*******"
    assert mask("711231-1234567", birth_date=False, seventh_digit=False) == "******-*******"


# --- Finding 4: refused lookups are bounded, limits come before the audit -------------------


async def test_an_oversized_refused_lookup_writes_no_audit_rows(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    rrns = await fetch(agency_db.dsn, "select rrn from registry.residents order by rrn")
    many = [r["rrn"] for r in rrns] * 9  # 3,600 RRNs, ~65 KB
    big = "query($r: [String!]!) { residents(rrns: $r, purpose: WELFARE_ELIGIBILITY) { rrn } }"
    fields = " ".join(
        f"a{i}: residents(rrns: $r, purpose: WELFARE_ELIGIBILITY) {{ rrn }}" for i in range(5)
    )
    aliased = f"query($r: [String!]!) {{ {fields} }}"
    async with scratch_store(admin_dsn) as db, demo_gateway(agency_db, http_agencies, db) as gw:
        analyst = gw.as_(ANALYST)
        whole = await analyst.query(big, {"r": many})
        rows_after_big = await fetch(db.dsn, "select count(*) from gateway.audit_log")
        split = await analyst.query(aliased, {"r": many[:100]})
        rows_after_aliases = await fetch(db.dsn, "select count(*) from gateway.audit_log")
    assert whole["data"] is None
    assert error_codes(whole) == {("residents",): "QUERY_TOO_COMPLEX"}
    assert rows_after_big[0][0] == 0
    # Five aliases of 100 each: the first is refused (FORBIDDEN) and audited; the rest, if
    # executed at all, are over the request's budget of max_batch named residents.
    codes = error_codes(split)
    assert codes.pop(("a0",)) == "FORBIDDEN"
    assert set(codes.values()) <= {"QUERY_TOO_COMPLEX"}
    assert rows_after_aliases[0][0] == 100


async def test_refused_lookups_across_aliases_are_bounded_by_max_batch(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    rows = await fetch(agency_db.dsn, "select rrn from registry.residents order by rrn limit 30")
    fields = " ".join(
        f'a{i}: resident(rrn: "{r["rrn"]}", purpose: WELFARE_ELIGIBILITY) {{ rrn }}'
        for i, r in enumerate(rows)
    )
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db, limits=LimitsConfig(max_batch=10)) as gw,
    ):
        body = await gw.as_(ANALYST).query(f"{{ {fields} }}")
        audited = await fetch(db.dsn, "select count(*) from gateway.audit_log")
    codes = list(error_codes(body).values())
    assert codes.count("FORBIDDEN") == 10
    assert codes.count("QUERY_TOO_COMPLEX") == 20
    assert audited[0][0] == 10


# --- Finding 6: "no record" is a disclosure --------------------------------------------------


async def test_an_agencys_no_record_is_audited_as_disclosed(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    uninsured = await one(
        agency_db.dsn,
        """select rrn from registry.residents r where not exists
           (select 1 from nhis.enrolments e where e.rrn = r.rrn)
           and not exists (select 1 from mma.service_records m where m.rrn = r.rrn)
           order by rrn limit 1""",
    )
    query = """query($r: String!) { resident(rrn: $r, purpose: TAX_ADMINISTRATION) {
        insurance { insuredType } } }"""
    async with scratch_store(admin_dsn) as db, demo_gateway(agency_db, http_agencies, db) as gw:
        body = await gw.as_(token("tax_officer", agency="nts")).query(query, {"r": uninsured})
        rows = await fetch(
            db.dsn,
            "select disclosed from gateway.audit_log where subject = $1",
            KEYS.subject(uninsured),
        )
    assert body == {"data": {"resident": {"insurance": None}}}
    assert [list(r["disclosed"]) for r in rows] == [["Resident.insurance"]]


# --- Finding 8: provenance does not tell when someone else looked ---------------------------


async def test_provenance_of_a_cache_hit_does_not_date_the_first_lookup(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    first, second = await fetch(agency_db.dsn, "select rrn from registry.residents limit 2")
    query = """query($r: String!) { resident(rrn: $r, purpose: TAX_ADMINISTRATION) {
        insurance { insuredType } } }"""
    config = make_config(agency_db.dsn, http_agencies, cached=True)
    async with gateway_client(config) as gateway:
        await gateway.query(query, {"r": first["rrn"]})  # someone looks first up
        await asyncio.sleep(1.1)
        started = time.time()
        hit = await gateway.query(query, {"r": first["rrn"]}, extensions={"provenance": True})
        miss = await gateway.query(query, {"r": second["rrn"]}, extensions={"provenance": True})
        finished = time.time()
    ttl = config.agencies["nhis"].cache_ttl_s
    bounds = {
        dt.datetime.fromtimestamp((t - ttl) // 60 * 60, dt.UTC).isoformat()
        for t in (started, finished)
    }
    as_of = {
        tuple(e["path"]): e["asOf"]
        for body in (hit, miss)
        for e in body["extensions"]["provenance"]
    }
    assert set(as_of.values()) <= bounds, as_of
    # The cached answer and a fresh read of another resident look alike.
    assert len(set(as_of.values())) == 1 or len(bounds) == 2


# --- Finding 12: every type under Resident is checked; unclassified types stop start-up ------


@dataclass(frozen=True)
class Person:
    rrn: str


@strawberry.type(description="A dossier: a type new to the schema and to every policy.")
class Dossier:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]
    note: str | None = strawberry.field(description="A note.")


def _dossier(root: MiniResident) -> Dossier:
    return Dossier(view=root.view, subject=root.record.rrn, note="classified")


@strawberry.type(name="Resident", description="A resident with a dossier.")
class MiniResident:
    record: strawberry.Private[Person]
    view: strawberry.Private[str]
    name: str | None = strawberry.field(description="Name.", default="Kim")
    dossier: Dossier | None = strawberry.field(resolver=_dossier, description="Dossier.")


def _person(info: strawberry.Info) -> MiniResident:
    info.context.access.returned(HEAD_RRN, "CIVIL_PETITION", info)
    return MiniResident(record=Person(HEAD_RRN), view="CIVIL_PETITION")


@strawberry.type(name="Query", description="Root.")
class MiniQuery:
    person: MiniResident = strawberry.field(resolver=_person, description="One person.")


@strawberry.type(description="A new service type nobody classified.")
class Gadget:
    label: str = strawberry.field(description="A label.")


def _gadget() -> Gadget:
    return Gadget(label="x")


@strawberry.type(name="Query", description="Root with a gadget.")
class GadgetQuery(MiniQuery):
    gadget: Gadget = strawberry.field(resolver=_gadget, description="A gadget.")


def test_types_under_resident_are_derived_and_an_unclassified_type_stops_start_up() -> None:
    assert resident_types(build_schema()) == {
        "Resident", "Address", "Household", "HealthInsurance", "TaxRecord", "Pension",
        "MilitaryService",
    }  # fmt: skip
    assert resident_types(build_schema(query=MiniQuery, mutation=None)) == {"Resident", "Dossier"}
    with pytest.raises(ConfigError, match="Gadget"):
        build_schema(query=GadgetQuery, mutation=None)


async def test_a_new_type_under_resident_is_denied_by_default() -> None:
    schema = build_schema(query=MiniQuery, mutation=None)
    # The policy grants the field that leads to the new type, and nothing of the type itself.
    raw = tomllib.loads("""
        [roles.clerk]
        description = "Clerk."
        operations = ["Query.person"]
        [roles.clerk.views.CIVIL_PETITION]
        fields = ["Resident.name", "Resident.dossier"]
    """)
    policy = policy_module.parse(
        raw, schema_fields(schema), PURPOSES, resident_types=resident_types(schema)
    )

    async def no_consents(keys: Sequence[str]) -> list[list[Any]]:
        return [[] for _ in keys]

    access = Access(Principal(sub="c", roles=("clerk",)), policy, KEYS, DataLoader(no_consents))
    result = await schema.execute(
        "{ person { name dossier { note } } }", context_value=SimpleNamespace(access=access)
    )
    assert result.data == {"person": {"name": "Kim", "dossier": {"note": None}}}
    assert [(e.path, e.original_error.__class__.__name__) for e in result.errors or []] == [
        (["person", "dossier", "note"], "Forbidden")
    ]
    [record] = access.drain("r1")
    assert record.denied == ("Dossier.note",)
    assert record.disclosed == ("Resident.dossier", "Resident.name")


@strawberry.type(description="A note under a resident.")
class Note:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]
    text: str | None = strawberry.field(description="Text.")


NoteOrStatus = Annotated[Note | AgencyStatus, strawberry.union("NoteOrStatus")]


def _extra(root: UnionResident) -> Note:
    return Note(view=root.view, subject=root.record.rrn, text="x")


@strawberry.type(name="Resident", description="A resident with a union-typed field.")
class UnionResident:
    record: strawberry.Private[Person]
    view: strawberry.Private[str]
    extra: NoteOrStatus | None = strawberry.field(resolver=_extra, description="Extra.")


def _union_person() -> UnionResident:
    return UnionResident(record=Person(HEAD_RRN), view="CIVIL_PETITION")


@strawberry.type(name="Query", description="Root.")
class UnionQuery:
    person: UnionResident = strawberry.field(resolver=_union_person, description="One.")


def test_a_service_type_inside_a_union_under_resident_stops_start_up() -> None:
    """Review finding: union members were not walked, so AgencyStatus reached through a
    union under Resident was served as a service type: no grant, no audit."""
    with pytest.raises(ConfigError, match=r"AgencyStatus.*reachable from Resident"):
        build_schema(query=UnionQuery, mutation=None)
