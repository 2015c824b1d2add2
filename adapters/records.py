"""The plain records agencies hand to the gateway, and the datasets that carry them.

Records are frozen dataclasses with no behaviour. Field names match the reference
column names of the demo agency tables, so a SQL row or a JSON object maps onto a
record by name (see :func:`record_from_mapping`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar


@dataclass(frozen=True, slots=True)
class ResidentRecord:
    rrn: str
    name: str
    birth_date: dt.date
    sex: str
    is_foreign: bool
    status: str
    household_id: str | None
    relationship: str | None
    region: str | None
    city: str | None
    street: str | None
    postal_code: str | None
    registered_on: dt.date | None


@dataclass(frozen=True, slots=True)
class HouseholdRecord:
    id: str
    head_rrn: str
    member_rrns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InsuranceRecord:
    rrn: str
    insured_type: str
    enrolled_on: dt.date
    monthly_premium: int
    dependents: int
    insured_by: str | None


@dataclass(frozen=True, slots=True)
class TaxRecord:
    rrn: str
    tax_year: int
    reported_income: int
    tax_assessed: int
    tax_paid: int
    arrears: int


@dataclass(frozen=True, slots=True)
class PensionRecord:
    rrn: str
    subscriber_type: str
    months_contributed: int
    expected_monthly_benefit: int | None
    monthly_benefit: int | None
    benefit_since: dt.date | None


@dataclass(frozen=True, slots=True)
class MilitaryServiceRecord:
    rrn: str
    status: str
    branch: str | None
    enlisted_on: dt.date | None
    discharged_on: dt.date | None
    exemption_reason: str | None


@dataclass(frozen=True, slots=True)
class Dataset:
    """One kind of record an agency serves, looked up by key.

    ``many`` datasets answer each key with a tuple of records (tax returns per year);
    the others with one record or ``None``.
    """

    name: str
    record: type[Any]
    many: bool = False
    #: For a source that can be asked for part of each record (a GraphQL subgraph forwards
    #: only the subfields a request selects): the part to ask for; empty for whole records.
    #: Made by :meth:`narrowed`, which also names the part apart, so the gateway fetches,
    #: shares in flight and caches each part separately: a narrow part never answers a wider
    #: request.
    part: str = ""

    def narrowed(self, part: str) -> Dataset:
        """This dataset asked for ``part`` only, named ``<name>@<digest of part>``."""
        digest = hashlib.sha256(part.encode()).hexdigest()[:32]
        return Dataset(f"{self.base}@{digest}", self.record, self.many, part)

    @property
    def base(self) -> str:
        """The configured dataset's name (without a part's digest)."""
        return self.name.partition("@")[0]


RESIDENT = Dataset("resident", ResidentRecord)
HOUSEHOLD = Dataset("household", HouseholdRecord)
INSURANCE = Dataset("insurance", InsuranceRecord)
TAXES = Dataset("taxes", TaxRecord, many=True)
PENSION = Dataset("pension", PensionRecord)
MILITARY_SERVICE = Dataset("military_service", MilitaryServiceRecord)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (RESIDENT, HOUSEHOLD, INSURANCE, TAXES, PENSION, MILITARY_SERVICE)
}

R = TypeVar("R")


class Row(Protocol):
    """A JSON object or a database row: values by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def record_from_mapping(record: type[R], data: Row) -> R:
    """Build ``record`` from a row or JSON object, turning ISO strings into dates
    and lists into tuples. Extra keys are ignored; a missing key is an error."""
    values: dict[str, Any] = {}
    for name, dated in _shape(record):
        value = data[name]
        if isinstance(value, str):
            if dated:
                value = dt.date.fromisoformat(value)
        elif isinstance(value, list):
            value = tuple(value)
        values[name] = value
    return record(**values)


def record_to_json(record: Any) -> dict[str, Any]:
    """The JSON-ready form of a record (dates as ISO strings)."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[field.name] = value
    return out


_SHAPES: dict[type[Any], tuple[tuple[str, bool], ...]] = {}


def _shape(record: type[Any]) -> tuple[tuple[str, bool], ...]:
    """Per field of ``record``, in order: its name and whether its type admits a date;
    worked out once per record class (``dataclasses.fields`` and the type hints are slow
    to ask on every row)."""
    shape = _SHAPES.get(record)
    if shape is None:
        hints = typing.get_type_hints(record)
        shape = _SHAPES[record] = tuple(
            (f.name, dt.date in _members(hints[f.name])) for f in dataclasses.fields(record)
        )
    return shape


def _members(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)
