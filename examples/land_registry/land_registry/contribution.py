"""What the land registry adds to the gateway's schema: LandParcel and Resident.landParcels."""

from __future__ import annotations

import datetime as dt

import strawberry

from adapters.records import Dataset
from gateway.federation import Contribution, ResidentField
from land_registry.adapter import LandParcelRecord
from land_registry.server import demo


@strawberry.type(description="A parcel of land the resident owns, as the land registry has it.")
class LandParcel:
    view: strawberry.Private[str]
    subject: strawberry.Private[str]

    parcel_id: str = strawberry.field(description="The registry's parcel number.")
    address: str = strawberry.field(description="The parcel's lot address.")
    area_sqm: float = strawberry.field(description="Area in square metres.")
    acquired_on: dt.date = strawberry.field(description="When the resident acquired it.")


def build(r: LandParcelRecord, view: str, subject: str) -> LandParcel:
    return LandParcel(
        view=view, subject=subject, parcel_id=r.parcel_id, address=r.address,
        area_sqm=r.area_sqm, acquired_on=r.acquired_on,
    )  # fmt: skip


CONTRIBUTION = Contribution(
    dataset=Dataset("land_parcels", LandParcelRecord, many=True),
    types=(LandParcel,),
    fields=(ResidentField("landParcels", LandParcel, "Land the resident owns.", build),),
    demo=demo,
)
