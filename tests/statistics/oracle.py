"""An independent check of derivability: a suppressed count can be worked out from the
published ones exactly when its linear form lies in the span of theirs. Decided by Gaussian
elimination modulo a large prime (the forms have 0/1 coefficients, so the rank over the
rationals is the rank modulo p except with negligible probability), with no knowledge of how
the gateway chose what to suppress."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

PRIME = (1 << 61) - 1
Form = Mapping[Any, int]


class Span:
    """The span of published linear forms over the cells of a table."""

    def __init__(self) -> None:
        self.rows: dict[Hashable, dict[Hashable, int]] = {}  # pivot -> row (pivot coef 1)

    def _reduce(self, form: Form) -> dict[Hashable, int]:
        row = {v: c % PRIME for v, c in form.items() if c % PRIME}
        changed = True
        while changed:
            changed = False
            for pivot in [v for v in row if v in self.rows]:
                coef = row.get(pivot, 0)
                if not coef:
                    continue
                for v, c in self.rows[pivot].items():
                    row[v] = (row.get(v, 0) - coef * c) % PRIME
                    if not row[v]:
                        del row[v]
                changed = True
        return row

    def add(self, form: Form) -> None:
        row = self._reduce(form)
        if not row:
            return
        pivot = min(row, key=repr)
        inverse = pow(row[pivot], PRIME - 2, PRIME)
        row = {v: c * inverse % PRIME for v, c in row.items()}
        for other in self.rows.values():  # keep rows reduced against the new pivot
            coef = other.get(pivot, 0)
            if coef:
                for v, c in row.items():
                    other[v] = (other.get(v, 0) - coef * c) % PRIME
                    if not other[v]:
                        del other[v]
        self.rows[pivot] = row

    def contains(self, form: Form) -> bool:
        return not self._reduce(form)


def derivable(published: Iterable[Form], suppressed: Iterable[Form]) -> list[Form]:
    """The suppressed forms that the published ones determine."""
    span = Span()
    for form in published:
        span.add(form)
    return [form for form in suppressed if span.contains(form)]
