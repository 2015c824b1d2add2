"""Query.statistics: the agency counts, the gateway suppresses, the audit trail records."""

from __future__ import annotations

import datetime as dt
import json
from itertools import product
from typing import Annotated

import strawberry

from adapters.aggregates import CATEGORIES, DIMENSIONS, MAX_DIMENSIONS, AggregateQuery
from gateway.agencies import unserved_name
from gateway.audit_chain import STATISTICS, AuditRecord
from gateway.context import Context
from gateway.disclosure import protect
from gateway.errors import AgencyError, BadRequest, quote
from schema.statistics import Dimension, Measure, Statistics, StatisticsCell, StatisticsFilter

Info = strawberry.Info[Context, None]

#: What each measure counts: the records of this dataset, at the agency serving it.
MEASURE_DATASET: dict[Measure, str] = {
    Measure.RESIDENTS: "resident",
    Measure.HOUSEHOLDS: "household",
    Measure.INSURED: "insurance",
    Measure.PENSION: "pension",
    Measure.MILITARY_SERVICE: "military_service",
    Measure.TAX_FILERS: "taxes",
}
YEARS = range(1900, 2101)

MeasureArg = Annotated[Measure, strawberry.argument(description="What to count.")]
ByArg = Annotated[
    list[Dimension],
    strawberry.argument(
        description="Dimensions of the measure to group by: none (the total), one or two."
    ),
]
WhereArg = Annotated[
    StatisticsFilter | None,
    strawberry.argument(description="Count only these categories (and, for taxes, this year)."),
]


def _name(dimension: str) -> str:
    return dimension.upper()


async def statistics(
    info: Info, measure: MeasureArg, by: ByArg, where: WhereArg = None
) -> Statistics:
    dataset = MEASURE_DATASET[measure]
    allowed = DIMENSIONS[dataset]
    offered = ", ".join(_name(d) for d in allowed)
    grouped = [d.name.lower() for d in by]
    if len(set(grouped)) != len(grouped):
        raise BadRequest("by names a dimension twice.")
    for name in grouped:
        if name not in allowed:
            raise BadRequest(
                f"{measure.name} cannot be grouped by {_name(name)} (its dimensions: {offered})."
            )
    fixed: dict[str, str] = {}
    tax_year = None if where is None else where.tax_year
    for name, domain in CATEGORIES.items():
        value = None if where is None else getattr(where, name)
        if value is None:
            continue
        if name not in allowed:
            raise BadRequest(
                f"{measure.name} cannot be filtered by {_name(name)} (its dimensions: {offered})."
            )
        if value not in domain:
            keys = ", ".join(domain)
            raise BadRequest(f"{quote(value)} is not a {_name(name)} key (keys: {keys}).")
        if name in grouped:
            raise BadRequest(f"{_name(name)} is both filtered and grouped by; choose one.")
        fixed[name] = value
    if tax_year is not None and dataset != "taxes":
        raise BadRequest("taxYear applies to TAX_FILERS only.")
    if tax_year is not None and tax_year not in YEARS:
        raise BadRequest(f"taxYear must be between {YEARS.start} and {YEARS.stop - 1}.")
    # Canonical order: the same two-way table whatever the order of by and where.
    dimensions = tuple(d for d in allowed if d in grouped or d in fixed)
    if len(dimensions) > MAX_DIMENSIONS:
        raise BadRequest(
            f"by and where together name at most {MAX_DIMENSIONS} dimensions "
            f"(got {', '.join(_name(d) for d in dimensions)})."
        )
    context = info.context
    found = context.agencies.for_dataset(dataset)
    if found is None:
        agency_code = unserved_name(dataset)
        raise AgencyError(agency_code, f"The {agency_code} agency is not configured.")
    agency, _ = found
    counts = await agency.aggregate(
        AggregateQuery(dataset, dimensions, tax_year), context.loaders.deadline
    )
    k = context.statistics.k
    table = protect(dimensions, [CATEGORIES[d] for d in dimensions], counts, k)
    cells = [
        _cell(key, table.value({**fixed, **dict(zip(grouped, key, strict=True))}))
        for key in product(*(CATEGORIES[d] for d in grouped))
    ]
    total = _cell((), table.value(fixed))
    await _audit(info, measure, by, fixed, tax_year, sum(c.suppressed for c in cells))
    return Statistics(measure=measure, by=list(by), threshold=k, cells=cells, total=total)


def _cell(key: tuple[str, ...], count: int | None) -> StatisticsCell:
    return StatisticsCell(key=list(key), count=count, suppressed=count is None)


async def _audit(
    info: Info,
    measure: Measure,
    by: list[Dimension],
    fixed: dict[str, str],
    tax_year: int | None,
    suppressed: int,
) -> None:
    """One chain row per aggregate query, committed before the table is released: who asked,
    which measure, grouping and filter. No subject: it is in no citizen's access log."""
    context = info.context
    if not context.audit_enabled:
        return
    p = context.principal
    asked = {
        "measure": measure.name,
        "by": [d.name for d in by],
        "where": {_name(name): value for name, value in fixed.items()},
        "taxYear": tax_year,
        "suppressedCells": suppressed,
    }
    record = AuditRecord(
        at=dt.datetime.now(dt.UTC),
        request_id=context.request_id,
        principal=p.sub,
        roles=",".join(p.roles),
        agency=p.agency,
        purpose=STATISTICS,
        subject="",
        disclosed=("Query.statistics",),
        denied=(),
        note=json.dumps(asked, sort_keys=True),
    )
    await context.audit.record([record])
