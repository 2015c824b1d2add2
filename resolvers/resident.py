"""Resident fields: registry values from the record, agency data through DataLoaders."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from gateway.context import Context
from resolvers.loading import NOT_LOADED, load, loaded, when_loaded
from schema.address import Address
from schema.enums import (
    InsuredType,
    MilitaryBranch,
    MilitaryServiceStatus,
    PensionSubscriberType,
    RegistrationStatus,
    Relationship,
    Sex,
)
from schema.insurance import HealthInsurance
from schema.military import MilitaryService
from schema.pension import Pension
from schema.tax import TaxRecord

if TYPE_CHECKING:
    from schema.household import Household
    from schema.resident import Resident

Info = strawberry.Info[Context, None]


def rrn(root: Resident, info: Info) -> str:
    return info.context.access.show_rrn(root.view, root.record.rrn)


def name(root: Resident) -> str | None:
    return root.record.name


def birth_date(root: Resident) -> dt.date | None:
    return root.record.birth_date


def sex(root: Resident) -> Sex | None:
    return Sex(root.record.sex)


def status(root: Resident) -> RegistrationStatus | None:
    return RegistrationStatus(root.record.status)


def is_foreign_resident(root: Resident) -> bool | None:
    return root.record.is_foreign


def relationship(root: Resident) -> Relationship | None:
    value = root.record.relationship
    return None if value is None else Relationship(value)


def address(root: Resident) -> Address | None:
    r = root.record
    if r.region is None or r.registered_on is None:
        return None
    return Address(
        view=root.view,
        subject=r.rrn,
        region=r.region,
        city=r.city or "",
        street=r.street or "",
        postal_code=r.postal_code or "",
        registered_on=r.registered_on,
    )


def _household(root: Resident, record: Any) -> Household | None:
    from schema.household import Household

    if record is None:
        return None
    return Household(record=record, view=root.view, subject=root.record.rrn)


def household_loaded(root: Resident, info: Info) -> Household | None:
    if root.record.household_id is None:
        return None
    record = loaded(info, "household", root.record.household_id)
    return record if record is NOT_LOADED else _household(root, record)


@when_loaded(household_loaded)
async def household(root: Resident, info: Info) -> Household | None:
    if root.record.household_id is None:
        return None
    return _household(root, await load(info, "household", root.record.household_id))


def _insurance(root: Resident, info: Info, r: Any) -> HealthInsurance | None:
    if r is None:
        return None
    return HealthInsurance(
        view=root.view,
        subject=root.record.rrn,
        insured_type=InsuredType(r.insured_type),
        enrolled_on=r.enrolled_on,
        monthly_premium=r.monthly_premium,
        dependents=r.dependents,
        insured_by=None
        if r.insured_by is None
        else info.context.access.show_rrn(root.view, r.insured_by, whole_allowed=False),
        insured_by_rrn=r.insured_by,
    )


def insurance_loaded(root: Resident, info: Info) -> HealthInsurance | None:
    r = loaded(info, "insurance", root.record.rrn)
    return r if r is NOT_LOADED else _insurance(root, info, r)


@when_loaded(insurance_loaded)
async def insurance(root: Resident, info: Info) -> HealthInsurance | None:
    return _insurance(root, info, await load(info, "insurance", root.record.rrn))


def _taxes(root: Resident, records: Any, years: list[int] | None) -> list[TaxRecord] | None:
    wanted = None if not years else set(years)
    view, subject = root.view, root.record.rrn
    return [
        TaxRecord(
            view=view,
            subject=subject,
            year=r.tax_year,
            reported_income=r.reported_income,
            tax_assessed=r.tax_assessed,
            tax_paid=r.tax_paid,
            arrears=r.arrears,
        )
        for r in records
        if wanted is None or r.tax_year in wanted
    ]


def taxes_loaded(root: Resident, info: Info, years: list[int] | None = None) -> Any:
    records = loaded(info, "taxes", root.record.rrn)
    return records if records is NOT_LOADED else _taxes(root, records, years)


@when_loaded(taxes_loaded)
async def taxes(
    root: Resident,
    info: Info,
    years: Annotated[
        list[int] | None,
        strawberry.argument(description="Only these tax years; all years on record when omitted."),
    ] = None,
) -> list[TaxRecord] | None:
    return _taxes(root, await load(info, "taxes", root.record.rrn), years)


def _pension(root: Resident, r: Any) -> Pension | None:
    if r is None:
        return None
    return Pension(
        view=root.view,
        subject=root.record.rrn,
        subscriber_type=PensionSubscriberType(r.subscriber_type),
        months_contributed=r.months_contributed,
        expected_monthly_benefit=r.expected_monthly_benefit,
        monthly_benefit=r.monthly_benefit,
        benefit_since=r.benefit_since,
    )


def pension_loaded(root: Resident, info: Info) -> Pension | None:
    r = loaded(info, "pension", root.record.rrn)
    return r if r is NOT_LOADED else _pension(root, r)


@when_loaded(pension_loaded)
async def pension(root: Resident, info: Info) -> Pension | None:
    return _pension(root, await load(info, "pension", root.record.rrn))


def _military_service(root: Resident, r: Any) -> MilitaryService | None:
    if r is None:
        return None
    return MilitaryService(
        view=root.view,
        subject=root.record.rrn,
        status=MilitaryServiceStatus(r.status),
        branch=None if r.branch is None else MilitaryBranch(r.branch),
        enlisted_on=r.enlisted_on,
        discharged_on=r.discharged_on,
        exemption_reason=r.exemption_reason,
    )


def military_service_loaded(root: Resident, info: Info) -> MilitaryService | None:
    r = loaded(info, "military_service", root.record.rrn)
    return r if r is NOT_LOADED else _military_service(root, r)


@when_loaded(military_service_loaded)
async def military_service(root: Resident, info: Info) -> MilitaryService | None:
    return _military_service(root, await load(info, "military_service", root.record.rrn))
