"""Review of planned execution's loaded-value path (``when_loaded`` twins, the awaited wave):
hand-written documents an insider would try, each sent to a planned gateway and to the
per-field reference (``tests/access/per_field.py``); response, audit rows and agency keys
must agree, as in the random differential test (``test_planned.py``), whose fixtures these
share.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
import strawberry
from asgi_lifespan import LifespanManager
from graphql import GraphQLObjectType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from adapters.base import Adapter, AgencyFailure
from adapters.records import Dataset
from gateway import agencies as agencies_module
from gateway.app import create_app
from gateway.config import AgencyConfig, LimitsConfig
from gateway.graphql_schema import PURPOSES, _when_loaded, schema_for
from gateway.policy import SELF, SELF_HOUSEHOLD
from resolvers.loading import NOT_LOADED, when_loaded
from tests.access.conftest import demo_config, scratch_store
from tests.access.per_field import per_field_schema
from tests.access.test_planned import Request, Side, canonical, requests, run, sides, subjects
from tests.access.test_property import AGENCY
from tests.conftest import GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN
from tests.resilience.conftest import HOUSEHOLD_RRNS

__all__ = ["sides", "subjects"]  # fixtures shared with test_planned

P0, P1 = PURPOSES[0], PURPOSES[1]
MEMBER = (
    "rrn name insurance { insuredType insuredBy } taxes { year } pension { subscriberType }"
    " militaryService { status }"
)


def grant(*fields: str, consent: tuple[str, ...] = (), unmasked: bool = False) -> dict[str, Any]:
    return {"fields": sorted(fields), "consent": sorted(consent), "unmasked_rrn": unmasked}


EVERYTHING = (
    "Resident.rrn", "Resident.name", "Resident.household", "Resident.insurance",
    "Resident.taxes", "Resident.pension", "Resident.militaryService",
    "HealthInsurance.insuredType", "HealthInsurance.insuredBy", "TaxRecord.year",
    "TaxRecord.arrears", "Pension.subscriberType", "MilitaryService.status",
    "Household.size", "Household.members", "Household.head",
)  # fmt: skip


def officer(views: dict[str, Any]) -> dict[str, Any]:
    role = {"description": "o", "operations": ["Query.resident", "Query.residents"],
            "views": views, "agencies": [AGENCY]}  # fmt: skip
    return {"roles": {"tester": role}}


def citizen(views: dict[str, Any]) -> dict[str, Any]:
    role = {"description": "c", "operations": ["Query.me"], "views": views, "agencies": [AGENCY]}
    return {"roles": {"tester": role}}


async def same(
    sides: tuple[Side, Side, Side], request: Request, *, ran: bool = True
) -> dict[str, Any]:
    planned, uncompiled, per_field = sides
    body, rows, keys = await run(planned, request)
    core_body, core_rows, core_keys = await run(uncompiled, request)
    assert _canonical_any(body) == _canonical_any(core_body), (body, core_body)
    assert sorted(rows) == sorted(core_rows), (rows, core_rows)
    assert keys == core_keys
    old_body, old_rows, old_keys = await run(per_field, request)
    assert _canonical_any(body) == _canonical_any(old_body), (body, old_body)
    assert sorted(rows) == sorted(old_rows), (rows, old_rows)
    parsed = json.loads(body)
    assert keys == old_keys
    for one in parsed if isinstance(parsed, list) else [parsed]:
        assert one.get("data") or not ran, one  # it ran: a refused one would prove nothing
    return {"body": parsed, "rows": rows}


def _canonical_any(body: bytes) -> Any:
    parsed = json.loads(body)
    if isinstance(parsed, list):  # a batch
        return [canonical(json.dumps(p).encode()) for p in parsed]
    return canonical(body)


def officer_request(policy: dict[str, Any], body: Any, rrn: str = HEAD_RRN) -> Request:
    return Request(policy, ["tester"], body, False, rrn)


async def test_aliased_taxes_with_different_years(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    policy = officer({P0: grant(*EVERYTHING)})
    aliases = (
        " rrn a: taxes(years: [2024]) { year } b: taxes(years: $y) { year arrears }"
        " c: taxes { year } d: taxes(years: 2024) { year } e: taxes(years: []) { year }"
        " f: taxes(years: null) { year } g: taxes(years: [2024, 2024, 1900]) { year }"
    )
    head = "query($r: String!, $y: [Int!]) { resident(rrn: $r, purpose: " + P0 + ") {"
    queries = [
        # Nothing under the resident loads more than its wave: its taxes answer from it.
        head + aliases + " } }",
        # A nested Resident: the root answers as before, the members from their wave.
        head + " rrn household { members {" + aliases + " } } } }",
    ]
    for query in queries:
        for y in ([2025], None, [2024, 2023]):
            for rrn in subjects:
                body = {"query": query, "variables": {"r": rrn, "y": y}}
                await same(sides, officer_request(policy, body, rrn))


async def test_consent_gated_field_beside_granted_ones_in_a_household(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    # insurance needs consent (only every other subject has one); taxes and pension do not;
    # militaryService is denied.
    views = {P0: grant(*(f for f in EVERYTHING if f != "Resident.militaryService"),
                       consent=("Resident.insurance",))}  # fmt: skip
    query = (
        "query($r: String!) { resident(rrn: $r, purpose: " + P0 + ") {"
        " " + MEMBER + " household { size head { " + MEMBER + " } members { " + MEMBER + " } } } }"
    )
    for rrn in subjects:
        await same(
            sides, officer_request(officer(views), {"query": query, "variables": {"r": rrn}})
        )


async def test_members_only_granted_agency_fields_with_fragments_and_directives(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    views = {P0: grant(*EVERYTHING, unmasked=True)}
    query = (
        "query($r: String!, $yes: Boolean!, $no: Boolean!) {"
        " residents(rrns: [$r, $r], purpose: " + P0 + ") { rrn ...R"
        " household { members { ... on Resident { ...R } t: taxes(years: [2024]) @include(if: $yes)"
        " { year } p: pension @skip(if: $no) { subscriberType } } } } }"
        " fragment R on Resident { name insurance { insuredBy } taxes { year }"
        " militaryService @skip(if: $yes) { status } }"
    )
    for rrn in subjects:
        body = {"query": query, "variables": {"r": rrn, "yes": True, "no": False}}
        await same(sides, officer_request(officer(views), body, rrn))


async def test_batched_operations_with_different_purposes(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    views = {
        P0: grant("Resident.rrn", "Resident.taxes", "TaxRecord.year", "Resident.household",
                  "Household.members", "Resident.insurance", "HealthInsurance.insuredBy"),
        P1: grant("Resident.rrn", "Resident.pension", "Pension.subscriberType",
                  "Resident.insurance", "HealthInsurance.insuredType", "Resident.household",
                  "Household.members", consent=("Resident.insurance",)),
    }  # fmt: skip
    same_text = (
        "query($r: String!, $p: Purpose!) { resident(rrn: $r, purpose: $p) { rrn "
        "taxes { year } pension { subscriberType } insurance { insuredType insuredBy } "
        "household { members { rrn taxes { year } insurance { insuredBy } } } } }"
    )
    # A JSON array of operations is refused whole (batching is off: test_bypass); the same
    # mix in one document: aliased root fields under different purposes, same residents.
    query = (
        "query($r: String!, $h: String!) {"
        " a: resident(rrn: $r, purpose: " + P0 + ") { ...M }"
        " b: resident(rrn: $r, purpose: " + P1 + ") { ...M }"
        " c: residents(rrns: [$h, $r], purpose: " + P1 + ") { ...M } }"
        " fragment M on Resident { rrn taxes { year } pension { subscriberType }"
        " insurance { insuredType insuredBy }"
        " household { members { rrn taxes { year } insurance { insuredBy } } } }"
    )
    assert same_text
    for rrn in subjects:
        body = {"query": query, "variables": {"r": rrn, "h": HEAD_RRN}}
        await same(sides, officer_request(officer(views), body, rrn))


async def test_citizen_me_with_household(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    views = {
        SELF: grant(*EVERYTHING),
        SELF_HOUSEHOLD: grant("Resident.rrn", "Resident.name", "Resident.taxes",
                              "TaxRecord.year", consent=("Resident.taxes",)),
    }  # fmt: skip
    query = (
        "{ me { " + MEMBER + " household { members { " + MEMBER + " } head { rrn taxes { year } } }"
        " } }"
    )
    for rrn in subjects:
        request = Request(citizen(views), ["tester"], {"query": query}, True, rrn)
        await same(sides, request)


@pytest.mark.parametrize("purpose", [P0])
async def test_insured_by_masking_and_its_audit(
    sides: tuple[Side, Side, Side], subjects: list[str], purpose: str
) -> None:
    for unmasked in (False, True):
        views = {purpose: grant(*EVERYTHING, unmasked=unmasked)}
        query = (
            "query($r: String!) { resident(rrn: $r, purpose: " + purpose + ") { rrn"
            " insurance { insuredBy } household { members { rrn insurance { insuredBy } } } } }"
        )
        for rrn in subjects:
            result = await same(
                sides, officer_request(officer(views), {"query": query, "variables": {"r": rrn}})
            )
            assert "insuredBy" in json.dumps(result["body"])


async def test_one_dataset_granted_under_one_purpose_and_consent_gated_under_another(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    """The same resident under two aliases: taxes loaded (and answered from the loaded
    value) under P0 must still need consent under P1, and stay denied under P2."""
    p2 = PURPOSES[2]
    views = {
        P0: grant("Resident.rrn", "Resident.taxes", "TaxRecord.year"),
        P1: grant("Resident.rrn", "Resident.taxes", "TaxRecord.year",
                  consent=("Resident.taxes",)),
        p2: grant("Resident.rrn"),
    }  # fmt: skip
    query = (
        "query($r: String!) {"
        " a: resident(rrn: $r, purpose: " + P0 + ") { rrn taxes { year } }"
        " b: resident(rrn: $r, purpose: " + P1 + ") { rrn taxes { year } }"
        " c: resident(rrn: $r, purpose: " + p2 + ") { rrn taxes { year } } }"
    )
    consented = set(subjects[::2])
    for rrn in subjects:
        result = await same(
            sides, officer_request(officer(views), {"query": query, "variables": {"r": rrn}})
        )
        data, errors = result["body"]["data"], result["body"].get("errors", [])
        assert data["a"]["taxes"] is not None
        assert data["c"]["taxes"] is None
        codes = {tuple(e["path"]): e["extensions"]["code"] for e in errors}
        assert codes[("c", "taxes")] == "FORBIDDEN"
        if rrn in consented:
            assert data["b"]["taxes"] == data["a"]["taxes"]
        else:
            assert data["b"]["taxes"] is None
            assert codes[("b", "taxes")] == "CONSENT_REQUIRED"


async def test_provenance_of_values_answered_from_the_wave(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    """A twin notes where its value came from as the resolver would: same paths (list
    indices included), agencies and staleness; only the times differ between gateways."""
    policy = officer({P0: grant(*EVERYTHING)})
    member = (
        "rrn a: taxes(years: [2024]) { year } insurance { insuredBy } pension { subscriberType }"
    )
    queries = [
        "query($r: String!) { resident(rrn: $r, purpose: " + P0 + ") { " + member + " } }",
        "query($r: String!) { residents(rrns: [$r, $r], purpose: " + P0 + ") { rrn"
        " household { size members { " + member + " } } } }",
    ]

    def entries(one: Side, body: bytes) -> list[tuple[Any, ...]]:
        found = json.loads(body).get("extensions", {}).get("provenance", [])
        return sorted((json.dumps(e["path"]), e["agency"], e["stale"]) for e in found)

    planned, _, per_field = sides
    for query in queries:
        for rrn in subjects:
            request = officer_request(
                policy,
                {"query": query, "variables": {"r": rrn}, "extensions": {"provenance": True}},
            )
            body, rows, _ = await run(planned, request)
            old_body, old_rows, _ = await run(per_field, request)
            assert sorted(rows) == sorted(old_rows)
            assert json.loads(body)["data"] == json.loads(old_body)["data"]
            assert entries(planned, body) == entries(per_field, old_body)
            assert entries(planned, body), body


# --- an agency failing for one member only, cache off and on ---------------------------------

FAILING = HOUSEHOLD_RRNS[-1]


def failing_kind(base: type[Adapter], *, slow: bool) -> type[Adapter]:
    class OneMemberFails(base):  # type: ignore[misc, valid-type]
        """The SQL agency, but one member's key fails (or, ``slow``, their batch times out)."""

        async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
            if slow and FAILING in keys:
                await asyncio.sleep(1.0)
            entries = list(await super().fetch(dataset, keys))
            return [
                AgencyFailure("boom") if k == FAILING else e
                for k, e in zip(keys, entries, strict=True)
            ]

    return OneMemberFails


