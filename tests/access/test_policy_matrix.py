"""The demo policy, read independently from gateway/demo/policy.toml, against what the gateway
serves: every role x every purpose x every Resident field path."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.graphql_schema import PURPOSES, build_schema, resident_types, schema_fields
from gateway.rrn import mask
from gateway.runtime import DEMO_POLICY
from tests.access.conftest import error_codes, write_gateway_toml
from tests.conftest import GatewayClient, token
from tests.data import HEAD_RRN, members

POLICY: dict[str, Any] = tomllib.loads(DEMO_POLICY.read_text())
ROLES = sorted(POLICY["roles"])

# Every field of every resident data type, with the type each object field leads to.
SELECTION: dict[str, dict[str, str | None]] = {
    "Resident": {
        "rrn": None, "name": None, "birthDate": None, "sex": None, "status": None,
        "isForeignResident": None, "relationship": None, "address": "Address",
        "household": "Household", "insurance": "HealthInsurance", "taxes": "TaxRecord",
        "pension": "Pension", "militaryService": "MilitaryService",
    },
    "Address": dict.fromkeys(["region", "city", "street", "postalCode", "registeredOn"]),
    "Household": {"id": None, "size": None, "head": "Member", "members": "Member"},
    "HealthInsurance": dict.fromkeys(
        ["insuredType", "enrolledOn", "monthlyPremium", "dependents", "insuredBy"]
    ),
    "TaxRecord": dict.fromkeys(["year", "reportedIncome", "taxAssessed", "taxPaid", "arrears"]),
    "Pension": dict.fromkeys(
        ["subscriberType", "monthsContributed", "expectedMonthlyBenefit", "monthlyBenefit",
         "benefitSince"]
    ),
    "MilitaryService": dict.fromkeys(
        ["status", "branch", "enlistedOn", "dischargedOn", "exemptionReason"]
    ),
    # Household members are Residents; the matrix reads their rrn and name (one level).
    "Member": {"rrn": None, "name": None},
}  # fmt: skip
TYPE_OF = {"Member": "Resident"}
LISTS = {"taxes", "members"}
# Known about HEAD_RRN (tests/data.py): these are never legitimately null for him.
NON_NULL = {
    "name", "birthDate", "sex", "status", "isForeignResident", "relationship", "address",
    "household", "insurance", "taxes", "pension", "militaryService", "region", "city", "street",
    "postalCode", "registeredOn", "id", "size", "head", "members", "insuredType", "enrolledOn",
    "monthlyPremium", "dependents", "year", "reportedIncome", "taxAssessed", "taxPaid",
    "arrears", "subscriberType", "monthsContributed", "expectedMonthlyBenefit", "branch",
    "enlistedOn", "dischargedOn",
}  # fmt: skip
HEAD_TAX_YEARS = 2
MEMBER_RRNS = [rrn for rrn, *_ in members()]


def selection(type_name: str) -> str:
    parts = []
    for name, target in SELECTION[type_name].items():
        parts.append(name if target is None else f"{name} {{ {selection(target)} }}")
    return " ".join(parts)


QUERY = (
    "query($rrn: String!, $purpose: Purpose!) { resident(rrn: $rrn, purpose: $purpose) { "
    + selection("Resident")
    + " } }"
)


@dataclass(frozen=True)
class View:
    fields: frozenset[str]
    consent: frozenset[str]
    unmasked_rrn: bool


def expand(entries: list[str]) -> frozenset[str]:
    out: set[str] = set()
    for entry in entries:
        type_name, _, field_name = entry.partition(".")
        if field_name == "*":
            out |= {f"{type_name}.{f}" for f in SELECTION[type_name]}
        else:
            out.add(entry)
    return frozenset(out)


def view_of(role: str, purpose: str) -> View | None:
    raw = POLICY["roles"][role].get("views", {}).get(purpose)
    if raw is None:
        return None
    return View(
        expand(raw.get("fields", [])),
        expand(raw.get("consent", [])),
        bool(raw.get("unmasked_rrn", False)),
    )


Path_ = tuple[str | int, ...]


def expected_errors(view: View) -> dict[Path_, str]:
    """Error path -> code for the matrix query over HEAD_RRN's record."""
    out: dict[Path_, str] = {}

    def walk(type_name: str, path: Path_) -> None:
        real = TYPE_OF.get(type_name, type_name)
        for name, target in SELECTION[type_name].items():
            coordinate = f"{real}.{name}"
            here = (*path, name)
            if coordinate == "Resident.rrn":
                continue  # always readable, masked or not
            if coordinate not in view.fields:
                out[here] = "FORBIDDEN"
            elif coordinate in view.consent:
                out[here] = "CONSENT_REQUIRED"
            elif target is not None:
                if name == "taxes":
                    for i in range(HEAD_TAX_YEARS):
                        walk(target, (*here, i))
                elif name == "members":
                    for i in range(len(MEMBER_RRNS)):
                        walk(target, (*here, i))
                else:
                    walk(target, here)

    walk("Resident", ("resident",))
    return out


def at(data: Any, path: Path_) -> Any:
    for step in path:
        data = data[step]
    return data


