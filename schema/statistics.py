"""Aggregate statistics for analysts: counts by category, small cells suppressed."""

from __future__ import annotations

from enum import Enum

import strawberry

from adapters.aggregates import AGE_BANDS, HOUSEHOLD_SIZES, INCOME_BANDS, REGIONS


def _keys(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


@strawberry.enum(
    description=(
        "What is counted. Each measure is computed by the agency that holds it and can be "
        "grouped by its own dimensions only."
    )
)
class Measure(Enum):
    RESIDENTS = strawberry.enum_value(
        "RESIDENTS",
        description=(
            "Registered residents, whatever their status (registry). Dimensions: REGION, "
            "AGE_BAND, SEX, STATUS."
        ),
    )
    HOUSEHOLDS = strawberry.enum_value(
        "HOUSEHOLDS",
        description="Registered households (registry). Dimensions: HOUSEHOLD_SIZE, REGION.",
    )
    INSURED = strawberry.enum_value(
        "INSURED",
        description=(
            "People enrolled in national health insurance (health insurance agency). "
            "Dimension: INSURED_TYPE."
        ),
    )
    PENSION = strawberry.enum_value(
        "PENSION",
        description=(
            "National pension subscribers and beneficiaries (pension agency). Dimension: "
            "SUBSCRIBER_TYPE (RECIPIENT counts the beneficiaries)."
        ),
    )
    MILITARY_SERVICE = strawberry.enum_value(
        "MILITARY_SERVICE",
        description=(
            "People with a military service record (military manpower agency). Dimension: "
            "SERVICE_STATUS."
        ),
    )
    TAX_FILERS = strawberry.enum_value(
        "TAX_FILERS",
        description=(
            "People who filed an income tax return for one tax year (tax agency; "
            "where.taxYear, default the latest year it holds). Dimension: INCOME_BAND."
        ),
    )


@strawberry.enum(
    description=(
        "A way to group a measure. Categories are fixed (bands included), and a cell's key "
        "lists them as strings, in the order of `by`."
    )
)
class Dimension(Enum):
    REGION = strawberry.enum_value(
        "REGION",
        description=f"Region of the registered address: {_keys(REGIONS)}.",
    )
    AGE_BAND = strawberry.enum_value(
        "AGE_BAND", description=f"Age today, in ten-year bands: {_keys(AGE_BANDS)}."
    )
    SEX = strawberry.enum_value("SEX", description='Registered sex: "MALE", "FEMALE".')
    STATUS = strawberry.enum_value(
        "STATUS", description='Registration status: "ACTIVE", "DECEASED", "EMIGRATED".'
    )
    HOUSEHOLD_SIZE = strawberry.enum_value(
        "HOUSEHOLD_SIZE",
        description=f"Members registered in the household: {_keys(HOUSEHOLD_SIZES)}.",
    )
    INSURED_TYPE = strawberry.enum_value(
        "INSURED_TYPE",
        description='How a person is insured: "EMPLOYEE", "SELF_EMPLOYED", "DEPENDENT".',
    )
    SUBSCRIBER_TYPE = strawberry.enum_value(
        "SUBSCRIBER_TYPE",
        description=(
            'Pension participation: subscribers "WORKPLACE", "REGIONAL", "VOLUNTARY"; '
            'beneficiaries "RECIPIENT".'
        ),
    )
    SERVICE_STATUS = strawberry.enum_value(
        "SERVICE_STATUS",
        description=(
            'Military service status: "NOT_APPLICABLE", "PENDING", "SERVING", "COMPLETED", '
            '"EXEMPT" (never the reasons for an exemption).'
        ),
    )
    INCOME_BAND = strawberry.enum_value(
        "INCOME_BAND",
        description=(
            "Reported income of the tax year in KRW, on the income tax brackets: "
            f"{_keys(INCOME_BANDS)}."
        ),
    )


@strawberry.input(
    description=(
        "Restrict a measure to one category of up to two of its dimensions (a filter and "
        "`by` together name at most two dimensions). Values are the keys cells show. A "
        "filtered table is a slice of the unfiltered two-way table, protected as a whole: "
        "a slice with a small population is suppressed, not answered."
    )
)
class StatisticsFilter:
    region: str | None = strawberry.field(default=None, description="A REGION key.")
    age_band: str | None = strawberry.field(default=None, description="An AGE_BAND key.")
    sex: str | None = strawberry.field(default=None, description="A SEX key.")
    status: str | None = strawberry.field(default=None, description="A STATUS key.")
    household_size: str | None = strawberry.field(default=None, description="A HOUSEHOLD_SIZE key.")
    insured_type: str | None = strawberry.field(default=None, description="An INSURED_TYPE key.")
    subscriber_type: str | None = strawberry.field(
        default=None, description="A SUBSCRIBER_TYPE key."
    )
    service_status: str | None = strawberry.field(default=None, description="A SERVICE_STATUS key.")
    income_band: str | None = strawberry.field(default=None, description="An INCOME_BAND key.")
    tax_year: int | None = strawberry.field(
        default=None,
        description="TAX_FILERS only: the tax year (default: the latest the tax agency holds).",
    )


@strawberry.type(description="One count of a statistics table.")
class StatisticsCell:
    key: list[str] = strawberry.field(
        description="The categories of this cell, one per dimension of `by`, in its order."
    )
    count: int | None = strawberry.field(
        description="How many; null when suppressed (see `suppressed`)."
    )
    suppressed: bool = strawberry.field(
        description=(
            "The count is withheld: under the threshold k, or withheld so that another "
            "withheld count cannot be worked out from the ones shown."
        )
    )


@strawberry.type(
    description=(
        "A table of counts with small cells suppressed. Every combination of categories is "
        "listed, zero counts included (and, being under k, suppressed)."
    )
)
class Statistics:
    measure: Measure = strawberry.field(description="What was counted.")
    by: list[Dimension] = strawberry.field(description="How the cells are grouped.")
    threshold: int = strawberry.field(
        description="k: counts under it are suppressed ([statistics] k)."
    )
    cells: list[StatisticsCell] = strawberry.field(
        description="One cell per combination of categories of `by`, in category order."
    )
    total: StatisticsCell = strawberry.field(
        description="The whole population counted (after `where`); its key is empty."
    )
