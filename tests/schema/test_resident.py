"""Every Resident field, read end to end through the five agencies."""

from __future__ import annotations

import asyncpg

from tests.conftest import GatewayClient, ScratchDatabase
from tests.data import BIG_HOUSEHOLD, HEAD_RRN, members

FULL = """
query($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    rrn name birthDate sex status isForeignResident relationship
    address { region city street postalCode registeredOn }
    household { id size head { name } members { name } }
    insurance { insuredType enrolledOn monthlyPremium dependents insuredBy }
    taxes { year reportedIncome taxAssessed taxPaid arrears }
    pension { subscriberType monthsContributed expectedMonthlyBenefit monthlyBenefit benefitSince }
    militaryService { status branch enlistedOn dischargedOn exemptionReason }
  }
}"""


async def test_every_field_of_a_known_resident(client: GatewayClient) -> None:
    result = await client.query(FULL, {"rrn": HEAD_RRN})
    assert "errors" not in result
    person = result["data"]["resident"]
    assert person["rrn"] == "940812-1******"
    assert person["name"] == "Kim Min-jun"
    assert person["birthDate"] == "1994-08-12"
    assert person["sex"] == "MALE"
    assert person["status"] == "ACTIVE"
    assert person["isForeignResident"] is False
    assert person["relationship"] == "HEAD"
    assert person["address"] == {
        "region": "Seoul",
        "city": "Gangnam-gu",
        "street": "12 Teheran-ro",
        "postalCode": "06236",
        "registeredOn": "2019-03-02",
    }
    household = person["household"]
    assert household["id"] == BIG_HOUSEHOLD
    assert household["size"] == 20
    assert household["head"] == {"name": "Kim Min-jun"}
    assert next(m["name"] for m in household["members"]) == "Kim Min-jun"
    assert sorted(m["name"] for m in household["members"]) == sorted(n for _, n, *_ in members())
    assert person["insurance"] == {
        "insuredType": "EMPLOYEE",
        "enrolledOn": "2018-01-01",
        "monthlyPremium": 152000,
        "dependents": 0,
        "insuredBy": None,
    }
    # 3.5 billion won does not fit a GraphQL Int; the KRW scalar carries it.
    assert person["taxes"] == [
        {
            "year": 2024,
            "reportedIncome": 41_000_000,
            "taxAssessed": 4_100_000,
            "taxPaid": 4_100_000,
            "arrears": 0,
        },
        {
            "year": 2025,
            "reportedIncome": 3_500_000_000,
            "taxAssessed": 350_000_000,
            "taxPaid": 350_000_000,
            "arrears": 0,
        },
    ]
    assert person["pension"] == {
        "subscriberType": "WORKPLACE",
        "monthsContributed": 96,
        "expectedMonthlyBenefit": 870000,
        "monthlyBenefit": None,
        "benefitSince": None,
    }
    assert person["militaryService"] == {
        "status": "COMPLETED",
        "branch": "ARMY",
        "enlistedOn": "2014-03-10",
        "dischargedOn": "2015-12-09",
        "exemptionReason": None,
    }


async def test_taxes_filtered_by_year(client: GatewayClient) -> None:
    result = await client.query(
        """query($rrn: String!) { resident(rrn: $rrn, purpose: TAX_ADMINISTRATION) {
             taxes(years: [2025]) { year } } }""",
        {"rrn": HEAD_RRN},
    )
    assert result["data"]["resident"]["taxes"] == [{"year": 2025}]


async def test_bare_digits_find_the_same_resident(client: GatewayClient) -> None:
    result = await client.query(
        '{ resident(rrn: "9408121001751", purpose: CIVIL_PETITION) { name } }'
    )
    assert result["data"]["resident"] == {"name": "Kim Min-jun"}


async def test_unknown_resident_is_null_without_error(client: GatewayClient) -> None:
    result = await client.query(
        '{ resident(rrn: "900101-1234568", purpose: CIVIL_PETITION) { name } }'
    )
    assert result == {"data": {"resident": None}}


async def test_residents_keeps_order_and_nulls_misses(
    client: GatewayClient, agency_db: ScratchDatabase
) -> None:
    conn = await asyncpg.connect(agency_db.dsn)
    seeded = await conn.fetch(
        "select rrn, name from registry.residents where household_id <> $1 order by rrn limit 3",
        BIG_HOUSEHOLD,
    )
    await conn.close()
    rrns = [seeded[2]["rrn"], "900101-1234568", seeded[0]["rrn"], "941312-1001751", HEAD_RRN]
    result = await client.query(
        """query($rrns: [String!]!) {
             residents(rrns: $rrns, purpose: WELFARE_ELIGIBILITY) { name } }""",
        {"rrns": rrns},
    )
    assert result["data"]["residents"] == [
        {"name": seeded[2]["name"]},
        None,
        {"name": seeded[0]["name"]},
        None,
        {"name": "Kim Min-jun"},
    ]
    # Only the malformed entry is an error, and it is located at its index.
    assert [(e["path"], e["extensions"]["code"]) for e in result["errors"]] == [
        (["residents", 3], "INVALID_RRN")
    ]


async def test_seeded_residents_are_served(
    client: GatewayClient, agency_db: ScratchDatabase
) -> None:
    conn = await asyncpg.connect(agency_db.dsn)
    rrn = await conn.fetchval(
        "select r.rrn from registry.residents r join mma.service_records m using (rrn) limit 1"
    )
    await conn.close()
    result = await client.query(
        """query($rrn: String!) { resident(rrn: $rrn, purpose: MILITARY_ADMINISTRATION) {
             sex militaryService { status } } }""",
        {"rrn": rrn},
    )
    assert result["data"]["resident"]["sex"] == "MALE"
    assert result["data"]["resident"]["militaryService"]["status"] in {
        "PENDING", "SERVING", "COMPLETED", "EXEMPT"
    }  # fmt: skip


async def test_agencies_query_lists_all_five(client: GatewayClient) -> None:
    result = await client.query("{ agencies { code kind reachable } }")
    assert {(a["code"], a["kind"], a["reachable"]) for a in result["data"]["agencies"]} == {
        ("registry", "sql", True),
        ("nhis", "sql", True),
        ("nps", "sql", True),
        ("nts", "http", True),
        ("mma", "http", True),
    }


async def test_every_type_and_field_is_described(client: GatewayClient) -> None:
    result = await client.query(
        """{ __schema { types { name kind description fields { name description
             args { name description } } } } }"""
    )
    missing = []
    for t in result["data"]["__schema"]["types"]:
        if t["name"].startswith("__") or (t["kind"] == "SCALAR" and t["name"] in {
            "String", "Int", "Boolean", "ID", "Float"
        }):  # fmt: skip
            continue
        if not t["description"]:
            missing.append(t["name"])
        for f in t["fields"] or []:
            if not f["description"]:
                missing.append(f"{t['name']}.{f['name']}")
            missing += [
                f"{t['name']}.{f['name']}({a['name']})" for a in f["args"] if not a["description"]
            ]
    assert missing == []
