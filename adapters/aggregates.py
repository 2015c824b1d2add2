"""Counts computed where the data lives: what an agency is asked for statistics.

An aggregate query names a dataset (whose records are counted: residents, households,
enrolments, subscriptions, tax filers of one year, service records) and up to two of that
dataset's dimensions; the agency answers one count per combination of categories it holds
(``GROUP BY``), never a record. Each dimension has a fixed list of categories (bands are
fixed too: nobody can ask for "aged 37 to 41"), so every table of a dataset is a margin of
the same cross-classification; the gateway fills in the combinations an agency leaves out
as zero and refuses an answer naming any other category.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

REGIONS = (
    "Seoul", "Busan", "Daegu", "Incheon", "Gwangju", "Daejeon", "Ulsan", "Sejong",
    "Gyeonggi-do", "Gangwon-do", "Chungcheongbuk-do", "Chungcheongnam-do", "Jeollabuk-do",
    "Jeollanam-do", "Gyeongsangbuk-do", "Gyeongsangnam-do", "Jeju-do",
)  # fmt: skip
#: Ten-year bands of age today (from the birth date), the last one open.
AGE_BANDS = (*(f"{low}-{low + 9}" for low in range(0, 80, 10)), "80+")
#: Household size: members registered in it, 5 and more in one band.
HOUSEHOLD_SIZES = ("1", "2", "3", "4", "5+")
#: Reported income in KRW, on the income tax brackets (14M, 50M, 88M, 150M, 300M).
INCOME_BANDS = ("0-14M", "14M-50M", "50M-88M", "88M-150M", "150M-300M", "300M+")
INCOME_BOUNDS = (14_000_000, 50_000_000, 88_000_000, 150_000_000, 300_000_000)

#: Dimension -> its categories, in the order tables list them.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "region": REGIONS,
    "age_band": AGE_BANDS,
    "sex": ("MALE", "FEMALE"),
    "status": ("ACTIVE", "DECEASED", "EMIGRATED"),
    "household_size": HOUSEHOLD_SIZES,
    "insured_type": ("EMPLOYEE", "SELF_EMPLOYED", "DEPENDENT"),
    "subscriber_type": ("WORKPLACE", "REGIONAL", "VOLUNTARY", "RECIPIENT"),
    "service_status": ("NOT_APPLICABLE", "PENDING", "SERVING", "COMPLETED", "EXEMPT"),
    "income_band": INCOME_BANDS,
}

#: Dataset -> the dimensions its records are counted by.
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "resident": ("region", "age_band", "sex", "status"),
    "household": ("household_size", "region"),
    "insurance": ("insured_type",),
    "pension": ("subscriber_type",),
    "military_service": ("service_status",),
    "taxes": ("income_band",),
}

#: The most dimensions one aggregate query groups by.
MAX_DIMENSIONS = 2

Counts = Mapping[tuple[str, ...], int]


@dataclass(frozen=True, slots=True)
class AggregateQuery:
    """Count the records of ``dataset`` grouped by ``dimensions`` (none: one total).

    ``tax_year`` applies to ``taxes`` only: the year whose filers are counted (None: the
    latest year the agency holds)."""

    dataset: str
    dimensions: tuple[str, ...]
    tax_year: int | None = None


def age_band(age: int) -> str:
    """The band of an age in whole years."""
    return AGE_BANDS[min(max(age, 0) // 10, len(AGE_BANDS) - 1)]


def income_band(income: int) -> str:
    """The band of a reported income (KRW)."""
    for bound, band in zip(INCOME_BOUNDS, INCOME_BANDS, strict=False):
        if income < bound:
            return band
    return INCOME_BANDS[-1]


def household_size(members: int) -> str:
    return str(members) if members < 5 else "5+"


def check_answer(query: AggregateQuery, answer: object) -> dict[tuple[str, ...], int]:
    """The agency's counts, keys as tuples of known categories; raises ValueError naming what
    is wrong (never a value the agency sent)."""
    if not isinstance(answer, Mapping):
        raise ValueError("the answer is not a mapping of category keys to counts")
    domains = [CATEGORIES[name] for name in query.dimensions]
    counts: dict[tuple[str, ...], int] = {}
    for key, count in answer.items():
        if not isinstance(key, tuple) or len(key) != len(domains):
            raise ValueError(f"a key does not name {len(domains)} categories")
        for value, domain, name in zip(key, domains, query.dimensions, strict=True):
            if value not in domain:
                raise ValueError(f"a key names a category {name} does not have")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("a count is not a non-negative integer")
        counts[key] = counts.get(key, 0) + count
    return counts
