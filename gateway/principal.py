"""Who is asking: the authenticated caller, from the token's claims."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    sub: str
    roles: tuple[str, ...] = ()
    agency: str | None = None
    rrn: str | None = None
