"""The demo seeder, against a real PostgreSQL: counts, determinism, and consistency of the data."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway import rrn
from gateway.demo.seed import REFERENCE_DATE, TABLES, SeedSummary, generate, seed

RESIDENTS = 2000
ADMIN_DSN = os.environ.get("GATEWAY_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REGIONS = {
    "Seoul", "Busan", "Daegu", "Incheon", "Gwangju", "Daejeon", "Ulsan", "Sejong", "Gyeonggi-do",
    "Gangwon-do", "Chungcheongbuk-do", "Chungcheongnam-do", "Jeollabuk-do", "Jeollanam-do",
    "Gyeongsangbuk-do", "Gyeongsangnam-do", "Jeju-do",
}  # fmt: skip


def age_on(born: dt.date, day: dt.date = REFERENCE_DATE) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def birthday(born: dt.date, age: int) -> dt.date:
    try:
        return born.replace(year=born.year + age)
    except ValueError:  # 29 February
        return dt.date(born.year + age, 3, 1)


class Scratch:
    """A uniquely named database, dropped by ``drop``."""

    def __init__(self) -> None:
        self.name = f"seed_test_{secrets.token_hex(6)}"
        parts = urlsplit(ADMIN_DSN)
        self.dsn = urlunsplit(parts._replace(path=f"/{self.name}"))

    async def create(self) -> Scratch:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'create database "{self.name}"')
        finally:
            await admin.close()
        return self

    async def drop(self) -> None:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            await admin.execute(f'drop database if exists "{self.name}" with (force)')
        finally:
            await admin.close()


async def table_digests(dsn: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent digest of every seeded table."""
    conn = await asyncpg.connect(dsn)
    try:
        digests = {}
        for schema, table, _ in TABLES:
            row = await conn.fetchrow(
                f"select count(*) as n, md5(coalesce(string_agg(t::text, ',' order by t::text),"
                f" '')) as digest from {schema}.{table} t"
            )
            assert row is not None
            digests[f"{schema}.{table}"] = (row["n"], row["digest"])
        return digests
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def seeded() -> AsyncIterator[tuple[str, SeedSummary]]:
    scratch = await Scratch().create()
    try:
        summary = await seed(scratch.dsn, RESIDENTS, progress=False)
        yield scratch.dsn, summary
    finally:
        await scratch.drop()


@pytest.fixture
async def conn(seeded: tuple[str, SeedSummary]) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(seeded[0])
    try:
        yield connection
    finally:
        await connection.close()


async def test_counts_match_the_tables(
    seeded: tuple[str, SeedSummary], conn: asyncpg.Connection
) -> None:
    _, summary = seeded
    counted = {
        f"{schema}.{table}": await conn.fetchval(f"select count(*) from {schema}.{table}")
        for schema, table, _ in TABLES
    }
    assert counted == {
        "registry.households": summary.households,
        "registry.residents": RESIDENTS,
        "nhis.enrolments": summary.insurance,
        "nps.subscriptions": summary.pensions,
        "nts.tax_returns": summary.tax_returns,
        "mma.service_records": summary.military,
    }
    assert summary.residents == RESIDENTS
    assert RESIDENTS / 3 < summary.households < RESIDENTS / 1.8
    # Nearly everyone is insured; every agency holds something.
    assert summary.insurance >= RESIDENTS * 0.95
    assert min(summary.tax_returns, summary.pensions, summary.military) > 0
    assert summary.seconds > 0


async def test_secondary_indexes_exist_after_seeding(conn: asyncpg.Connection) -> None:
    names = {
        row["indexname"]
        for row in await conn.fetch(
            "select indexname from pg_indexes where schemaname = 'registry'"
        )
    }
    assert "residents_household_idx" in names


async def test_same_seed_gives_identical_data_and_reseeding_replaces(
    seeded: tuple[str, SeedSummary],
) -> None:
    dsn, _ = seeded
    before = await table_digests(dsn)
    other = await Scratch().create()
    try:
        await seed(other.dsn, RESIDENTS, progress=False)
        assert await table_digests(other.dsn) == before
    finally:
        await other.drop()

    again = await seed(dsn, RESIDENTS, progress=False)
    assert await table_digests(dsn) == before
    assert again.residents == RESIDENTS


async def test_loading_over_existing_rows_without_replace_fails_cleanly(
    seeded: tuple[str, SeedSummary],
) -> None:
    dsn, _ = seeded
    before = await table_digests(dsn)
    with pytest.raises(asyncpg.UniqueViolationError):
        await seed(dsn, RESIDENTS, progress=False, replace=False)
    assert await table_digests(dsn) == before


async def test_another_seed_gives_other_people() -> None:
    first = [r for batch in generate(300, seed=1) for r in batch.residents]
    second = [r for batch in generate(300, seed=2) for r in batch.residents]
    assert len(first) == len(second) == 300
    assert {r[0] for r in first} != {r[0] for r in second}


