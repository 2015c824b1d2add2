"""TaxRecord: one year of income tax with the National Tax Service (nts)."""

from __future__ import annotations

import strawberry

from schema.scalars import KRW


@strawberry.type(description="Income tax for one tax year, from the nts agency.")
class TaxRecord:
    year: int = strawberry.field(description="The tax year (calendar year of the income).")
    reported_income: KRW = strawberry.field(description="Income reported for the year, in won.")
    tax_assessed: KRW = strawberry.field(description="Tax assessed on that income, in won.")
    tax_paid: KRW = strawberry.field(description="Tax paid so far for the year, in won.")
    arrears: KRW = strawberry.field(description="Tax assessed but still unpaid, in won.")
