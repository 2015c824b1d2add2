"""TaxRecord: one year of income tax with the National Tax Service (nts)."""

from __future__ import annotations

import strawberry

from schema.scalars import KRW


@strawberry.type(description="Income tax for one tax year, from the nts agency.")
class TaxRecord:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]

    year: int | None = strawberry.field(description="The tax year (calendar year of the income).")
    reported_income: KRW | None = strawberry.field(
        description="Income reported for the year, in won."
    )
    tax_assessed: KRW | None = strawberry.field(description="Tax assessed on that income, in won.")
    tax_paid: KRW | None = strawberry.field(description="Tax paid so far for the year, in won.")
    arrears: KRW | None = strawberry.field(description="Tax assessed but still unpaid, in won.")
