"""The land registry's record and adapter: one SOAP-style GetParcels call per batch."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.base import Adapter, AgencyFailure
from adapters.records import Dataset

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
LR = "urn:example:land-registry"
NS = {"soap": SOAP, "lr": LR}


@dataclass(frozen=True, slots=True)
class LandParcelRecord:
    rrn: str
    parcel_id: str
    address: str
    area_sqm: float
    acquired_on: dt.date


def envelope(body: ET.Element) -> bytes:
    root = ET.Element(f"{{{SOAP}}}Envelope")
    ET.SubElement(root, f"{{{SOAP}}}Body").append(body)
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


class LandRegistryAdapter(Adapter):
    """Settings: ``url`` (the registry's base URL), ``timeout_ms`` (default 2000)."""

    datasets = frozenset({"land_parcels"})
    _client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        timeout = int(self.settings.get("timeout_ms", 2000)) / 1000
        self._client = httpx.AsyncClient(base_url=str(self.settings["url"]), timeout=timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def ping(self) -> None:
        await self.fetch(Dataset("land_parcels", LandParcelRecord, many=True), [])

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        if self._client is None:
            raise AgencyFailure(f"{self.agency}: adapter used before start()")
        ask = ET.Element(f"{{{LR}}}GetParcels")
        for key in keys:
            ET.SubElement(ask, f"{{{LR}}}owner").text = key
        try:
            response = await self._client.post(
                "/soap", content=envelope(ask),
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "GetParcels"},
            )  # fmt: skip
            root = ET.fromstring(response.content)  # noqa: S314 - the configured agency's answer
        except (httpx.TransportError, ET.ParseError) as exc:
            raise AgencyFailure(f"{self.agency}: {type(exc).__name__}") from exc
        fault = root.find(".//soap:Fault/faultstring", NS)
        if fault is not None or response.status_code != 200:
            reason = fault.text if fault is not None else f"HTTP {response.status_code}"
            raise AgencyFailure(f"{self.agency} answered a fault: {reason}")
        owners = {
            owner.get("rrn"): tuple(
                LandParcelRecord(
                    rrn=str(owner.get("rrn")),
                    parcel_id=str(p.get("id")),
                    address=str(p.get("address")),
                    area_sqm=float(p.get("areaSqm", "0")),
                    acquired_on=dt.date.fromisoformat(str(p.get("acquiredOn"))),
                )
                for p in owner.iterfind("lr:parcel", NS)
            )
            for owner in root.iterfind(".//lr:GetParcelsResponse/lr:owner", NS)
        }
        return [owners.get(key, ()) for key in keys]
