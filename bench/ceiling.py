"""The ceiling: the gateway's query shape in plain strawberry over in-memory data.

Same GraphQL types and field names as the gateway for what the benchmark queries (Resident
with name/birthDate/sex/status/address, household{size members}, insurance, taxes(years),
pension, militaryService; the KRW scalar and the enums), but every object is built once at
start-up from the seeded agency tables and resolvers are plain synchronous dict look-ups: no
DataLoaders, no I/O, no per-request context. Plain ``strawberry.asgi.GraphQL`` with
``ParserCache`` and ``ValidationCache``, served by one uvicorn worker. Whatever the gateway
does beyond this is the cost of being a gateway.

Run: ``python -m bench.ceiling --dsn postgresql://... --port 8100``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NewType

import asyncpg
import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.types.scalar import ScalarDefinition

KRW = NewType("KRW", int)

SCALARS: dict[object, ScalarDefinition] = {
    KRW: strawberry.scalar(name="KRW", serialize=int, parse_value=int),
}


@strawberry.enum
class Purpose(Enum):
    WELFARE_ELIGIBILITY = "WELFARE_ELIGIBILITY"
    TAX_ADMINISTRATION = "TAX_ADMINISTRATION"
    HEALTH_INSURANCE = "HEALTH_INSURANCE"
    PENSION_ADMINISTRATION = "PENSION_ADMINISTRATION"
    MILITARY_ADMINISTRATION = "MILITARY_ADMINISTRATION"
    CIVIL_PETITION = "CIVIL_PETITION"


@strawberry.enum
class Sex(Enum):
    MALE = "MALE"
    FEMALE = "FEMALE"


@strawberry.enum
class RegistrationStatus(Enum):
    ACTIVE = "ACTIVE"
    DECEASED = "DECEASED"
    EMIGRATED = "EMIGRATED"


@strawberry.enum
class InsuredType(Enum):
    EMPLOYEE = "EMPLOYEE"
    SELF_EMPLOYED = "SELF_EMPLOYED"
    DEPENDENT = "DEPENDENT"


@strawberry.enum
class PensionSubscriberType(Enum):
    WORKPLACE = "WORKPLACE"
    REGIONAL = "REGIONAL"
    VOLUNTARY = "VOLUNTARY"
    RECIPIENT = "RECIPIENT"


@strawberry.enum
class MilitaryServiceStatus(Enum):
    NOT_APPLICABLE = "NOT_APPLICABLE"
    PENDING = "PENDING"
    SERVING = "SERVING"
    COMPLETED = "COMPLETED"
    EXEMPT = "EXEMPT"


@strawberry.enum
class MilitaryBranch(Enum):
    ARMY = "ARMY"
    NAVY = "NAVY"
    AIR_FORCE = "AIR_FORCE"
    MARINES = "MARINES"
    SOCIAL_SERVICE = "SOCIAL_SERVICE"


@strawberry.type
class Address:
    region: str
    city: str
    street: str
    postal_code: str
    registered_on: dt.date


@strawberry.type
class HealthInsurance:
    insured_type: InsuredType
    enrolled_on: dt.date
    monthly_premium: KRW
    dependents: int


@strawberry.type
class TaxRecord:
    year: int
    reported_income: KRW
    tax_assessed: KRW
    tax_paid: KRW
    arrears: KRW


@strawberry.type
class Pension:
    subscriber_type: PensionSubscriberType
    months_contributed: int
    expected_monthly_benefit: KRW | None
    monthly_benefit: KRW | None
    benefit_since: dt.date | None


@strawberry.type
class MilitaryService:
    status: MilitaryServiceStatus
    branch: MilitaryBranch | None
    enlisted_on: dt.date | None
    discharged_on: dt.date | None


@dataclass
class Store:
    """Everything the ceiling serves, keyed like the agencies key it."""

    residents: dict[str, Resident] = field(default_factory=dict)
    households: dict[str, Household] = field(default_factory=dict)
    insurance: dict[str, HealthInsurance] = field(default_factory=dict)
    taxes: dict[str, list[TaxRecord]] = field(default_factory=dict)
    pension: dict[str, Pension] = field(default_factory=dict)
    military: dict[str, MilitaryService] = field(default_factory=dict)


STORE = Store()


@strawberry.type
class Household:
    id: strawberry.ID
    member_rrns: strawberry.Private[tuple[str, ...]]

    @strawberry.field
    def size(self) -> int:
        return len(self.member_rrns)

    @strawberry.field
    def members(self) -> list[Resident | None]:
        residents = STORE.residents
        return [residents.get(rrn) for rrn in self.member_rrns]


@strawberry.type
class Resident:
    key: strawberry.Private[str]
    household_id: strawberry.Private[str | None]
    rrn: str  # masked, as the gateway answers
    name: str | None
    birth_date: dt.date | None
    sex: Sex | None
    status: RegistrationStatus | None
    address: Address | None

    @strawberry.field
    def household(self) -> Household | None:
        return None if self.household_id is None else STORE.households.get(self.household_id)

    @strawberry.field
    def insurance(self) -> HealthInsurance | None:
        return STORE.insurance.get(self.key)

    @strawberry.field
    def taxes(self, years: list[int] | None = None) -> list[TaxRecord] | None:
        records = STORE.taxes.get(self.key, [])
        if not years:
            return records
        wanted = set(years)
        return [record for record in records if record.year in wanted]

    @strawberry.field
    def pension(self) -> Pension | None:
        return STORE.pension.get(self.key)

    @strawberry.field
    def military_service(self) -> MilitaryService | None:
        return STORE.military.get(self.key)


def canonical_rrn(text: str) -> str:
    digits = text.replace("-", "").strip()
    return f"{digits[:6]}-{digits[6:]}"


def mask(rrn: str) -> str:
    return f"{rrn[:6]}-{rrn[7]}******"


@strawberry.type
class Query:
    @strawberry.field
    def resident(self, rrn: str, purpose: Purpose) -> Resident | None:
        return STORE.residents.get(canonical_rrn(rrn))


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        extensions=[lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256)],
        config=StrawberryConfig(scalar_map=SCALARS),
    )


def create_app() -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "residents": len(STORE.residents)})

    graphql: GraphQL[Any, Any] = GraphQL(build_schema(), graphql_ide=None)
    return Starlette(routes=[Route("/graphql", graphql), Route("/healthz", healthz)])


def _optional(enum: type[Enum], value: str | None) -> Any:
    return None if value is None else enum(value)


async def load(dsn: str, store: Store) -> None:
    """Read the seeded agency tables into ``store``."""
    conn = await asyncpg.connect(dsn)
    try:
        for row in await conn.fetch(
            """select r.rrn, r.name, r.birth_date, r.sex, r.status, r.household_id,
                      h.region, h.city, h.street, h.postal_code, h.registered_on
               from registry.residents r left join registry.households h
                    on h.id = r.household_id"""
        ):
            address = None
            if row["region"] is not None and row["registered_on"] is not None:
                address = Address(
                    region=row["region"],
                    city=row["city"] or "",
                    street=row["street"] or "",
                    postal_code=row["postal_code"] or "",
                    registered_on=row["registered_on"],
                )
            store.residents[row["rrn"]] = Resident(
                key=row["rrn"],
                household_id=row["household_id"],
                rrn=mask(row["rrn"]),
                name=row["name"],
                birth_date=row["birth_date"],
                sex=Sex(row["sex"]),
                status=RegistrationStatus(row["status"]),
                address=address,
            )
        for row in await conn.fetch(
            """select household_id,
                      array_agg(rrn order by relationship <> 'HEAD', birth_date, rrn) as members
               from registry.residents group by household_id"""
        ):
            store.households[row["household_id"]] = Household(
                id=strawberry.ID(row["household_id"]), member_rrns=tuple(row["members"])
            )
        for row in await conn.fetch(
            """select rrn, insured_type, enrolled_on, monthly_premium, dependents
               from nhis.enrolments"""
        ):
            store.insurance[row["rrn"]] = HealthInsurance(
                insured_type=InsuredType(row["insured_type"]),
                enrolled_on=row["enrolled_on"],
                monthly_premium=KRW(row["monthly_premium"]),
                dependents=row["dependents"],
            )
        for row in await conn.fetch(
            """select rrn, tax_year, reported_income, tax_assessed, tax_paid, arrears
               from nts.tax_returns order by rrn, tax_year"""
        ):
            store.taxes.setdefault(row["rrn"], []).append(
                TaxRecord(
                    year=row["tax_year"],
                    reported_income=KRW(row["reported_income"]),
                    tax_assessed=KRW(row["tax_assessed"]),
                    tax_paid=KRW(row["tax_paid"]),
                    arrears=KRW(row["arrears"]),
                )
            )
        for row in await conn.fetch(
            """select rrn, subscriber_type, months_contributed, expected_monthly_benefit,
                      monthly_benefit, benefit_since from nps.subscriptions"""
        ):
            store.pension[row["rrn"]] = Pension(
                subscriber_type=PensionSubscriberType(row["subscriber_type"]),
                months_contributed=row["months_contributed"],
                expected_monthly_benefit=row["expected_monthly_benefit"],
                monthly_benefit=row["monthly_benefit"],
                benefit_since=row["benefit_since"],
            )
        for row in await conn.fetch(
            "select rrn, status, branch, enlisted_on, discharged_on from mma.service_records"
        ):
            store.military[row["rrn"]] = MilitaryService(
                status=MilitaryServiceStatus(row["status"]),
                branch=_optional(MilitaryBranch, row["branch"]),
                enlisted_on=row["enlisted_on"],
                discharged_on=row["discharged_on"],
            )
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ceiling",
        description="Serve the in-memory strawberry ceiling over a seeded agency database.",
    )
    parser.add_argument("--dsn", required=True, help="PostgreSQL DSN of the seeded agency tables")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    asyncio.run(load(args.dsn, STORE))
    print(
        f"ceiling: {len(STORE.residents):,} residents in memory; "
        f"http://{args.host}:{args.port}/graphql",
        flush=True,
    )
    uvicorn.run(create_app(), host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