@contextlib.asynccontextmanager
async def failing_sides(
    admin_dsn: str, agency_db: ScratchDatabase, urls: dict[str, str], cached: bool
) -> AsyncIterator[tuple[Side, Side, Side]]:
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for planned, compiled in ((True, True), (True, False), (False, False)):
            store = await stack.enter_async_context(scratch_store(admin_dsn))
            config = demo_config(agency_db, urls, store.dsn, limits=LimitsConfig(max_cost=200_000))
            agencies = dict(config.agencies)
            agencies["nhis"] = AgencyConfig(code="nhis", kind="one-fails", dsn=agency_db.dsn,
                                            cache=cached, retries=0)  # fmt: skip
            agencies["nps"] = AgencyConfig(code="nps", kind="one-slow", dsn=agency_db.dsn,
                                           cache=cached, retries=0, timeout_ms=300)  # fmt: skip
            config = dataclasses.replace(config, agencies=agencies)
            schema = schema_for(config) if planned else per_field_schema(config)
            if not compiled:
                schema.execution_context_class = StrawberryGraphQLCoreExecutionContext
            app = create_app(config, schema)
            manager = await stack.enter_async_context(LifespanManager(app))
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app), base_url="http://gateway"
                )
            )
            out.append(Side(GatewayClient(http, app, token("tester")), store))
        yield out[0], out[1], out[2]


