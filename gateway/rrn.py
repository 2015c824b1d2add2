"""Resident registration numbers: parsing, validation, masking.

Layout ``YYMMDD-SBBBBNC``. ``S`` (the 7th digit) gives the century and sex, and whether the
holder is a foreign resident. Numbers issued before October 2020 end in a check digit; later
ones end in random digits, so a failed checksum never makes a number invalid.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

Sex = Literal["MALE", "FEMALE"]

_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
_SHAPE = re.compile(r"^(\d{6})-?(\d{7})$")

# 7th digit -> (century, sex, foreign resident)
_CENTURY_DIGIT: dict[int, tuple[int, Sex, bool]] = {
    9: (1800, "MALE", False),
    0: (1800, "FEMALE", False),
    1: (1900, "MALE", False),
    2: (1900, "FEMALE", False),
    3: (2000, "MALE", False),
    4: (2000, "FEMALE", False),
    5: (1900, "MALE", True),
    6: (1900, "FEMALE", True),
    7: (2000, "MALE", True),
    8: (2000, "FEMALE", True),
}


class InvalidRRN(ValueError):
    """The text is not a possible resident registration number."""


@dataclass(frozen=True, slots=True)
class RRN:
    """A structurally valid RRN in canonical form ``YYMMDD-GNNNNNN``."""

    value: str
    birth_date: dt.date
    sex: Sex
    is_foreign: bool

    @property
    def check_digit_ok(self) -> bool:
        return check_digit_ok(self.value)

    def __str__(self) -> str:
        return self.value


def parse(text: str) -> RRN:
    """Parse ``YYMMDD-GNNNNNN`` or 13 bare digits; raise InvalidRRN with a reason."""
    match = _SHAPE.match(text.strip())
    if match is None:
        raise InvalidRRN("an RRN is 13 digits, written YYMMDD-GNNNNNN")
    front, back = match.groups()
    century_digit = int(back[0])
    century, sex, is_foreign = _CENTURY_DIGIT[century_digit]
    year = century + int(front[:2])
    try:
        birth_date = dt.date(year, int(front[2:4]), int(front[4:6]))
    except ValueError:
        raise InvalidRRN(f"{front} is not a real date of birth") from None
    if birth_date > dt.date.today():
        raise InvalidRRN(f"digit {century_digit} puts the birth in {year}, which is in the future")
    return RRN(f"{front}-{back}", birth_date, sex, is_foreign)


def is_valid(text: str) -> bool:
    try:
        parse(text)
    except InvalidRRN:
        return False
    return True


def check_digit(first_twelve: str) -> int:
    """The pre-October-2020 check digit for the first 12 digits."""
    digits = [int(c) for c in first_twelve if c.isdigit()]
    if len(digits) != 12:
        raise ValueError("need exactly 12 digits")
    total = sum(d * w for d, w in zip(digits, _WEIGHTS, strict=True))
    return (11 - total % 11) % 10


def check_digit_ok(text: str) -> bool:
    """True when the last digit matches the pre-2020 formula (informational only)."""
    digits = text.replace("-", "")
    return len(digits) == 13 and digits.isdigit() and check_digit(digits[:12]) == int(digits[12])


def mask(text: str, *, birth_date: bool = True, seventh_digit: bool = True) -> str:
    """``YYMMDD-G******`` at most: never more than the birth date and the 7th digit.

    ``birth_date=False`` hides the first six digits, ``seventh_digit=False`` the 7th (sex,
    century, foreign registration): ``******-*******`` shows nothing but the shape. Logs use
    the default. Anything that does not look like an RRN is masked whole, so a typo in a log
    line cannot leak a real number either.
    """
    digits = text.replace("-", "").strip()
    if len(digits) == 13 and digits.isdigit():
        front = digits[:6] if birth_date else "******"
        seventh = digits[6] if seventh_digit else "*"
        return f"{front}-{seventh}******"
    return "*" * min(len(text), 14)


def century_digit(birth_date: dt.date, sex: Sex, *, foreign: bool = False) -> int:
    """The 7th digit for a person born on ``birth_date``."""
    for digit, (century, digit_sex, digit_foreign) in _CENTURY_DIGIT.items():
        if (
            century <= birth_date.year < century + 100
            and digit_sex == sex
            and digit_foreign == foreign
        ):
            return digit
    raise ValueError(f"no RRN century digit for {birth_date.year}, {sex}, foreign={foreign}")
