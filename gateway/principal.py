"""Who is asking: the authenticated caller, from the token's claims."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: tuple[str, ...] = ()
    agency: str | None = None
    rrn: str | None = None


#: An agency code, as tokens claim it, the policy lists it and consents name it.
AGENCY_CODE = re.compile(r"^[a-z][a-z0-9_-]*$")
MAX_AGENCY = 32


def is_agency_code(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_AGENCY and bool(AGENCY_CODE.match(value))
