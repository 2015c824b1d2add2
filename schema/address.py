"""Address: where a resident is registered as living."""

from __future__ import annotations

import datetime as dt

import strawberry


@strawberry.type(description="The address a resident is registered at, from the registry.")
class Address:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]

    region: str | None = strawberry.field(
        description="Province or metropolitan city, e.g. Seoul or Gyeonggi-do."
    )
    city: str | None = strawberry.field(description="City, county or district, e.g. Gangnam-gu.")
    street: str | None = strawberry.field(description="Street address within the city.")
    postal_code: str | None = strawberry.field(description="Five-digit postal code.")
    registered_on: dt.date | None = strawberry.field(
        description="When the household registered at this address."
    )