@pytest.mark.parametrize("cached", [False, True])
async def test_an_agency_failing_for_one_member_only(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, cached: bool,
) -> None:  # fmt: skip
    installed = agencies_module.adapter_classes()
    extra = {"one-fails": failing_kind(installed["sql"], slow=False),
             "one-slow": failing_kind(installed["sql"], slow=True)}  # fmt: skip
    monkeypatch.setattr(agencies_module, "adapter_classes", lambda: {**installed, **extra})
    views = {P0: grant(*EVERYTHING, unmasked=True)}
    query = (
        "query($r: String!) { resident(rrn: $r, purpose: "
        + P0
        + ") { "
        + MEMBER
        + " household { members { "
        + MEMBER
        + " } } } }"
    )
    async with failing_sides(admin_dsn, agency_db, http_agencies, cached) as pair:
        for _ in range(2):  # the second time from the cache, where it is on
            for rrn in (HEAD_RRN, FAILING):
                result = await same(
                    pair, officer_request(officer(views), {"query": query, "variables": {"r": rrn}})
                )
                codes = {e["extensions"]["code"] for e in result["body"]["errors"]}
                # nhis fails for one member; nps times out for any batch holding them (until
                # its breaker opens: AGENCY_UNAVAILABLE then).
                assert "AGENCY_UNAVAILABLE" in codes, result["body"]
                assert codes <= {"AGENCY_UNAVAILABLE", "AGENCY_TIMEOUT"}, result["body"]