def test_the_matrix_query_reads_every_field_of_every_resident_type() -> None:
    schema = build_schema()
    fields = schema_fields(schema)
    for type_name in resident_types(schema):
        assert set(SELECTION[type_name]) == set(fields[type_name]), type_name
    assert set(PURPOSES) == {
        "WELFARE_ELIGIBILITY", "TAX_ADMINISTRATION", "HEALTH_INSURANCE",
        "PENSION_ADMINISTRATION", "MILITARY_ADMINISTRATION", "CIVIL_PETITION",
    }  # fmt: skip
    # The roles the documentation names are all in the matrix (the file may add more).
    assert set(ROLES) >= {
        "citizen", "welfare_officer", "tax_officer", "health_insurance_officer",
        "pension_officer", "military_officer", "analyst", "operator",
    }  # fmt: skip


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize("role", ROLES)
async def test_role_and_purpose(demo: GatewayClient, role: str, purpose: str) -> None:
    # The role's own agency: a token claiming one its role may not claim is refused outright.
    caller = demo.as_(token(role, agency=(POLICY["roles"][role].get("agencies") or [None])[0]))
    registry_calls = demo.calls("registry")
    body = await caller.query(QUERY, {"rrn": HEAD_RRN, "purpose": purpose})
    codes = error_codes(body)
    may_call = "Query.resident" in POLICY["roles"][role].get("operations", [])
    view = view_of(role, purpose)

    if not may_call or view is None:
        assert codes == {("resident",): "FORBIDDEN"}, body.get("errors")
        assert body["data"] == {"resident": None}
        # Refused before the lookup: not even the registry was asked.
        assert demo.calls("registry") == registry_calls
        return

    expected = expected_errors(view)
    assert codes == expected, {
        "unexpected": {p: c for p, c in codes.items() if expected.get(p) != c},
        "missing": {p: c for p, c in expected.items() if codes.get(p) != c},
    }
    resident = body["data"]["resident"]
    assert resident is not None
    data = body["data"]
    for path in expected:
        assert at(data, path) is None, path

    # Everything granted is there: no error at its path, and a value where HEAD has one.
    def check(type_name: str, value: dict[str, Any], path: Path_) -> None:
        for name, target in SELECTION[type_name].items():
            here = (*path, name)
            if here in expected:
                continue
            assert name in value, here
            if name in NON_NULL:
                assert value[name] is not None, here
            if target is None or value[name] is None:
                continue
            items = value[name] if name in LISTS else [value[name]]
            for i, item in enumerate(items):
                check(target, item, (*here, i) if name in LISTS else here)

    check("Resident", resident, ("resident",))

    # The RRN: whole only where the view says so, masked otherwise, for HEAD and members.
    def shown(rrn: str) -> str:
        if view.unmasked_rrn:
            return rrn
        # DOMAIN.md: the birth-date part only where birthDate is granted; the 7th digit
        # (sex, century, foreign registration) only where all three are.
        birth = "Resident.birthDate" in view.fields
        seventh = birth and {"Resident.sex", "Resident.isForeignResident"} <= view.fields
        return mask(rrn, birth_date=birth, seventh_digit=seventh)

    assert resident["rrn"] == shown(HEAD_RRN)
    household = resident.get("household")
    if household is not None:
        assert household["head"]["rrn"] == shown(HEAD_RRN)
        assert [m["rrn"] for m in household["members"]] == [shown(r) for r in MEMBER_RRNS]
    if not view.unmasked_rrn:
        assert HEAD_RRN not in str(body)
        assert HEAD_RRN.replace("-", "") not in str(body)


# --- gateway check-config ---------------------------------------------------------------

BASE_POLICY = """
[roles.clerk]
description = "A clerk."
operations = ["Query.resident"]
[roles.clerk.views.CIVIL_PETITION]
"""


@pytest.mark.parametrize(
    ("view", "fragments"),
    [
        pytest.param(
            '[roles.clerk.views.SHOPPING]\nfields = ["Resident.name"]',
            ["SHOPPING", "unknown purpose"],
            id="unknown-purpose",
        ),
        pytest.param(
            'fields = ["Resident.name", "Resident.shoeSize"]',
            ["Resident", "shoeSize"],
            id="unknown-field",
        ),
        pytest.param(
            'fields = ["Spaceship.name"]',
            ["Spaceship.name"],
            id="unknown-type",
        ),
        pytest.param(
            'fields = ["Resident.name"]\nconsent = ["Resident.taxes"]',
            ["consent", "Resident.taxes", "does not grant"],
            id="consent-on-a-field-not-granted",
        ),
        pytest.param(
            'fields = ["Resident.name"]\nunmasked_rrn = "yes"',
            ["unmasked_rrn"],
            id="unmasked-not-a-boolean",
        ),
    ],
)
def test_check_config_rejects_a_bad_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], view: str, fragments: list[str]
) -> None:
    policy = tmp_path / "policy.toml"
    if view.startswith("[roles"):
        text = BASE_POLICY.replace("[roles.clerk.views.CIVIL_PETITION]\n", view + "\n")
    else:
        text = BASE_POLICY + view + "\n"
    policy.write_text(text)
    config = write_gateway_toml(
        tmp_path, database_url="postgresql://127.0.0.1/unused", policy=policy
    )
    assert main(["check-config", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert "configuration error" in captured.err
    for fragment in fragments:
        assert fragment in captured.err, captured.err
    assert "ok" not in captured.out


def test_check_config_rejects_an_unknown_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(BASE_POLICY.replace("Query.resident", "Query.everything"))
    config = write_gateway_toml(
        tmp_path, database_url="postgresql://127.0.0.1/unused", policy=policy
    )
    assert main(["check-config", "--config", str(config)]) == 2
    assert "everything" in capsys.readouterr().err


def test_check_config_accepts_the_demo_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_gateway_toml(
        tmp_path,
        database_url="postgresql://127.0.0.1/unused",
        # Every dataset needs an agency, and agency_system's agencies must be configured.
        agencies=dict.fromkeys(
            ("registry", "nhis", "nts", "nps", "mma"), "postgresql://127.0.0.1/agencies"
        ),
    )
    assert main(["check-config", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "ok" in captured.out
    assert captured.err == ""
