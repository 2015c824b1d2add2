from __future__ import annotations

import datetime as dt

import pytest

from gateway import rrn
from gateway.logs import mask_rrns


@pytest.mark.parametrize(
    ("text", "birth", "sex", "foreign"),
    [
        ("940812-1001751", dt.date(1994, 8, 12), "MALE", False),
        ("900101-1234568", dt.date(1990, 1, 1), "MALE", False),
        ("9008121001751", dt.date(1990, 8, 12), "MALE", False),
        ("050301-4000000", dt.date(2005, 3, 1), "FEMALE", False),
        ("891231-9123456", dt.date(1889, 12, 31), "MALE", False),
        ("891231-0123456", dt.date(1889, 12, 31), "FEMALE", False),
        ("750101-5123456", dt.date(1975, 1, 1), "MALE", True),
        ("750101-6123456", dt.date(1975, 1, 1), "FEMALE", True),
        ("150101-7123456", dt.date(2015, 1, 1), "MALE", True),
        ("150101-8123456", dt.date(2015, 1, 1), "FEMALE", True),
        ("000229-3123456", dt.date(2000, 2, 29), "MALE", False),
    ],
)
def test_valid_numbers_parse(text: str, birth: dt.date, sex: str, foreign: bool) -> None:
    parsed = rrn.parse(text)
    assert (parsed.birth_date, parsed.sex, parsed.is_foreign) == (birth, sex, foreign)
    assert parsed.value == f"{text.replace('-', '')[:6]}-{text.replace('-', '')[6:]}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("940812-100175", "13 digits"),  # too short
        ("940812-10017511", "13 digits"),  # too long
        ("94081-21001751", "13 digits"),  # hyphen misplaced
        ("94o812-1001751", "13 digits"),  # not a digit
        ("", "13 digits"),
        ("941312-1001751", "not a real date"),  # month 13
        ("940230-1001751", "not a real date"),  # 30 February
        ("010229-3123456", "not a real date"),  # 2001 is no leap year
        ("990101-3123456", "future"),  # 3 means born 2000+: 2099
        ("991231-7123456", "future"),  # foreign, born 2000+: 2099
    ],
)
def test_invalid_numbers_are_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(rrn.InvalidRRN, match=reason):
        rrn.parse(text)
    assert not rrn.is_valid(text)


def test_check_digit_of_known_numbers() -> None:
    assert rrn.check_digit("940812100175") == 1
    assert rrn.check_digit("900101123456") == 8
    assert rrn.check_digit_ok("940812-1001751")
    assert rrn.check_digit_ok("900101-1234568")
    assert not rrn.check_digit_ok("900101-1234567")


def test_a_failed_checksum_does_not_make_a_number_invalid() -> None:
    # Numbers issued from October 2020 end in random digits.
    assert not rrn.check_digit_ok("210315-3987654")
    assert rrn.is_valid("210315-3987654")


def test_masking() -> None:
    assert rrn.mask("711231-1234567") == "711231-1******"
    assert rrn.mask("7112311234567") == "711231-1******"
    assert rrn.mask("not an rrn") == "**********"
    assert mask_rrns("looked up 940812-1001751 and 9001011234568.") == (
        "looked up 940812-1****** and 900101-1******."
    )


def test_century_digit_round_trips() -> None:
    for birth, sex, foreign in [
        (dt.date(1888, 1, 1), "MALE", False),
        (dt.date(1999, 1, 1), "FEMALE", False),
        (dt.date(2020, 1, 1), "MALE", True),
    ]:
        digit = rrn.century_digit(birth, sex, foreign=foreign)  # type: ignore[arg-type]
        parsed = rrn.parse(f"{birth:%y%m%d}-{digit}000000")
        assert (parsed.birth_date, parsed.sex, parsed.is_foreign) == (birth, sex, foreign)