# --- what a when_loaded twin may be given ------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


def _twin(root: Any, info: Any, **kwargs: Any) -> Any:
    return NOT_LOADED


@when_loaded(_twin)
async def _by_colour(root: Any, colour: Colour) -> str:
    return "red" if colour is Colour.RED else "?"


@when_loaded(_twin)
async def _by_tax_year(root: Any, tax_year: int) -> int:
    return tax_year


@when_loaded(_twin)
async def _by_years(root: Any, years: list[int] | None = None) -> int:
    return len(years or ())


@strawberry.type
class Probe:
    by_colour: str = strawberry.field(resolver=_by_colour)
    by_tax_year: int = strawberry.field(resolver=_by_tax_year)
    by_years: int = strawberry.field(resolver=_by_years)


@strawberry.type
class ProbeQuery:
    probe: Probe


def test_a_twin_is_refused_where_strawberry_would_have_converted_its_arguments() -> None:
    """The twin gets graphql-core's arguments: GraphQL names (taxYear, not tax_year) and an
    enum's raw value ("red", not Colour.RED). Used there, it would answer a TypeError
    (INTERNAL) or quietly differ from its resolver; the schema must not be built so."""
    probe = strawberry.Schema(query=ProbeQuery)._schema.type_map["Probe"]
    assert isinstance(probe, GraphQLObjectType)
    fields = probe.fields
    assert _when_loaded(fields["byYears"]) is _twin  # builtin scalars, same name: fine
    for name in ("byColour", "byTaxYear"):
        with pytest.raises(TypeError, match="when_loaded"):
            _when_loaded(fields[name])


