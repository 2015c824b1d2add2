"""An agency read from PostgreSQL through asyncpg: one pool per agency, one query per batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from adapters.aggregates import (
    AGE_BANDS,
    INCOME_BANDS,
    INCOME_BOUNDS,
    AggregateQuery,
    Counts,
)
from adapters.base import Adapter, AgencyFailure
from adapters.records import Dataset, record_from_mapping
from adapters.trust import TrustError, sql_connect_options

# The reference layout (gateway/demo/schema.sql). Each query takes the batch of keys as
# $1 (text[]) and returns columns named like the record's fields plus the key column
# ``key``. Override one per dataset in the agency's table: [agencies.nhis.queries].
REFERENCE_QUERIES: dict[str, str] = {
    "resident": """
        select r.rrn as key, r.rrn, r.name, r.birth_date, r.sex, r.is_foreign, r.status,
               r.household_id, r.relationship, h.region, h.city, h.street, h.postal_code,
               h.registered_on
        from registry.residents r left join registry.households h on h.id = r.household_id
        where r.rrn = any($1::text[])""",
    "household": """
        select h.id as key, h.id, h.head_rrn,
               array_agg(r.rrn order by r.relationship <> 'HEAD', r.birth_date, r.rrn)
                   as member_rrns
        from registry.households h join registry.residents r on r.household_id = h.id
        where h.id = any($1::text[])
        group by h.id, h.head_rrn""",
    "insurance": """
        select rrn as key, rrn, insured_type, enrolled_on, monthly_premium, dependents,
               insured_by
        from nhis.enrolments where rrn = any($1::text[])""",
    "pension": """
        select rrn as key, rrn, subscriber_type, months_contributed, expected_monthly_benefit,
               monthly_benefit, benefit_since
        from nps.subscriptions where rrn = any($1::text[])""",
    "taxes": """
        select rrn as key, rrn, tax_year, reported_income, tax_assessed, tax_paid, arrears
        from nts.tax_returns where rrn = any($1::text[]) order by rrn, tax_year""",
    "military_service": """
        select rrn as key, rrn, status, branch, enlisted_on, discharged_on, exemption_reason
        from mma.service_records where rrn = any($1::text[])""",
}


def _age_band_sql(birth: str) -> str:
    age = f"extract(year from age(current_date, {birth}))::int"
    whens = " ".join(
        f"when {age} < {10 * (i + 1)} then '{band}'" for i, band in enumerate(AGE_BANDS[:-1])
    )
    return f"case {whens} else '{AGE_BANDS[-1]}' end"


def _income_band_sql(income: str) -> str:
    whens = " ".join(
        f"when {income} < {bound} then '{band}'"
        for bound, band in zip(INCOME_BOUNDS, INCOME_BANDS, strict=False)
    )
    return f"case {whens} else '{INCOME_BANDS[-1]}' end"


# Statistics over the reference layout: dataset -> (what is counted, with its filter, and
# dimension -> its SQL expression). ``$1`` is the tax year (null: the latest one).
REFERENCE_AGGREGATES: dict[str, tuple[str, dict[str, str]]] = {
    "resident": (
        "registry.residents r join registry.households h on h.id = r.household_id",
        {"region": "h.region", "age_band": _age_band_sql("r.birth_date"), "sex": "r.sex",
         "status": "r.status"},
    ),
    "household": (
        """registry.households h join (select household_id, count(*) as size
               from registry.residents group by household_id) m on m.household_id = h.id""",
        {"household_size": "case when m.size >= 5 then '5+' else m.size::text end",
         "region": "h.region"},
    ),
    "insurance": ("nhis.enrolments e", {"insured_type": "e.insured_type"}),
    "pension": ("nps.subscriptions s", {"subscriber_type": "s.subscriber_type"}),
    "military_service": ("mma.service_records m", {"service_status": "m.status"}),
    "taxes": (
        """nts.tax_returns t where t.tax_year = coalesce($1::int,
               (select max(tax_year) from nts.tax_returns))""",
        {"income_band": _income_band_sql("t.reported_income")},
    ),
}  # fmt: skip


def aggregate_sql(query: AggregateQuery) -> tuple[str, list[object]]:
    """The GROUP BY statement for ``query`` over the reference layout, and its arguments."""
    source = REFERENCE_AGGREGATES.get(query.dataset)
    if source is None:
        raise AgencyFailure(f"no statistics over {query.dataset}")
    counted, expressions = source
    unknown = [d for d in query.dimensions if d not in expressions]
    if unknown:
        raise AgencyFailure(f"{query.dataset} is not counted by {', '.join(unknown)}")
    columns = [f"{expressions[d]} as d{i}" for i, d in enumerate(query.dimensions)]
    sql = f"select {', '.join([*columns, 'count(*) as n'])} from {counted}"
    if query.dimensions:
        sql += " group by " + ", ".join(str(i + 1) for i in range(len(columns)))
    return sql, ([query.tax_year] if "$1" in counted else [])


class SQLAdapter(Adapter):
    """Settings: ``dsn`` (required), ``max_concurrency`` (pool size, default 10),
    ``queries`` (dataset -> SQL, defaults to :data:`REFERENCE_QUERIES`), and TLS and secrets
    (:func:`adapters.trust.sql_connect_options`): ``sslmode``, ``ca_file``, ``client_cert``,
    ``client_key``, ``client_key_password``, ``password``; ``dsn`` may be a reference."""

    datasets = frozenset(REFERENCE_QUERIES)

    def __init__(self, agency: str, settings: Mapping[str, Any]) -> None:
        super().__init__(agency, settings)
        self.dsn: str = settings["dsn"]
        self.queries = {**REFERENCE_QUERIES, **settings.get("queries", {})}
        self.pool_size = int(settings.get("max_concurrency", 10))
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        try:
            options = sql_connect_options(self.agency, self.settings)
        except TrustError as exc:
            raise AgencyFailure(str(exc)) from None
        self._pool = await asyncpg.create_pool(
            # min_size=0: an agency that is down at start-up must not stop the gateway.
            **options,
            min_size=0,
            max_size=self.pool_size,
            command_timeout=30,
            # 0 behind PgBouncer in transaction mode (docs/deployment.md).
            statement_cache_size=int(self.settings.get("statement_cache_size", 100)),
            # Lookups leave no session state behind (no SET, LISTEN or open cursors), so
            # the reset asyncpg runs on every release (a round trip) buys nothing here.
            reset=keep_session,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise AgencyFailure(f"{self.agency}: adapter used before start()")
        return self._pool

    async def ping(self) -> None:
        await self.pool.fetchval("select 1")

    async def aggregate(self, query: AggregateQuery) -> Counts:
        """Counted by PostgreSQL (``GROUP BY``) over the reference layout."""
        sql, args = aggregate_sql(query)
        rows = await self.pool.fetch(sql, *args)
        width = len(query.dimensions)
        return {tuple(row[f"d{i}"] for i in range(width)): row["n"] for row in rows}

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        query = self.queries.get(dataset.name)
        if query is None:
            raise AgencyFailure(f"{self.agency} has no query for {dataset.name}")
        try:
            rows = await self.pool.fetch(query, list(keys))
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            if isinstance(exc, TimeoutError):
                raise
            # The database could not be reached or dropped the connection: worth a retry.
            raise AgencyFailure(f"{self.agency}: {type(exc).__name__}", transient=True) from exc
        if dataset.many:
            grouped: dict[str, list[Any]] = defaultdict(list)
            for row in rows:
                grouped[row["key"]].append(record_from_mapping(dataset.record, row))
            return [tuple(grouped.get(key, ())) for key in keys]
        found = {row["key"]: record_from_mapping(dataset.record, row) for row in rows}
        return [found.get(key) for key in keys]


async def keep_session(connection: asyncpg.Connection) -> None:
    """A pool reset that does nothing more than asyncpg's own step before it (a transaction
    left open is rolled back): for pools whose connections keep no session state."""
