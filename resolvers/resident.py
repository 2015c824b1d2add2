"""Resident fields: registry values from the record, agency data through DataLoaders."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry

from gateway.context import Context
from resolvers.loading import load
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


async def household(root: Resident, info: Info) -> Household | None:
    from schema.household import Household

    if root.record.household_id is None:
        return None
    record = await load(info, "household", root.record.household_id)
    if record is None:
        return None
    return Household(record=record, view=root.view, subject=root.record.rrn)


async def insurance(root: Resident, info: Info) -> HealthInsurance | None:
    r = await load(info, "insurance", root.record.rrn)
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


async def taxes(
    root: Resident,
    info: Info,
    years: Annotated[
        list[int] | None,
        strawberry.argument(description="Only these tax years; all years on record when omitted."),
    ] = None,
) -> list[TaxRecord] | None:
    records = await load(info, "taxes", root.record.rrn)
    wanted = None if not years else set(years)
    return [
        TaxRecord(
            view=root.view,
            subject=root.record.rrn,
            year=r.tax_year,
            reported_income=r.reported_income,
            tax_assessed=r.tax_assessed,
            tax_paid=r.tax_paid,
            arrears=r.arrears,
        )
        for r in records
        if wanted is None or r.tax_year in wanted
    ]


async def pension(root: Resident, info: Info) -> Pension | None:
    r = await load(info, "pension", root.record.rrn)
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


async def military_service(root: Resident, info: Info) -> MilitaryService | None:
    r = await load(info, "military_service", root.record.rrn)
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
