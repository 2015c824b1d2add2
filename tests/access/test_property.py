"""Property: whatever the policy and however the document is written (aliases, fragments,
@skip/@include, households, ``residents``, ``me``), no value the view denies and no RRN digit
the view does not grant leaves the gateway, and every resident in a response is audited.

Random policies are swapped into one running gateway (the runtime's policy is read per
request), so each example costs one HTTP request against the real agencies and store.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import tomllib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import policy as policy_module
from gateway.config import LimitsConfig
from gateway.graphql_schema import PURPOSES, build_schema, resident_types, schema_fields
from gateway.policy import CONSENTABLE, SELF, SELF_HOUSEHOLD, Grant, Policy
from tests.access.conftest import KEYS, demo_gateway, fetch, scratch_store
from tests.conftest import GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN

SCHEMA = build_schema()
FIELDS = schema_fields(SCHEMA)
RESIDENT_TYPES = resident_types(SCHEMA)
COORDINATES = sorted(f"{t}.{f}" for t in RESIDENT_TYPES for f in FIELDS[t])
AGENCY = "welfare"

# Which field leads to which type (None: a leaf), and which return lists.
TARGET: dict[str, str | None] = {
    "Resident.address": "Address",
    "Resident.household": "Household",
    "Resident.insurance": "HealthInsurance",
    "Resident.taxes": "TaxRecord",
    "Resident.pension": "Pension",
    "Resident.militaryService": "MilitaryService",
    "Household.head": "Resident",
    "Household.members": "Resident",
}
LISTS = {"Resident.taxes", "Household.members"}
RRN_SHAPED = re.compile(r"[0-9*]{6}-[0-9*]{7}")


# --- documents ---------------------------------------------------------------------------


@dataclass
class Sel:
    """One field in a generated document: its response key, coordinate and children."""

    key: str
    coordinate: str
    children: list[Sel] = field(default_factory=list)
    skipped: bool = False  # under an @skip(if: true) / @include(if: false)


counter = itertools.count()


@st.composite
def selections(draw: st.DrawFn, type_name: str, depth: int) -> list[Sel]:
    names = sorted(FIELDS[type_name])
    if depth >= 2:  # no household under a member: keeps documents within max_depth
        names = [n for n in names if TARGET.get(f"{type_name}.{n}") != "Household"]
    chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=(6, 4, 3, 2)[depth]))
    out = []
    if type_name == "Resident":  # always the bare rrn: the checks tell residents apart by it
        out.append(Sel("rrn", "Resident.rrn"))
        chosen = [n for n in chosen if n != "rrn"] or ["name"]
    for name in chosen:
        coordinate = f"{type_name}.{name}"
        target = TARGET.get(coordinate)
        children = draw(selections(target, depth + 1)) if target else []
        key = name if draw(st.integers(0, 3)) else f"k{next(counter)}_{name}"
        out.append(Sel(key, coordinate, children))
    # Response keys must be unique within a selection set for the checks below.
    seen: set[str] = set()
    unique = []
    for sel in out:
        if sel.key in seen:
            sel.key = f"k{next(counter)}_{sel.key}"
        seen.add(sel.key)
        unique.append(sel)
    return unique


@st.composite
def rendered(draw: st.DrawFn, sels: list[Sel], type_name: str, frags: dict[str, str]) -> str:
    """GraphQL text for a selection set: some fields wrapped in inline or named fragments,
    some under @skip/@include driven by variables."""
    parts = []
    for sel in sels:
        field_name = sel.coordinate.split(".")[1]
        if sel.key == "rrn" and type_name == "Resident":
            parts.append("rrn")
            continue
        args = "(years: [2024])" if field_name == "taxes" and draw(st.booleans()) else ""
        alias = "" if sel.key == field_name else f"{sel.key}: "
        directive = draw(
            st.sampled_from(["", "", "", "@skip(if: $no)", "@include(if: $yes)",
                             "@skip(if: $yes)", "@include(if: $no)"])
        )  # fmt: skip
        if directive in ("@skip(if: $yes)", "@include(if: $no)"):
            sel.skipped = True
        body = ""
        if sel.children:
            target = TARGET[sel.coordinate]
            assert target is not None
            body = " { " + draw(rendered(sel.children, target, frags)) + " }"
        text = f"{alias}{field_name}{args} {directive}{body}"
        wrap = draw(st.sampled_from(["plain", "plain", "inline", "named"]))
        if wrap == "inline":
            text = f"... on {type_name} {{ {text} }}"
        elif wrap == "named":
            name = f"F{next(counter)}"
            frags[name] = f"fragment {name} on {type_name} {{ {text} }}"
            text = f"...{name}"
        parts.append(text)
    return " ".join(parts)


@dataclass
class Case:
    policy: dict[str, Any]
    citizen: bool
    purpose: str
    root: str  # "resident", "residents" or "me"
    rrn: str
    document: str
    tree: list[Sel]


@st.composite
def grants(draw: st.DrawFn) -> dict[str, Any]:
    # Each coordinate granted or not, about half of them; the paths into agency data more
    # often, so nested fields are exercised.
    n = len(COORDINATES)
    flags = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    fields = sorted(
        c for c, flag in zip(COORDINATES, flags, strict=True) if flag >= (1 if c in TARGET else 2)
    )
    consentable = sorted(set(fields) & CONSENTABLE)
    consent = draw(st.lists(st.sampled_from(consentable), unique=True)) if consentable else []
    return {"fields": fields, "consent": consent, "unmasked_rrn": draw(st.booleans())}


@st.composite
def cases(draw: st.DrawFn, subjects: list[str]) -> Case:
    citizen = draw(st.booleans())
    purpose = draw(st.sampled_from(PURPOSES))
    if citizen:
        views = {SELF: draw(grants()), SELF_HOUSEHOLD: draw(grants())}
        role = {"description": "c", "operations": ["Query.me"], "views": views,
                "agencies": [AGENCY]}  # fmt: skip
        root = "me"
    else:
        # The declared purpose may or may not be the one the role holds a view for.
        held = purpose if draw(st.integers(0, 4)) else draw(st.sampled_from(PURPOSES))
        role = {
            "description": "o",
            "operations": draw(st.sampled_from([["Query.resident", "Query.residents"]] * 4 + [[]])),
            "views": {held: draw(grants())},
            "agencies": [AGENCY],
        }
        root = draw(st.sampled_from(["resident", "residents"]))
    policy = {"roles": {"tester": role}}
    tree = draw(selections("Resident", 0))
    frags: dict[str, str] = {}
    # Both variables are always used (an unused one fails validation).
    body = (
        draw(rendered(tree, "Resident", frags)) + " t: __typename @skip(if: $no) @include(if: $yes)"
    )
    args = {
        "resident": f"(rrn: $r, purpose: {purpose})",
        "residents": f"(rrns: [$r, $r], purpose: {purpose})",
        "me": "",
    }[root]
    alias = draw(st.sampled_from(["", "who: "]))
    query = (
        f"query($r: String!, $yes: Boolean!, $no: Boolean!) {{ {alias}{root}{args} {{ {body} }} }}"
        if root != "me"
        else f"query($yes: Boolean!, $no: Boolean!) {{ {alias}me {{ {body} }} }}"
    )
    document = " ".join([query, *frags.values()])
    rrn = draw(st.sampled_from(subjects))
    return Case(policy, citizen, purpose, root, rrn, document, tree)


# --- checks ------------------------------------------------------------------------------


def mask_pattern(grant: Grant | None, whole: bool) -> re.Pattern[str]:
    if whole:
        return re.compile(r"\d{6}-\d{7}")
    birth = r"\d{6}" if grant is not None and grant.shows_birth_date else r"\*{6}"
    seventh = r"\d" if grant is not None and grant.shows_seventh_digit else r"\*"
    return re.compile(birth + "-" + seventh + r"\*{6}")


@dataclass
class Seen:
    residents: int = 0
    coordinates: set[str] = field(default_factory=set)
    members_shown: bool = False
    head_shown: bool = False
    insured_by_shown: bool = False


def check_object(
    value: dict[str, Any],
    sels: list[Sel],
    type_name: str,
    view: str,
    policy: Policy,
    case: Case,
    seen: Seen,
    own: bool,
) -> None:
    grant = policy.grant(("tester",), view)
    granted = grant.fields if grant is not None else frozenset()
    if type_name == "Resident":
        seen.residents += 1
    for sel in sels:
        if sel.skipped:
            continue
        assert sel.key in value, (sel.key, value)
        got = value[sel.key]
        coordinate = sel.coordinate
        if coordinate == "Resident.rrn":
            # Whole: a citizen's own; otherwise where the view says so (a citizen's household
            # view included: docs/authorization.md, "What an RRN shows").
            whole = (case.citizen and own) or (
                grant is not None and grant.unmasked_rrn and view != SELF
            )
            assert mask_pattern(grant, whole).fullmatch(got), (view, got, grant)
            continue
        if coordinate not in granted:
            assert got is None, f"{coordinate} denied for {view} but answered {got!r}"
            continue
        if got is None:
            continue
        seen.coordinates.add(coordinate)
        if coordinate == "HealthInsurance.insuredBy":
            assert mask_pattern(grant, whole=False).fullmatch(got), (view, got)
            seen.insured_by_shown = True
        target = TARGET.get(coordinate)
        if target is None:
            continue
        items = got if coordinate in LISTS else [got]
        for item in items:
            if item is None:
                continue
            if target == "Resident":
                seen.members_shown |= coordinate == "Household.members"
                seen.head_shown |= coordinate == "Household.head"
                # Only the citizen's own entry in the household is SELF (shown whole).
                member_own = case.citizen and item["rrn"] == case.rrn
                member_view = view
                if case.citizen:
                    member_view = SELF if member_own else SELF_HOUSEHOLD
                check_object(item, sel.children, "Resident", member_view, policy, case, seen,
                             member_own)  # fmt: skip
            else:
                check_object(item, sel.children, target, view, policy, case, seen, own)


# --- the test ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def gateway(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> AsyncIterator[tuple[GatewayClient, ScratchDatabase]]:
    # Random documents can ask for up to ~90,000 cost units (duplicated household fields);
    # the cost limit is tested in tests/gateway/test_query_limits.py, not here.
    async with scratch_store(admin_dsn) as store, demo_gateway(
        agency_db, http_agencies, store, limits=LimitsConfig(max_cost=200_000)
    ) as client:  # fmt: skip
        yield client, store


@pytest.fixture(scope="module")
async def subjects(
    agency_db: ScratchDatabase, gateway: tuple[GatewayClient, ScratchDatabase]
) -> dict[str, list[str]]:
    """A few residents of different kinds, each with its household, and consents in force
    for some of them (so consent-gated fields are answered too)."""
    picks = [HEAD_RRN]
    for where in (
        "is_foreign",
        "exists (select 1 from nhis.enrolments e where e.rrn = r.rrn and insured_by is not null)",
        "not exists (select 1 from nhis.enrolments e where e.rrn = r.rrn)",
        "household_id is null",
    ):
        rows = await fetch(
            agency_db.dsn,
            f"select rrn from registry.residents r where {where} order by rrn limit 1",
        )
        picks += [r["rrn"] for r in rows]
    households: dict[str, list[str]] = {}
    for rrn in picks:
        rows = await fetch(
            agency_db.dsn,
            """select m.rrn from registry.residents m join registry.residents r
               on m.household_id = r.household_id where r.rrn = $1""",
            rrn,
        )
        households[rrn] = [r["rrn"] for r in rows]
    store = gateway[1]
    now = dt.datetime.now(dt.UTC)
    for rrn in picks[::2]:
        for purpose in PURPOSES:
            await fetch(
                store.dsn,
                "insert into gateway.consents values ($1, $2, $3, $4, $5, $6, null)",
                uuid.uuid4(), KEYS.subject(rrn), purpose, AGENCY, now, now + dt.timedelta(days=1),
            )  # fmt: skip
    return households


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
async def test_no_denied_value_and_no_ungranted_digit_leaves_and_everything_is_audited(
    gateway: tuple[GatewayClient, ScratchDatabase], subjects: dict[str, list[str]], data: Any
) -> None:
    client, store = gateway
    case = data.draw(cases(sorted(subjects)))
    raw = tomllib.loads(tomllib_dumps(case.policy))
    policy = policy_module.parse(raw, FIELDS, PURPOSES, resident_types=RESIDENT_TYPES)
    runtime = client.app.state.runtime
    saved, runtime.policy = runtime.policy, policy
    try:
        bearer = token("tester", rrn=case.rrn) if case.citizen else token("tester", agency=AGENCY)
        response = await client.as_(bearer).post(
            {"query": case.document, "variables": {"r": case.rrn, "yes": True, "no": False}}
        )
    finally:
        runtime.policy = saved
    assert response.status_code == 200, response.text
    body = response.json()
    for error in body.get("errors", []):
        assert error["extensions"]["code"] != "INTERNAL", (case.document, error)

    # Walk every resident object in the response against the policy.
    seen = Seen()
    data_ = body.get("data") or {}
    answer = next(iter(data_.values()), None) if data_ else None
    objects = answer if isinstance(answer, list) else [answer]
    root_view = SELF if case.citizen else case.purpose
    for obj in objects:
        if obj is not None:
            check_object(obj, case.tree, "Resident", root_view, policy, case, seen, own=True)

    # No RRN-shaped text anywhere (errors included) shows more than some view allows.
    views = [SELF, SELF_HOUSEHOLD] if case.citizen else [case.purpose]
    allowed = [mask_pattern(policy.grant(("tester",), v), whole=False) for v in views]
    if case.citizen:
        allowed.append(re.compile(re.escape(case.rrn)))
        household = policy.grant(("tester",), SELF_HOUSEHOLD)
        if household is not None and household.unmasked_rrn:
            allowed.append(mask_pattern(household, whole=True))
    else:
        grant = policy.grant(("tester",), case.purpose)
        allowed.append(mask_pattern(grant, whole=grant is not None and grant.unmasked_rrn))
    allowed.append(re.compile(re.escape("******-*******")))  # shows nothing (error messages)
    for shown in RRN_SHAPED.findall(json.dumps(body)):
        assert any(p.fullmatch(shown) for p in allowed), (shown, case.document)

    # Every resident in the response has an audit row of this request, and the rows name
    # at least every coordinate answered.
    rows = await fetch(
        store.dsn,
        "select subject, disclosed from gateway.audit_log where request_id = $1",
        response.headers["x-request-id"],
    )
    audited = {r["subject"] for r in rows}
    if seen.residents:
        assert KEYS.subject(case.rrn) in audited, case.document
    if seen.members_shown:
        assert {KEYS.subject(m) for m in subjects[case.rrn]} <= audited
    disclosed = {c for r in rows for c in r["disclosed"]}
    assert seen.coordinates <= disclosed, (seen.coordinates - disclosed, case.document)


def tomllib_dumps(policy: dict[str, Any]) -> str:
    """Just enough TOML for a generated policy (one role, string lists, booleans)."""
    lines = []
    for name, role in policy["roles"].items():
        lines += [f"[roles.{name}]", f"description = {json.dumps(role['description'])}"]
        lines.append(f"operations = {json.dumps(role['operations'])}")
        lines.append(f"agencies = {json.dumps(role['agencies'])}")
        for view, grant in role["views"].items():
            lines += [
                f"[roles.{name}.views.{view}]",
                f"fields = {json.dumps(grant['fields'])}",
                f"consent = {json.dumps(grant['consent'])}",
                f"unmasked_rrn = {str(grant['unmasked_rrn']).lower()}",
            ]
    return "\n".join(lines) + "\n"
