"""Hand-made residents with known values, written beside the seeded ones.

One household of 20 (the batching case) headed by 940812-1001751, a pre-2020 number
with a correct check digit.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from gateway.rrn import century_digit, check_digit

BIG_HOUSEHOLD = "H900000001"
HEAD_RRN = "940812-1001751"


def make_rrn(birth: dt.date, sex: str, serial: int) -> str:
    front = birth.strftime("%y%m%d")
    first_twelve = f"{front}{century_digit(birth, sex)}{9000 + serial:04d}{serial % 10}"  # type: ignore[arg-type]
    return f"{first_twelve[:6]}-{first_twelve[6:]}{check_digit(first_twelve)}"


def members() -> list[tuple[str, str, dt.date, str, str]]:
    """(rrn, name, birth date, sex, relationship), head first."""
    people = [(HEAD_RRN, "Kim Min-jun", dt.date(1994, 8, 12), "MALE", "HEAD")]
    for i in range(1, 20):
        birth = dt.date(1960 + i, 1 + i % 12, 1 + i)
        sex = "MALE" if i % 2 else "FEMALE"
        relationship = "SPOUSE" if i == 1 else ("CHILD" if i < 12 else "OTHER")
        people.append((make_rrn(birth, sex, i), f"Kim Member-{i:02d}", birth, sex, relationship))
    return people


async def insert_fixtures(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                """insert into registry.households values
                   ($1, $2, 'Seoul', 'Gangnam-gu', '12 Teheran-ro', '06236', '2019-03-02')""",
                BIG_HOUSEHOLD,
                HEAD_RRN,
            )
            for rrn, name, birth, sex, relationship in members():
                await conn.execute(
                    "insert into registry.residents values ($1,$2,$3,$4,false,'ACTIVE',$5,$6)",
                    rrn, name, birth, sex, BIG_HOUSEHOLD, relationship,
                )  # fmt: skip
                await conn.execute(
                    "insert into nhis.enrolments values ($1,'EMPLOYEE','2018-01-01',152000,0,null)",
                    rrn,
                )
                for year, income in ((2024, 41_000_000), (2025, 3_500_000_000)):
                    await conn.execute(
                        "insert into nts.tax_returns values ($1,$2,$3,$4,$4,0)",
                        rrn, year, income, income // 10,
                    )  # fmt: skip
                await conn.execute(
                    "insert into nps.subscriptions values ($1,'WORKPLACE',96,870000,null,null)",
                    rrn,
                )
                if sex == "MALE":
                    await conn.execute(
                        """insert into mma.service_records
                           values ($1,'COMPLETED','ARMY','2014-03-10','2015-12-09',null)""",
                        rrn,
                    )
    finally:
        await conn.close()