# --- the compiled executor (gateway/executor.py) against graphql-core's ----------------------


async def test_a_condition_variable_given_null_below_the_root(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    """``$v: Boolean = true`` may stand where Boolean! goes (it has a default), and the
    client may still send null: graphql-core refuses the directive where it collects that
    selection, a field error at the object holding it (that object null, the rest served);
    the compiled executor must not turn it into a request error."""
    policy = officer({P0: grant(*EVERYTHING)})
    query = (
        "query($r: String!, $v: Boolean = true) {"
        " a: resident(rrn: $r, purpose: " + P0 + ") { rrn name @include(if: $v) }"
        " b: resident(rrn: $r, purpose: " + P0 + ") { rrn } }"
    )
    for v in (None, True, False):
        body = {"query": query, "variables": {"r": HEAD_RRN, "v": v}}
        await same(sides, officer_request(policy, body))


NARROW = officer({P0: grant("Resident.rrn", "Resident.household", "Household.members"),
                  P1: grant(*EVERYTHING, consent=("Resident.taxes",))})  # fmt: skip
WIDE = officer({P0: grant(*EVERYTHING, unmasked=True), P1: grant("Resident.rrn")})

TREE_DOCUMENTS = [
    # Purpose as a variable: one compiled tree, several views.
    "query($r: String!, $p: Purpose!, $yes: Boolean!) { resident(rrn: $r, purpose: $p) {"
    " __typename rrn name taxes(years: [2024]) @include(if: $yes) { year arrears }"
    " household { __typename members { ...M ... @skip(if: $yes) { pension { subscriberType } } } }"
    " } } fragment M on Resident { rrn name insurance { insuredBy } taxes { year } }",
    # The same response key from several selections, merged; conditions on each.
    "query($r: String!, $yes: Boolean!, $no: Boolean!) { x: resident(rrn: $r, purpose: "
    + P0
    + ") { rrn name @include(if: $yes) name @skip(if: $no) t: taxes { year }"
    " t: taxes { arrears } ... on Resident { t: taxes { year } } } x: resident(rrn: $r, purpose: "
    + P0
    + ") { household { size } } }",
    # A batch with invalid, duplicate and missing RRNs, and nested households.
    'query($r: String!, $yes: Boolean!) { residents(rrns: [$r, "bad", $r, "940812-1001752",'
    ' "000101-3000000"], purpose: ' + P0 + ") { rrn taxes { year } household @include(if: $yes)"
    " { members { rrn household { head { rrn name } members { rrn } } } } } }",
    # Literal arguments only: coerced once at compile time, reused by every caller.
    '{ resident(rrn: "' + HEAD_RRN + '", purpose: ' + P1 + ") { rrn name"
    " taxes(years: [2024, 2023]) { year } insurance { insuredType } } }",
]


@pytest.mark.parametrize("document", TREE_DOCUMENTS)
async def test_one_compiled_tree_serves_callers_it_was_not_compiled_for(
    sides: tuple[Side, Side, Side], subjects: list[str], document: str
) -> None:
    """A tree compiled under one caller's policy, purpose and condition values, then run
    for another: each answer, audit row and agency call as graphql-core's for that caller."""
    for policy in (WIDE, NARROW, WIDE):
        for purpose in (P0, P1):
            for yes in (True, False):
                for rrn in subjects[:3]:
                    variables = {"r": rrn, "p": purpose, "yes": yes, "no": not yes}
                    used = {k: v for k, v in variables.items() if f"${k}" in document}
                    await same(sides, officer_request(policy, {"query": document,
                                                              "variables": used}, rrn))  # fmt: skip


async def test_one_compiled_me_tree_serves_every_citizen(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    views_a = {SELF: grant(*EVERYTHING), SELF_HOUSEHOLD: grant("Resident.rrn", "Resident.name")}
    views_b = {SELF: grant("Resident.rrn", "Resident.household", "Household.members"),
               SELF_HOUSEHOLD: grant(*EVERYTHING, consent=("Resident.taxes",))}  # fmt: skip
    query = (
        "query($yes: Boolean!) { me { " + MEMBER + " household { head { rrn name } members {"
        " " + MEMBER + " household @include(if: $yes) { size } } } } again: me { rrn } }"
    )
    for views in (views_a, views_b, views_a):
        for yes in (True, False):
            for rrn in subjects:
                body = {"query": query, "variables": {"yes": yes}}
                request = Request(citizen(views), ["tester"], body, True, rrn)
                await same(sides, request)


@settings(
    max_examples=int(os.environ.get("PLANS_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
async def test_random_documents_replayed_with_every_condition_and_another_policy(
    sides: tuple[Side, Side, Side], subjects: list[str], data: Any
) -> None:
    """The random differential sends yes=True, no=False only: here each random document
    runs with every combination of its condition variables and under a second random
    policy, so each compiled tree also serves requests it was not compiled for."""
    first: Request = data.draw(requests(subjects))
    other = data.draw(requests(subjects)).policy["roles"]
    # The other policy's grants under the first's role names (the token names those).
    another = {"roles": {name: other.get(name, other["tester"]) for name in first.policy["roles"]}}
    for policy in (first.policy, another, first.policy):
        for yes, no in ((True, False), (False, True), (True, True), (False, False)):
            body = {**first.body, "variables": {**first.body["variables"], "yes": yes, "no": no}}
            # A refused residents lookup nulls data (the list is non-null): fine here.
            request = dataclasses.replace(first, policy=policy, body=body)
            await same(sides, request, ran=False)


async def test_two_operations_of_one_document_sharing_fragments(
    sides: tuple[Side, Side, Side], subjects: list[str]
) -> None:
    """Each operation of a document has a compiled tree of its own (and trees per condition
    values); the fragments they share carry conditions on variables only one declares."""
    views = {SELF: grant(*EVERYTHING), SELF_HOUSEHOLD: grant("Resident.rrn", "Resident.name"),
             P0: grant(*EVERYTHING)}  # fmt: skip
    operations = ["Query.me", "Query.myConsents", "Query.resident"]
    role = {"description": "c", "operations": operations, "views": views, "agencies": [AGENCY]}
    policy = {"roles": {"tester": role}}
    query = (
        "query Mine($yes: Boolean!) { me { ...R household { members { ...R } } }"
        " myConsents { purpose agency active } }"
        " query Theirs($r: String!, $yes: Boolean!, $no: Boolean!) {"
        " resident(rrn: $r, purpose: "
        + P0
        + ") { ...R pension @skip(if: $no) { subscriberType } } }"
        " fragment R on Resident { rrn name @include(if: $yes) taxes @skip(if: $yes) { year }"
        " __typename }"
    )
    for yes in (True, False, True):
        for rrn in subjects[:3]:
            for name, variables in (
                ("Mine", {"yes": yes}),
                ("Theirs", {"r": rrn, "yes": yes, "no": not yes}),
            ):
                body = {"query": query, "operationName": name, "variables": variables}
                await same(sides, Request(policy, ["tester"], body, True, rrn))