@pytest.mark.parametrize("residents", [0, 1, 7, 1234])
def test_generate_makes_exactly_the_residents_asked_for(residents: int) -> None:
    batches = list(generate(residents, chunk_size=100))
    assert sum(len(b.residents) for b in batches) == residents
    members = Counter(r[6] for b in batches for r in b.residents)
    assert set(members) == {h[0] for b in batches for h in b.households}


def test_generated_rows_do_not_depend_on_the_chunk_size() -> None:
    def flat(chunk_size: int) -> list[Sequence[object]]:
        return [row for b in generate(1500, chunk_size=chunk_size) for t in b.tables() for row in t]

    assert sorted(map(repr, flat(64))) == sorted(map(repr, flat(5000)))


async def test_rrns_agree_with_the_registry(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("select rrn, birth_date, sex, is_foreign from registry.residents")
    post_cutoff = failing_checksums = 0
    for row in rows:
        assert re.fullmatch(r"\d{6}-\d{7}", row["rrn"])
        parsed = rrn.parse(row["rrn"])
        assert parsed.value == row["rrn"]
        assert parsed.birth_date == row["birth_date"]
        assert parsed.sex == row["sex"]
        assert parsed.is_foreign == row["is_foreign"]
        seventh = rrn.century_digit(row["birth_date"], row["sex"], foreign=row["is_foreign"])
        assert row["rrn"][7] == str(seventh)
        if row["is_foreign"]:
            continue
        if row["birth_date"] < dt.date(2020, 10, 5):
            assert parsed.check_digit_ok, row["rrn"]
        else:
            post_cutoff += 1
            failing_checksums += not parsed.check_digit_ok
    assert post_cutoff > 0
    assert failing_checksums > 0
    assert len({row["rrn"] for row in rows}) == len(rows)
    assert 0.01 < sum(row["is_foreign"] for row in rows) / len(rows) < 0.06
    assert all(0 <= age_on(row["birth_date"]) <= 101 for row in rows)


async def test_households_have_one_head_and_sensible_members(conn: asyncpg.Connection) -> None:
    households = {
        row["id"]: row
        for row in await conn.fetch("select * from registry.households")
    }  # fmt: skip
    members: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in await conn.fetch("select * from registry.residents"):
        members[row["household_id"]].append(row)

    assert set(members) == set(households)
    sizes = Counter(len(people) for people in members.values())
    assert set(sizes) <= set(range(1, 9))
    assert sizes[1] > sizes[4] > 0  # many single-person households
    for household_id, people in members.items():
        household = households[household_id]
        assert re.fullmatch(r"H\d{9}", household_id)
        assert re.fullmatch(r"\d{5}", household["postal_code"])
        assert household["region"] in REGIONS
        assert re.fullmatch(r"\d+ \S.*", household["street"])
        assert household["registered_on"] <= REFERENCE_DATE
        heads = [p for p in people if p["relationship"] == "HEAD"]
        assert len(heads) == 1
        head = heads[0]
        assert head["rrn"] == household["head_rrn"]
        assert age_on(head["birth_date"]) >= 18
        spouses = [p for p in people if p["relationship"] == "SPOUSE"]
        assert len(spouses) <= 1
        for spouse in spouses:
            assert spouse["sex"] != head["sex"]
            assert abs(age_on(spouse["birth_date"]) - age_on(head["birth_date"])) <= 10
        for child in (p for p in people if p["relationship"] == "CHILD"):
            for parent in [head, *spouses]:
                assert 20 <= age_on(parent["birth_date"], child["birth_date"]) <= 45
    statuses = Counter(p["status"] for people in members.values() for p in people)
    assert set(statuses) <= {"ACTIVE", "DECEASED", "EMIGRATED"}
    assert statuses["ACTIVE"] > RESIDENTS * 0.95


async def test_military_records_only_for_korean_men_of_service_age(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        """select m.*, r.sex, r.is_foreign, r.birth_date
           from mma.service_records m join registry.residents r using (rrn)"""
    )
    orphans = await conn.fetchval(
        "select count(*) from mma.service_records where rrn not in (select rrn from"
        " registry.residents)"
    )
    assert orphans == 0
    men = await conn.fetch(
        "select birth_date from registry.residents where sex = 'MALE' and not is_foreign"
    )
    assert len(rows) == sum(18 <= age_on(man["birth_date"]) <= 60 for man in men)
    statuses = Counter(row["status"] for row in rows)
    assert statuses["COMPLETED"] > statuses["EXEMPT"] > 0
    assert statuses["SERVING"] > 0
    assert statuses["PENDING"] > 0
    branches = Counter(row["branch"] for row in rows if row["branch"])
    assert branches.most_common(1)[0][0] == "ARMY"
    for row in rows:
        age = age_on(row["birth_date"])
        assert row["sex"] == "MALE"
        assert not row["is_foreign"]
        assert 18 <= age <= 60
        if row["status"] == "EXEMPT":
            assert row["exemption_reason"]
            assert row["branch"] is None
            assert row["enlisted_on"] is None
            continue
        assert row["exemption_reason"] is None
        if row["status"] == "PENDING":
            assert row["branch"] is None
            assert row["enlisted_on"] is None
            assert age <= 28
        elif row["status"] == "SERVING":
            assert row["discharged_on"] is None
            assert 0 <= (REFERENCE_DATE - row["enlisted_on"]).days <= 21 * 31
            assert 19 <= age <= 30
        else:
            assert row["status"] == "COMPLETED"
            served = (row["discharged_on"] - row["enlisted_on"]).days
            assert 18 * 30 <= served <= 21 * 31
            assert row["discharged_on"] <= REFERENCE_DATE
            assert 19 <= age_on(row["birth_date"], row["enlisted_on"]) <= 29


async def test_pensions_follow_age(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """select p.*, r.birth_date from nps.subscriptions p
           join registry.residents r using (rrn)"""
    )
    kinds = Counter(row["subscriber_type"] for row in rows)
    assert kinds["RECIPIENT"] > 0
    assert kinds["WORKPLACE"] > kinds["VOLUNTARY"] > 0
    for row in rows:
        age = age_on(row["birth_date"])
        assert age >= 18
        months = row["months_contributed"]
        assert 0 <= months <= (age - 17) * 12
        if row["subscriber_type"] == "RECIPIENT":
            assert age >= 63
            assert months >= 120
            assert row["monthly_benefit"] > 0
            assert row["expected_monthly_benefit"] is None
            assert birthday(row["birth_date"], 63) <= row["benefit_since"] <= REFERENCE_DATE
        else:
            assert row["subscriber_type"] in {"WORKPLACE", "REGIONAL", "VOLUNTARY"}
            assert age < 63
            assert row["monthly_benefit"] is None
            assert row["benefit_since"] is None
            assert row["expected_monthly_benefit"] > 0


async def test_dependents_are_insured_through_their_household(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """select e.*, r.household_id, r.birth_date, r.status from nhis.enrolments e
           join registry.residents r using (rrn)"""
    )
    assert len(rows) == await conn.fetchval("select count(*) from nhis.enrolments")
    by_rrn = {row["rrn"]: row for row in rows}
    through: Counter[str] = Counter()
    for row in rows:
        assert row["status"] == "ACTIVE"
        assert row["birth_date"] <= row["enrolled_on"] <= REFERENCE_DATE
        if row["insured_type"] == "DEPENDENT":
            insurer = by_rrn[row["insured_by"]]
            assert insurer["insured_type"] in {"EMPLOYEE", "SELF_EMPLOYED"}
            assert insurer["household_id"] == row["household_id"]
            assert row["monthly_premium"] == 0
            assert row["dependents"] == 0
            through[row["insured_by"]] += 1
        else:
            assert row["insured_type"] in {"EMPLOYEE", "SELF_EMPLOYED"}
            assert row["insured_by"] is None
            assert 30_000 <= row["monthly_premium"] <= 600_000
    assert through
    for insured, count in through.items():
        assert by_rrn[insured]["dependents"] == count
    assert sum(row["dependents"] for row in rows) == sum(through.values())
    children = [r for r in rows if age_on(r["birth_date"]) < 18]
    assert children
    assert all(r["insured_type"] == "DEPENDENT" for r in children)


async def test_tax_returns_only_for_adults(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """select t.*, r.birth_date from nts.tax_returns t join registry.residents r using (rrn)"""
    )
    assert len(rows) == await conn.fetchval("select count(*) from nts.tax_returns")
    years = Counter(row["tax_year"] for row in rows)
    assert set(years) == set(range(2021, 2026))
    for row in rows:
        assert age_on(row["birth_date"], dt.date(row["tax_year"], 12, 31)) >= 18
        assert row["reported_income"] > 0
        assert 0 <= row["tax_assessed"] < row["reported_income"]
        assert 0 <= row["tax_paid"] <= row["tax_assessed"]
        assert row["arrears"] == row["tax_assessed"] - row["tax_paid"]
    in_arrears = sum(row["arrears"] > 0 for row in rows)
    assert 0 < in_arrears < len(rows) * 0.1
    adults = await conn.fetchval(
        "select count(*) from registry.residents where birth_date <= $1", dt.date(2007, 12, 31)
    )
    assert len({row["rrn"] for row in rows}) < adults  # not every adult has an income


async def test_progress_is_shown_only_when_asked(
    seeded: tuple[str, SeedSummary], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, _ = seeded
    await seed(dsn, RESIDENTS, progress=False)
    quiet = capsys.readouterr()
    assert quiet.out == quiet.err == ""

    summary = await seed(dsn, RESIDENTS, progress=True)
    shown = capsys.readouterr()
    assert shown.out == ""
    assert f"{RESIDENTS:,} residents" in shown.err
    assert f"{summary.households:,} households" in shown.err
