"""Deterministic synthetic residents for the demo agencies, bulk-loaded with binary COPY.

``generate`` is pure: the same ``residents`` and ``seed`` always give the same rows, whatever the
chunk size. ``seed`` creates the demo schema, optionally empties it, loads what ``generate``
yields (one connection per table, generation overlapped with loading) and indexes afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.resources
import math
import random
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gateway.rrn import Sex, century_digit, check_digit

__all__ = [
    "REFERENCE_DATE",
    "TABLES",
    "Batch",
    "SeedSummary",
    "generate",
    "seed",
]

# "Today" for every age computed here, so output never depends on when it runs.
REFERENCE_DATE = dt.date(2026, 1, 1)
CHECK_DIGIT_CUTOFF = dt.date(2020, 10, 5)
NHIS_START = dt.date(2000, 7, 1)
TAX_YEARS = range(2021, 2026)
PENSION_AGE = 63
DEFAULT_CHUNK = 25_000

HouseholdRow = tuple[str, str, str, str, str, str, dt.date]
ResidentRow = tuple[str, str, dt.date, str, bool, str, str, str]
EnrolmentRow = tuple[str, str, dt.date, int, int, str | None]
SubscriptionRow = tuple[str, str, int, int | None, int | None, dt.date | None]
TaxReturnRow = tuple[str, int, int, int, int, int]
ServiceRecordRow = tuple[str, str, str | None, dt.date | None, dt.date | None, str | None]

# (schema, table, columns in the order of the row tuples above), in Batch field order.
TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("registry", "households",
     ("id", "head_rrn", "region", "city", "street", "postal_code", "registered_on")),
    ("registry", "residents",
     ("rrn", "name", "birth_date", "sex", "is_foreign", "status", "household_id", "relationship")),
    ("nhis", "enrolments",
     ("rrn", "insured_type", "enrolled_on", "monthly_premium", "dependents", "insured_by")),
    ("nps", "subscriptions",
     ("rrn", "subscriber_type", "months_contributed", "expected_monthly_benefit",
      "monthly_benefit", "benefit_since")),
    ("nts", "tax_returns",
     ("rrn", "tax_year", "reported_income", "tax_assessed", "tax_paid", "arrears")),
    ("mma", "service_records",
     ("rrn", "status", "branch", "enlisted_on", "discharged_on", "exemption_reason")),
)  # fmt: skip

_SECONDARY_INDEXES = (
    "create index if not exists residents_household_idx on registry.residents (household_id)",
    "create index if not exists enrolments_insured_by_idx on nhis.enrolments (insured_by)",
)


@dataclass(frozen=True)
class SeedSummary:
    residents: int
    households: int
    insurance: int
    tax_returns: int
    pensions: int
    military: int
    seconds: float


@dataclass(slots=True)
class Batch:
    """Rows for each table, tuples in ``TABLES`` column order; households are never split."""

    households: list[HouseholdRow] = field(default_factory=list)
    residents: list[ResidentRow] = field(default_factory=list)
    enrolments: list[EnrolmentRow] = field(default_factory=list)
    subscriptions: list[SubscriptionRow] = field(default_factory=list)
    tax_returns: list[TaxReturnRow] = field(default_factory=list)
    service_records: list[ServiceRecordRow] = field(default_factory=list)

    def tables(self) -> tuple[Sequence[Sequence[object]], ...]:
        """The row lists in ``TABLES`` order."""
        return (
            self.households,
            self.residents,
            self.enrolments,
            self.subscriptions,
            self.tax_returns,
            self.service_records,
        )


# --------------------------------------------------------------------------------------------
# Reference data


def _cumulative(weights: Sequence[float]) -> list[float]:
    """Normalised running totals for ``bisect_right(cum, random())``."""
    total = float(sum(weights))
    running = 0.0
    cum = []
    for weight in weights:
        running += weight
        cum.append(running / total)
    cum[-1] = 1.0
    return cum


def _age_table(spans: Sequence[tuple[int, int, float]]) -> tuple[list[int], list[float]]:
    """Ages from ``(first, last, weight)`` spans, the weight spread evenly over the span."""
    ages: list[int] = []
    weights: list[float] = []
    for first, last, weight in spans:
        for age in range(first, last + 1):
            ages.append(age)
            weights.append(weight / (last - first + 1))
    return ages, _cumulative(weights)


# Households by size (Statistics Korea, 2023: 35.5% single, 28.8% two, 19.2% three, ...).
_SIZE_CUM = _cumulative([35.5, 28.8, 19.2, 13.0, 2.6, 0.5, 0.25, 0.15])
_FOREIGN_SIZE_CUM = _cumulative([55, 25, 12, 8])
_FOREIGN_HOUSEHOLD_SHARE = 0.028
_FOREIGN_SPOUSE_SHARE = 0.05

_SINGLE_AGES = _age_table([(19, 29, 24), (30, 39, 17), (40, 49, 12), (50, 59, 14),
                           (60, 69, 14), (70, 79, 11), (80, 95, 8)])  # fmt: skip
_COUPLE_AGES = _age_table([(25, 34, 10), (35, 49, 10), (50, 59, 20), (60, 69, 28),
                           (70, 79, 22), (80, 92, 10)])  # fmt: skip
_FAMILY_AGES = _age_table([(28, 34, 12), (35, 44, 33), (45, 54, 33), (55, 64, 16), (65, 75, 6)])
_CARER_AGES = _age_table([(25, 44, 40), (45, 60, 60)])
_SHARER_AGES = _age_table([(20, 29, 50), (30, 45, 50)])
_FOREIGN_AGES = _age_table([(20, 29, 35), (30, 39, 33), (40, 49, 18), (50, 65, 14)])

# Region -> (population in thousands, birthplace-code prefixes, cities, roads).
# A city is (name, 3-digit postal prefixes); prefixes follow the 2015 national postal zones.
_REGIONS: tuple[tuple[str, int, tuple[int, ...], tuple[tuple[str, tuple[str, ...]], ...],
                      tuple[str, ...]], ...] = (
    ("Seoul", 9386, tuple(range(0, 9)),
     (("Gangnam-gu", ("061", "062", "063")), ("Songpa-gu", ("055", "056", "057")),
      ("Gangseo-gu", ("077", "078")), ("Nowon-gu", ("016", "017", "018")),
      ("Mapo-gu", ("039", "040", "041")), ("Gwanak-gu", ("087", "088")),
      ("Yeongdeungpo-gu", ("072", "073", "074")), ("Jongno-gu", ("030", "031")),
      ("Eunpyeong-gu", ("033", "034", "035")), ("Seocho-gu", ("065", "066", "067"))),
     ("Teheran-ro", "Gangnam-daero", "Olympic-ro", "Dosan-daero", "Sejong-daero", "World Cup-ro",
      "Yanghwa-ro", "Dongil-ro", "Songpa-daero", "Gwanak-ro", "Yeouidaebang-ro",
      "Eunpyeong-ro")),
    ("Busan", 3276, tuple(range(9, 13)),
     (("Haeundae-gu", ("480", "481")), ("Busanjin-gu", ("471", "472", "473")),
      ("Nam-gu", ("484", "485")), ("Saha-gu", ("492", "493")), ("Dongnae-gu", ("477", "478")),
      ("Suyeong-gu", ("482", "483"))),
     ("Jungang-daero", "Haeundaehaebyeon-ro", "Suyeong-ro", "Gaya-daero", "Dongnae-ro",
      "Centum-ro", "Nakdong-daero")),
    ("Daegu", 2365, (67, 68, 69, 76),
     (("Suseong-gu", ("420", "421")), ("Dalseo-gu", ("426", "427")), ("Buk-gu", ("414", "415")),
      ("Jung-gu", ("419",)), ("Dong-gu", ("410", "411"))),
     ("Dalgubeol-daero", "Gukchaebosang-ro", "Dongdaegu-ro", "Suseong-ro", "Sincheon-daero")),
    ("Incheon", 3020, tuple(range(13, 16)),
     (("Namdong-gu", ("215", "216")), ("Yeonsu-gu", ("219", "220")),
      ("Bupyeong-gu", ("213", "214")), ("Seo-gu", ("226", "227")),
      ("Michuhol-gu", ("221", "222"))),
     ("Incheon-daero", "Songdogwahak-ro", "Bupyeong-daero", "Gyeongin-ro", "Inha-ro")),
    ("Gwangju", 1413, (55, 56),
     (("Buk-gu", ("610", "611")), ("Gwangsan-gu", ("621", "622")), ("Seo-gu", ("619", "620")),
      ("Nam-gu", ("617",)), ("Dong-gu", ("614",))),
     ("Mudeung-ro", "Sangmu-daero", "Geumnam-ro", "Cheomdangwagi-ro", "Bitgoeul-ro")),
    ("Daejeon", 1443, (40,),
     (("Seo-gu", ("352", "353")), ("Yuseong-gu", ("341", "342")), ("Jung-gu", ("349", "350")),
      ("Dong-gu", ("345", "346")), ("Daedeok-gu", ("343", "344"))),
     ("Daedeok-daero", "Hanbat-daero", "Daehak-ro", "Gyejok-ro", "Dunsan-ro")),
    ("Ulsan", 1098, (85,),
     (("Nam-gu", ("446", "447")), ("Jung-gu", ("444", "445")), ("Buk-gu", ("442", "443")),
      ("Dong-gu", ("440", "441")), ("Ulju-gun", ("448", "449"))),
     ("Samsan-ro", "Bukbusunhwando-ro", "Taehwa-ro", "Munsu-ro", "Bangeojin-sunhwando-ro")),
    ("Sejong", 388, (44, 96),
     (("Sejong-si", ("300", "301")),),
     ("Hannuri-daero", "Dasom-ro", "Galmae-ro", "Jochiwon-ro", "Nareum-ro")),
    ("Gyeonggi-do", 13690, tuple(range(16, 26)),
     (("Suwon-si", ("162", "163", "164", "165")), ("Seongnam-si", ("134", "135", "136")),
      ("Goyang-si", ("103", "104", "105")), ("Yongin-si", ("168", "169", "170")),
      ("Bucheon-si", ("144", "145", "146")), ("Hwaseong-si", ("183", "184", "185")),
      ("Ansan-si", ("153", "154", "155")), ("Namyangju-si", ("121", "122")),
      ("Anyang-si", ("139", "140")), ("Pyeongtaek-si", ("177", "178", "179"))),
     ("Gyeongsu-daero", "Jungbu-daero", "Pangyo-ro", "Jungang-ro", "Suin-ro", "Ilsan-ro",
      "Bundang-ro", "Dongtan-daero", "Gyeonggi-daero", "Gwanggyo-ro")),
    ("Gangwon-do", 1522, tuple(range(26, 35)),
     (("Chuncheon-si", ("243", "244")), ("Wonju-si", ("263", "264")),
      ("Gangneung-si", ("254", "255")), ("Sokcho-si", ("248",)), ("Donghae-si", ("257",))),
     ("Gangwon-daero", "Wonil-ro", "Gyeonggang-ro", "Jungang-ro", "Seoyang-ro")),
    ("Chungcheongbuk-do", 1591, tuple(range(35, 40)),
     (("Cheongju-si", ("283", "284", "285")), ("Chungju-si", ("273", "274")),
      ("Jecheon-si", ("271",)), ("Eumseong-gun", ("277",))),
     ("Sangdang-ro", "Jikji-daero", "Chungwon-daero", "Gagyeong-ro", "Sajik-daero")),
    ("Chungcheongnam-do", 2130, (41, 42, 43, 45, 46, 47),
     (("Cheonan-si", ("310", "311", "312")), ("Asan-si", ("314", "315")),
      ("Seosan-si", ("319", "320")), ("Dangjin-si", ("317",)), ("Gongju-si", ("325",))),
     ("Beonyeong-ro", "Chungmu-ro", "Oncheon-daero", "Seohae-ro", "Ssangyong-daero")),
    ("Jeollabuk-do", 1751, tuple(range(48, 55)),
     (("Jeonju-si", ("548", "549", "550")), ("Iksan-si", ("545", "546")),
      ("Gunsan-si", ("540", "541")), ("Jeongeup-si", ("561",))),
     ("Girin-daero", "Baekje-daero", "Muwang-ro", "Palbong-ro", "Songcheonjungang-ro")),
    ("Jeollanam-do", 1796, tuple(range(57, 65)),
     (("Suncheon-si", ("579", "580")), ("Yeosu-si", ("596", "597")),
      ("Mokpo-si", ("586", "587")), ("Gwangyang-si", ("577",)), ("Naju-si", ("582",))),
     ("Yeonhyang-ro", "Yeoseo-ro", "Yeongsan-ro", "Jungang-ro", "Baekgang-ro")),
    ("Gyeongsangbuk-do", 2541, (70, 71, 72, 73, 74, 75, 77, 78, 79, 80, 81),
     (("Pohang-si", ("375", "376", "377")), ("Gumi-si", ("392", "393")),
      ("Gyeongju-si", ("380", "381")), ("Andong-si", ("367",)), ("Gyeongsan-si", ("385",))),
     ("Saecheonnyeon-daero", "Songjeong-ro", "Taejong-ro", "Gyeongdong-ro", "Gumi-daero")),
    ("Gyeongsangnam-do", 3252, (82, 83, 84, 86, 87, 88, 89, 90, 91, 92),
     (("Changwon-si", ("511", "512", "513", "514")), ("Gimhae-si", ("508", "509")),
      ("Jinju-si", ("526", "527")), ("Yangsan-si", ("505", "506")), ("Geoje-si", ("532", "533"))),
     ("Changwon-daero", "Gimhae-daero", "Jinju-daero", "Yangsan-daero", "Geoje-daero",
      "Wonijungang-ro")),
    ("Jeju-do", 675, (93, 94, 95),
     (("Jeju-si", ("631", "632", "633")), ("Seogwipo-si", ("635", "636", "637"))),
     ("Nohyeong-ro", "Yeonbuk-ro", "Jungang-ro", "Iljuseo-ro", "Beonyeong-ro")),
)  # fmt: skip
_REGION_CUM = _cumulative([region[1] for region in _REGIONS])

# Surnames by share of the population (2015 census).
_SURNAMES = (
    ("Kim", 21.6), ("Lee", 14.8), ("Park", 8.5), ("Choi", 4.7), ("Jung", 4.3), ("Kang", 2.4),
    ("Cho", 2.1), ("Yoon", 2.1), ("Jang", 2.0), ("Lim", 1.7), ("Han", 1.5), ("Oh", 1.5),
    ("Seo", 1.5), ("Shin", 1.4), ("Kwon", 1.4), ("Hwang", 1.4), ("Ahn", 1.4), ("Song", 1.3),
    ("Jeon", 1.1), ("Hong", 1.1), ("Yoo", 1.1), ("Ko", 0.9), ("Moon", 0.9), ("Yang", 0.9),
    ("Son", 0.9), ("Bae", 0.8), ("Baek", 0.8), ("Heo", 0.7), ("Nam", 0.6), ("Noh", 0.6),
    ("Ha", 0.5), ("Kwak", 0.4), ("Sung", 0.4), ("Cha", 0.4), ("Joo", 0.4), ("Woo", 0.4),
    ("Min", 0.3), ("Ryu", 0.3), ("Na", 0.3), ("Jin", 0.3), ("Ji", 0.3), ("Eom", 0.3),
    ("Chae", 0.3), ("Won", 0.3), ("Cheon", 0.2), ("Bang", 0.2), ("Kong", 0.2), ("Hyun", 0.2),
    ("Ham", 0.2), ("Yeo", 0.2), ("Byun", 0.2),
)  # fmt: skip
_SURNAME_NAMES = tuple(name for name, _ in _SURNAMES)
_SURNAME_CUM = _cumulative([share for _, share in _SURNAMES])

# Given names by birth cohort (first year of the cohort), then (male, female).
_GIVEN_NAMES: tuple[tuple[int, tuple[str, ...], tuple[str, ...]], ...] = (
    (1900,
     ("Young-ho", "Young-soo", "Young-sik", "Sang-hoon", "Jung-soo", "Sung-ho", "Kwang-soo",
      "Chul-soo", "Byung-chul", "Jong-ho", "Dong-soo", "Man-sik", "Jae-ho", "Myung-soo",
      "Ki-young", "Soon-chul"),
     ("Young-ja", "Soon-ja", "Jung-sook", "Mi-sook", "Kyung-ja", "Young-sook", "Ok-soon",
      "Mal-soon", "Jung-hee", "Myung-ja", "Sook-ja", "Young-hee", "Kyung-hee", "Soon-hee",
      "Hye-sook", "Jung-ja")),
    (1965,
     ("Jung-hoon", "Sung-min", "Sang-woo", "Dong-hyun", "Ji-hoon", "Jae-hyun", "Jun-ho",
      "Seung-hyun", "Sung-hoon", "Min-soo", "Hyun-woo", "Young-jin", "Jin-woo", "Sang-hyun",
      "Tae-hoon", "Kyung-soo"),
     ("Ji-young", "Eun-jung", "Mi-kyung", "Hye-jin", "Eun-young", "Sun-young", "Ji-hye",
      "Mi-young", "Eun-hee", "Hyun-jung", "Ji-eun", "Soo-jin", "Yoon-jung", "Jung-eun",
      "Mi-jung", "Hye-young")),
    (1985,
     ("Hyun-woo", "Ji-hoon", "Dong-hyun", "Jun-young", "Min-jae", "Seung-min", "Jae-won",
      "Sung-jin", "Ji-hwan", "Tae-yang", "Min-hyuk", "Jun-hyuk", "Seung-woo", "Jin-young",
      "Woo-hyun", "Sang-min"),
     ("Ji-eun", "Su-bin", "Ye-jin", "Min-ji", "Seo-yeon", "Ji-won", "Yu-jin", "Hye-won",
      "Da-eun", "Ji-hye", "Su-jin", "Eun-ji", "Seo-hyun", "Ji-min", "Ha-eun", "Yoon-ah")),
    (2005,
     ("Min-jun", "Seo-jun", "Do-yun", "Ye-jun", "Si-woo", "Ha-jun", "Ju-won", "Ji-ho", "Ji-hu",
      "Jun-woo", "Jun-seo", "Do-hyun", "Geon-woo", "Woo-jin", "Seon-woo", "Eun-woo", "Yu-jun",
      "I-jun", "Ji-an", "Si-hoo"),
     ("Seo-yeon", "Seo-yun", "Ji-woo", "Seo-hyun", "Min-seo", "Ha-eun", "Ha-yoon", "Yun-seo",
      "Ji-yu", "Chae-won", "Ji-min", "Su-a", "Ji-a", "Da-eun", "Eun-seo", "Ye-eun", "A-rin",
      "Si-a", "Ha-rin", "Yu-na")),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Nationality:
    families: tuple[str, ...]
    male: tuple[str, ...]
    female: tuple[str, ...]
    family_first: bool
    wife_takes_family: bool
    feminine_suffix: str = ""

    def name(self, family: str, male: bool, given: str) -> str:
        if not male and self.feminine_suffix:
            family += self.feminine_suffix
        return f"{family} {given}" if self.family_first else f"{given} {family}"


_NATIONALITIES = (
    _Nationality(("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu",
                  "Jin", "Piao"),
                 ("Wei", "Hao", "Lei", "Jun", "Tao", "Qiang", "Ming", "Jian", "Bo", "Yong"),
                 ("Fang", "Jing", "Min", "Yan", "Xiu", "Li", "Na", "Hui", "Mei", "Xia"),
                 family_first=True, wife_takes_family=False),
    _Nationality(("Nguyen", "Tran", "Le", "Pham", "Hoang", "Vu", "Dang", "Bui", "Do", "Ngo"),
                 ("Van An", "Van Hung", "Minh Tuan", "Duc Anh", "Van Nam", "Quang Huy",
                  "Thanh Son", "Van Long"),
                 ("Thi Lan", "Thi Hoa", "Thi Mai", "Thu Trang", "Ngoc Anh", "Thi Huong",
                  "Thi Thu", "Bich Ngoc"),
                 family_first=True, wife_takes_family=False),
    _Nationality(("Srisuk", "Saetang", "Wongsa", "Chaiyaporn", "Boonmee", "Somboon"),
                 ("Somchai", "Somsak", "Anan", "Kittisak", "Narong", "Prasert"),
                 ("Malee", "Siriporn", "Nok", "Ploy", "Kanya", "Pranee"),
                 family_first=False, wife_takes_family=True),
    _Nationality(("Smith", "Johnson", "Brown", "Miller", "Wilson", "Taylor", "Anderson",
                  "Clark"),
                 ("John", "Michael", "David", "James", "Robert", "Daniel", "Thomas", "Chris"),
                 ("Sarah", "Emily", "Jessica", "Jennifer", "Laura", "Rachel", "Anna", "Emma"),
                 family_first=False, wife_takes_family=True),
    _Nationality(("Karimov", "Rakhimov", "Yusupov", "Tashkentov", "Aliyev", "Nazarov"),
                 ("Aziz", "Timur", "Bekzod", "Sardor", "Rustam", "Jasur"),
                 ("Dilnoza", "Gulnora", "Malika", "Nilufar", "Zarina", "Shahnoza"),
                 family_first=False, wife_takes_family=True, feminine_suffix="a"),
    _Nationality(("Santos", "Reyes", "Cruz", "Bautista", "Garcia", "Mendoza", "Ramos"),
                 ("Jose", "Mark", "Paolo", "Rafael", "Miguel", "Carlo"),
                 ("Maria", "Angelica", "Kristine", "Joy", "Rowena", "Marites"),
                 family_first=False, wife_takes_family=True),
    _Nationality(("Gurung", "Tamang", "Shrestha", "Rai", "Magar", "Thapa"),
                 ("Ram", "Bikash", "Suman", "Prakash", "Rajesh", "Dipak"),
                 ("Sita", "Gita", "Sunita", "Anita", "Puja", "Sabina"),
                 family_first=False, wife_takes_family=True),
)  # fmt: skip
# Foreign residents by nationality, and foreign spouses of Koreans by nationality.
_NATIONALITY_CUM = _cumulative([40, 20, 8, 8, 9, 7, 8])
_SPOUSE_NATIONALITY_CUM = _cumulative([35, 40, 5, 5, 2, 13, 0])

_HEAD, _SPOUSE, _CHILD, _PARENT, _SIBLING, _OTHER = (
    "HEAD", "SPOUSE", "CHILD", "PARENT", "SIBLING", "OTHER")  # fmt: skip
_ACTIVE, _DECEASED, _EMIGRATED = "ACTIVE", "DECEASED", "EMIGRATED"
_EMPLOYEE, _SELF_EMPLOYED, _DEPENDENT = "EMPLOYEE", "SELF_EMPLOYED", "DEPENDENT"

# NPS: the average monthly income of all subscribers ("A value", 2024) and the bounds of the
# income a contribution is levied on.
_NPS_A = 2_989_237
_NPS_INCOME_FLOOR, _NPS_INCOME_CAP = 390_000, 6_170_000

# MMA branches: (name, share, months of service).
_BRANCHES = (("ARMY", 70, 18), ("AIR_FORCE", 10, 21), ("NAVY", 6, 20), ("MARINES", 4, 18),
             ("SOCIAL_SERVICE", 10, 21))  # fmt: skip
_BRANCH_CUM = _cumulative([branch[1] for branch in _BRANCHES])
_BRANCH_DAYS = tuple(round(branch[2] * 30.44) for branch in _BRANCHES)
_ENLIST_AGES = (19, 20, 21, 22, 23, 24, 25, 26, 27, 28)
_ENLIST_AGE_CUM = _cumulative([8, 30, 25, 15, 8, 5, 4, 2, 2, 1])
_EXEMPTIONS = ("medical grade 5", "medical grade 6", "hardship (sole provider)",
               "dual nationality", "long-term overseas residence", "prison sentence")  # fmt: skip
_EXEMPTION_CUM = _cumulative([45, 20, 15, 8, 7, 5])
_EXEMPT_SHARE = 0.05

# Income tax brackets on taxable income: (upper bound, rate); base tax accumulated below.
_BRACKETS = ((14e6, 0.06), (50e6, 0.15), (88e6, 0.24), (150e6, 0.35), (300e6, 0.38),
             (500e6, 0.40), (1e9, 0.42), (math.inf, 0.45))  # fmt: skip


def _bracket_table() -> tuple[tuple[float, float, float, float], ...]:
    table = []
    lower, base = 0.0, 0.0
    for upper, rate in _BRACKETS:
        table.append((lower, upper, rate, base))
        base += (upper - lower) * rate
        lower = upper
    return tuple(table)


_BRACKET_TABLE = _bracket_table()


def _income_tax(income: int) -> int:
    taxable = income * 0.65 - 3_000_000  # rough employment-income and personal deductions
    if taxable <= 0:
        return 0
    for lower, upper, rate, base in _BRACKET_TABLE:
        if taxable <= upper:
            return int(base + (taxable - lower) * rate) // 10 * 10
    raise AssertionError("the last bracket is unbounded")


# Per day of birth (index 0 = 1925-01-01): the date, its "YYMMDD" and the age on REFERENCE_DATE.
_FIRST_BIRTH_YEAR = REFERENCE_DATE.year - 101
_DAY0 = dt.date(_FIRST_BIRTH_YEAR, 1, 1).toordinal()
_DATES = [dt.date.fromordinal(o) for o in range(_DAY0, REFERENCE_DATE.toordinal())]
_YYMMDD = [d.strftime("%y%m%d") for d in _DATES]
_AGES = [
    REFERENCE_DATE.year - d.year - ((d.month, d.day) > (REFERENCE_DATE.month, REFERENCE_DATE.day))
    for d in _DATES
]
_CUTOFF_INDEX = CHECK_DIGIT_CUTOFF.toordinal() - _DAY0
_REFERENCE_ORDINAL = REFERENCE_DATE.toordinal()
# Birth year -> (first day index, days in year); a person "aged a" is born in REFERENCE year-1-a.
_YEAR_SPANS = {
    year: (dt.date(year, 1, 1).toordinal() - _DAY0, 366 if year % 4 == 0 else 365)
    for year in range(_FIRST_BIRTH_YEAR, REFERENCE_DATE.year)
}
# First day of each month, keyed by year * 12 + month - 1.
_MONTH_FIRST = {y * 12 + m - 1: dt.date(y, m, 1) for y in range(1925, 2027) for m in range(1, 13)}
_REFERENCE_MONTH = REFERENCE_DATE.year * 12 + REFERENCE_DATE.month - 1

# Annual probability-ish chance of appearing as deceased / emigrated in the registry, by age.
_DECEASED_BY_AGE = [
    0.002 if a < 40 else 0.006 if a < 60 else 0.02 if a < 70 else 0.05 if a < 80 else 0.14
    for a in range(102)
]
_EMIGRATED_BY_AGE = [0.003 if a < 20 else 0.012 if a < 50 else 0.004 for a in range(102)]
# Share in work, by age, for (female, male).
_WORKING_BY_AGE = [
    (0.0, 0.0) if a < 18 else (0.15, 0.15) if a < 20 else (0.45, 0.42) if a < 25
    else (0.7, 0.72) if a < 30 else (0.66, 0.91) if a < 60 else (0.5, 0.68) if a < 65
    else (0.28, 0.4) if a < 75 else (0.08, 0.12)
    for a in range(102)
]  # fmt: skip
# Median annual earned income (KRW, 2025) by age.
_MEDIAN_INCOME_BY_AGE = [
    14e6 if a < 20 else 26e6 if a < 25 else 34e6 if a < 30 else 44e6 if a < 40
    else 52e6 if a < 50 else 50e6 if a < 60 else 32e6 if a < 65 else 20e6
    for a in range(102)
]  # fmt: skip
_INCOME_GROWTH = {year: 1.03 ** (year - TAX_YEARS[-1]) for year in TAX_YEARS}


# --------------------------------------------------------------------------------------------
# Generation

# A household member while building: (day index of birth, male, relationship, name, foreign).
_Member = tuple[int, bool, str, str, bool]


class _Generator:
    """Builds households one at a time from a single ``random.Random`` stream."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rand = self.rng.random
        self.gauss = self.rng.gauss
        self.seen: set[str] = set()
        self.digit7: dict[tuple[bool, bool, bool], str] = {}
        for millennial in (False, True):
            for male in (False, True):
                for foreign in (False, True):
                    sex: Sex = "MALE" if male else "FEMALE"
                    born = dt.date(2000 if millennial else 1999, 1, 1)
                    self.digit7[millennial, male, foreign] = str(
                        century_digit(born, sex, foreign=foreign)
                    )

    # -- small helpers -------------------------------------------------------------------------

    def pick(self, items: Sequence[str]) -> str:
        return items[int(self.rand() * len(items))]

    def age(self, table: tuple[list[int], list[float]]) -> int:
        ages, cum = table
        return ages[bisect_right(cum, self.rand())]

    def birth(self, age: int) -> int:
        """A day index for someone who turns ``age`` during the year before REFERENCE_DATE."""
        first, days = _YEAR_SPANS[REFERENCE_DATE.year - 1 - min(max(age, 0), 100)]
        return first + int(self.rand() * days)

    def surname(self) -> str:
        return _SURNAME_NAMES[bisect_right(_SURNAME_CUM, self.rand())]

    def korean_name(self, surname: str, male: bool, day: int) -> str:
        year = _DATES[day].year
        cohort = _GIVEN_NAMES[0]
        for candidate in _GIVEN_NAMES:
            if year >= candidate[0]:
                cohort = candidate
        return f"{surname} {self.pick(cohort[1] if male else cohort[2])}"

    def foreign_name(self, nationality: _Nationality, family: str, male: bool) -> str:
        given = self.pick(nationality.male if male else nationality.female)
        return nationality.name(family, male, given)

    # -- one household -------------------------------------------------------------------------

    def members(self, size: int) -> list[_Member]:
        rand = self.rand
        foreign = rand() < _FOREIGN_HOUSEHOLD_SHARE
        nationality = _NATIONALITIES[bisect_right(_NATIONALITY_CUM, rand())] if foreign else None
        if foreign:
            size = min(size, len(_FOREIGN_SIZE_CUM))
            size = min(size, 1 + bisect_right(_FOREIGN_SIZE_CUM, rand()))

        spouse = parents = others = 0
        if size == 1:
            head_age = self.age(_FOREIGN_AGES if foreign else _SINGLE_AGES)
            head_male = rand() < (0.55 if head_age < 60 else 0.32)
        elif size == 2:
            r = rand()
            if r < 0.62:
                spouse, head_age = 1, self.age(_COUPLE_AGES)
            elif r < 0.82:
                head_age = self.age(_FAMILY_AGES)
            elif r < 0.92:
                parents, head_age = 1, self.age(_CARER_AGES)
            else:
                others, head_age = 1, self.age(_SHARER_AGES)
            head_male = rand() < (0.78 if spouse else 0.4)
        else:
            spouse = 1 if rand() < 0.86 else 0
            head_age = self.age(_FAMILY_AGES)
            head_male = rand() < (0.8 if spouse else 0.3)
            if size >= 4 and head_age <= 70 and rand() < (0.1 if size == 4 else 0.35):
                parents = 2 if size >= 6 and rand() < 0.5 else 1
            if rand() < 0.06:
                others = 1
            while size - 1 - spouse - parents - others < 1 and (others or parents):
                if others:
                    others -= 1
                else:
                    parents -= 1
        if foreign:
            parents = others = 0
        children = size - 1 - spouse - parents - others
        if children:
            head_age = max(head_age, 21)

        head_day = self.birth(head_age)
        if nationality is not None:
            family = self.pick(nationality.families)
            head_name = self.foreign_name(nationality, family, head_male)
        else:
            family = self.surname()
            head_name = self.korean_name(family, head_male, head_day)
        members: list[_Member] = [(head_day, head_male, _HEAD, head_name, foreign)]

        parent_ages = [head_age]
        child_family = family
        if spouse:
            gap = int(rand() * 9) - 2  # husbands are usually a little older
            spouse_age = head_age - gap if head_male else head_age + gap
            spouse_age = min(max(spouse_age, 21), 100)
            parent_ages.append(spouse_age)
            spouse_day = self.birth(spouse_age)
            spouse_male = not head_male
            if nationality is not None:
                name = (
                    self.foreign_name(nationality, family, spouse_male)
                    if nationality.wife_takes_family
                    else self.foreign_name(
                        nationality, self.pick(nationality.families), spouse_male
                    )
                )
                members.append((spouse_day, spouse_male, _SPOUSE, name, True))
            elif rand() < _FOREIGN_SPOUSE_SHARE:
                spouse_nat = _NATIONALITIES[bisect_right(_SPOUSE_NATIONALITY_CUM, rand())]
                name = self.foreign_name(spouse_nat, self.pick(spouse_nat.families), spouse_male)
                members.append((spouse_day, spouse_male, _SPOUSE, name, True))
            else:
                spouse_surname = self.surname()
                if spouse_male:
                    child_family = spouse_surname  # children take the father's surname
                name = self.korean_name(spouse_surname, spouse_male, spouse_day)
                members.append((spouse_day, spouse_male, _SPOUSE, name, False))

        # Children were born when each parent was 20-45: with whole-year ages that means
        # max(parents) - 45 <= child <= min(parents) - 21.
        youngest = max(max(parent_ages) - 45, 0)
        oldest = max(min(parent_ages) - 21, youngest)
        names = {head_name}
        for _ in range(children):
            # Skewed towards older children: Korean families are small and births are few.
            age = youngest + int(math.sqrt(rand()) * (oldest - youngest + 1))
            day = self.birth(age)
            male = rand() < 0.51
            for _ in range(5):  # siblings do not share a given name
                if nationality is not None:
                    name = self.foreign_name(nationality, family, male)
                else:
                    name = self.korean_name(child_family, male, day)
                if name not in names:
                    break
            names.add(name)
            members.append((day, male, _CHILD, name, foreign))

        if parents:
            # The head's parents were 20-45 at the head's birth, fathers a little older.
            mother_age = min(head_age + 21 + int(rand() * 20), 100)
            sexes = (True, False) if parents == 2 else (rand() < 0.35,)  # widows outnumber widowers
            for male in sexes:
                day = self.birth(min(mother_age + int(rand() * 4), 100) if male else mother_age)
                name = self.korean_name(family if male else self.surname(), male, day)
                members.append((day, male, _PARENT, name, False))

        for _ in range(others):
            male = rand() < 0.5
            if rand() < 0.6:
                day = self.birth(max(head_age + int(rand() * 17) - 8, 15))
                members.append((day, male, _SIBLING, self.korean_name(family, male, day), False))
            else:
                day = self.birth(self.age(_SHARER_AGES))
                name = self.korean_name(self.surname(), male, day)
                members.append((day, male, _OTHER, name, False))
        return members

    def rrn(self, day: int, male: bool, foreign: bool, birthplaces: tuple[int, ...]) -> str:
        rand = self.rand
        prefix = f"{_YYMMDD[day]}-{self.digit7[_DATES[day].year >= 2000, male, foreign]}"
        while True:
            if foreign or day >= _CUTOFF_INDEX:
                number = f"{prefix}{int(rand() * 1_000_000):06d}"
            else:
                if rand() < 0.75:
                    place = birthplaces[int(rand() * len(birthplaces))]
                else:  # born elsewhere, moved here later
                    place = int(rand() * 96)
                twelve = f"{prefix}{place:02d}{int(rand() * 1000):03d}"
                number = f"{twelve}{check_digit(twelve)}"
            if number not in self.seen:
                self.seen.add(number)
                return number

    def household(self, number: int, size: int, batch: Batch) -> None:
        rand = self.rand
        region, _, birthplaces, cities, roads = _REGIONS[bisect_right(_REGION_CUM, rand())]
        members = self.members(size)
        household_id = f"H{number:09d}"

        people: list[tuple[str, int, bool, bool, str, str, int]] = []
        single = len(members) == 1
        residents = batch.residents
        for day, male, relationship, name, foreign in members:
            rrn = self.rrn(day, male, foreign, birthplaces)
            age = _AGES[day]
            status = _ACTIVE
            if single or relationship != _HEAD:
                r = rand()
                if r < _DECEASED_BY_AGE[age]:
                    status = _DECEASED
                elif r < _DECEASED_BY_AGE[age] + _EMIGRATED_BY_AGE[age]:
                    status = _EMIGRATED
            residents.append((rrn, name, _DATES[day], "MALE" if male else "FEMALE", foreign,
                              status, household_id, relationship))  # fmt: skip
            people.append((rrn, day, male, foreign, relationship, status, age))

        head_rrn, *_, head_age = people[0]
        city, postal_prefixes = cities[int(rand() * len(cities))]
        if rand() < 0.6:
            street = f"{1 + int(rand() * rand() * 400)} {self.pick(roads)}"
        else:
            street = f"{1 + int(rand() * 60)} {self.pick(roads)} {1 + int(rand() * 120)}-gil"
        postal = f"{self.pick(postal_prefixes)}{int(rand() * 100):02d}"
        years_here = max(min(head_age - 18, 12 if members[0][4] else 30), 0) + 0.1
        registered_on = dt.date.fromordinal(_REFERENCE_ORDINAL - 1 - int(rand() * years_here * 365))
        batch.households.append(
            (household_id, head_rrn, region, city, street, postal, registered_on)
        )
        self.agencies(people, registered_on, batch)

    def agencies(
        self,
        people: list[tuple[str, int, bool, bool, str, str, int]],
        registered_on: dt.date,
        batch: Batch,
    ) -> None:
        rand, gauss = self.rand, self.gauss
        # Work: 0 none, 1 employee, 2 self-employed; with income and the age work started.
        work: list[tuple[int, float, int]] = []
        for rrn, day, male, foreign, _, _, age in people:
            share = _WORKING_BY_AGE[age][male]
            if foreign and 20 <= age < 60:
                share = 0.8
            if share == 0.0 or rand() >= share:
                work.append((0, 0.0, 0))
                continue
            kind = 1 if rand() < (0.78 if age < 60 else 0.45) else 2
            income = _MEDIAN_INCOME_BY_AGE[age] * (1.0 if male else 0.72)
            income *= math.exp(gauss(0.0, 0.55 if kind == 1 else 0.8))
            if kind == 2:
                income *= 0.85
            income = min(max(income, 6e6), 3e9)
            started = min(age, 18 + int(rand() * 10))
            work.append((kind, income, started))
            self.tax_returns(rrn, _DATES[day].year + started, income, batch)

        self.enrolments(people, work, registered_on, batch)
        self.subscriptions(people, work, batch)
        for rrn, day, male, foreign, _, _, age in people:
            if male and not foreign and 18 <= age <= 60:
                self.service_record(rrn, day, age, batch)

    def tax_returns(self, rrn: str, first_year: int, income: float, batch: Batch) -> None:
        rand, gauss = self.rand, self.gauss
        delinquent = rand() < 0.05
        rows = batch.tax_returns
        for year in TAX_YEARS:
            if year < first_year:
                continue
            reported = int(income * _INCOME_GROWTH[year] * math.exp(gauss(0.0, 0.08))) // 1000
            reported *= 1000
            assessed = _income_tax(reported)
            paid = assessed
            if delinquent and assessed and rand() < 0.6:
                paid = int(assessed * rand() * 0.9) // 10 * 10
            rows.append((rrn, year, reported, assessed, paid, assessed - paid))

    def enrolments(
        self,
        people: list[tuple[str, int, bool, bool, str, str, int]],
        work: list[tuple[int, float, int]],
        registered_on: dt.date,
        batch: Batch,
    ) -> None:
        rand = self.rand
        enrolled = [
            status == _ACTIVE and rand() >= (0.08 if foreign else 0.006)
            for _, _, _, foreign, _, status, _ in people
        ]
        insured = [i for i, person in enumerate(people) if enrolled[i] and work[i][0]]
        anchor = next((i for i in insured if people[i][4] == _HEAD), insured[0] if insured else -1)
        if anchor < 0:
            # Nobody works: the oldest adult becomes a regional subscriber for the household.
            adults = [i for i, p in enumerate(people) if enrolled[i] and p[6] >= 18]
            if not adults:
                return
            anchor = max(adults, key=lambda i: people[i][6])
            insured = [anchor]

        starts: dict[int, dt.date] = {}
        for i in insured:
            _, day, _, foreign, _, _, age = people[i]
            started = work[i][2] if work[i][0] else min(age, 20 + int(rand() * 10))
            month = (_DATES[day].year + started) * 12 + int(rand() * 12)
            since = max(_MONTH_FIRST[min(month, _REFERENCE_MONTH - 1)], NHIS_START)
            starts[i] = max(since, registered_on) if foreign else since

        dependents = 0
        rows = batch.enrolments
        anchor_rrn = people[anchor][0]
        for i, person in enumerate(people):
            if enrolled[i] and i not in starts:
                since = max(_DATES[person[1]], starts[anchor])
                rows.append((person[0], _DEPENDENT, since, 0, 0, anchor_rrn))
                dependents += 1
        for i in insured:
            kind, income, _ = work[i]
            if kind == 1:
                insured_type, premium = _EMPLOYEE, income / 12 * 0.03545
            elif kind == 2:
                insured_type, premium = _SELF_EMPLOYED, income / 12 * 0.0709 * 0.7
            else:  # a regional subscriber without earnings pays on property
                insured_type, premium = _SELF_EMPLOYED, 30_000 + rand() * rand() * 150_000
            premium = int(min(max(premium, 30_000), 600_000)) // 10 * 10
            rows.append((people[i][0], insured_type, starts[i], premium,
                         dependents if i == anchor else 0, None))  # fmt: skip

    def subscriptions(
        self,
        people: list[tuple[str, int, bool, bool, str, str, int]],
        work: list[tuple[int, float, int]],
        batch: Batch,
    ) -> None:
        rand = self.rand
        rows = batch.subscriptions
        for (rrn, day, _, _, _, status, age), (kind, income, started) in zip(
            people, work, strict=True
        ):
            if status != _ACTIVE or age < 18:
                continue
            if age < 60:
                if kind:
                    subscriber = "WORKPLACE" if kind == 1 else "REGIONAL"
                    coverage = 0.7 + 0.3 * rand()
                    months = int(((age - started) * 12 + int(rand() * 12)) * coverage)
                elif rand() < 0.08:
                    subscriber, coverage, income = "VOLUNTARY", 0.5, 12_000_000.0
                    months = int(rand() * (age - 17) * 12)
                else:
                    continue
                projected = months + (60 - age) * 12 * coverage
                monthly = min(max(income / 12, _NPS_INCOME_FLOOR), _NPS_INCOME_CAP)
                expected = int((_NPS_A + monthly) / 2 * 0.01 * projected / 12) // 10 * 10
                rows.append((rrn, subscriber, months, expected, None, None))
            elif age < PENSION_AGE:
                if kind and rand() < 0.25:  # voluntary continued subscription until 65
                    months = int((age - started) * 12 * (0.6 + 0.3 * rand()))
                    monthly = min(max(income / 12, _NPS_INCOME_FLOOR), _NPS_INCOME_CAP)
                    expected = int((_NPS_A + monthly) / 2 * 0.01 * months / 12) // 10 * 10
                    rows.append((rrn, "VOLUNTARY", months, expected, None, None))
            elif rand() < (0.75 if age < 75 else 0.55 if age < 85 else 0.3):
                # The scheme began in 1988, which caps what the oldest could contribute.
                age_in_1988 = age - (REFERENCE_DATE.year - 1988)
                most = min(max(12 * (60 - max(18, age_in_1988)), 120), 480)
                months = 120 + int(rand() * (most - 120 + 1))
                benefit = int(months / 12 * (18_000 + rand() * 14_000)) // 10 * 10
                born = _DATES[day]
                month = (born.year + PENSION_AGE) * 12 + born.month + int(rand() * rand() * 24)
                since = _MONTH_FIRST[min(month, _REFERENCE_MONTH)]
                rows.append((rrn, "RECIPIENT", months, None, benefit, since))

    def service_record(self, rrn: str, day: int, age: int, batch: Batch) -> None:
        rand = self.rand
        rows = batch.service_records
        if age >= 19 and rand() < _EXEMPT_SHARE:
            reason = _EXEMPTIONS[bisect_right(_EXEMPTION_CUM, rand())]
            rows.append((rrn, "EXEMPT", None, None, None, reason))
            return
        enlist_age = _ENLIST_AGES[bisect_right(_ENLIST_AGE_CUM, rand())]
        enlisted = _anniversary(_DATES[day], enlist_age) + int(rand() * 365)
        if age < 19 or enlisted > _REFERENCE_ORDINAL:
            rows.append((rrn, "PENDING", None, None, None, None))
            return
        branch = bisect_right(_BRANCH_CUM, rand())
        discharged = enlisted + _BRANCH_DAYS[branch]
        enlisted_on = dt.date.fromordinal(enlisted)
        if discharged > _REFERENCE_ORDINAL:
            rows.append((rrn, "SERVING", _BRANCHES[branch][0], enlisted_on, None, None))
        else:
            rows.append((rrn, "COMPLETED", _BRANCHES[branch][0], enlisted_on,
                         dt.date.fromordinal(discharged), None))  # fmt: skip


def _anniversary(born: dt.date, years: int) -> int:
    """The ordinal of the day someone born on ``born`` turns ``years``."""
    try:
        return born.replace(year=born.year + years).toordinal()
    except ValueError:  # born on 29 February
        return dt.date(born.year + years, 3, 1).toordinal()


def generate(
    residents: int, seed: int = 20240101, *, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[Batch]:
    """Yield batches of about ``chunk_size`` residents, ``residents`` in all.

    The rows depend only on ``residents`` and ``seed``; the last household is trimmed so the
    total is exact.
    """
    if residents < 0:
        raise ValueError("residents must be zero or more")
    generator = _Generator(seed)
    rand = generator.rand
    batch = Batch()
    made = 0
    number = 0
    while made < residents:
        size = min(1 + bisect_right(_SIZE_CUM, rand()), residents - made)
        number += 1
        before = len(batch.residents)
        generator.household(number, size, batch)
        made += len(batch.residents) - before
        if len(batch.residents) >= chunk_size:
            yield batch
            batch = Batch()
    if batch.residents:
        yield batch


# --------------------------------------------------------------------------------------------
# Loading


async def seed(
    dsn: str,
    residents: int,
    *,
    seed: int = 20240101,
    progress: bool = True,
    replace: bool = True,
) -> SeedSummary:
    """Create the demo schema in ``dsn`` and load ``residents`` synthetic residents into it.

    With ``replace`` the six tables are emptied first, so seeding twice never duplicates; without
    it rows are added to what is there (and clash on primary keys if the seed was loaded before).
    """
    if residents < 0:
        raise ValueError("residents must be zero or more")
    started = time.perf_counter()
    console = Console(stderr=True) if progress else None
    schema_sql = (importlib.resources.files("gateway.demo") / "schema.sql").read_text("utf-8")
    notify_sql = (importlib.resources.files("gateway.demo") / "notify.sql").read_text("utf-8")
    qualified = ", ".join(f"{schema}.{table}" for schema, table, _ in TABLES)

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(schema_sql)
        if replace:
            await conn.execute(f"truncate {qualified}")
        # Bulk loads must not NOTIFY once per row (see notify.sql); triggers return after.
        for schema, table, _ in TABLES:
            await conn.execute(f"alter table {schema}.{table} disable trigger user")
        if console is None:
            counts = await _load(dsn, residents, seed, lambda _: None)
        else:
            with Progress(
                TextColumn("[bold]seeding residents"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            ) as bar:
                task = bar.add_task("residents", total=residents)
                counts = await _load(dsn, residents, seed, lambda n: bar.advance(task, n))
        for statement in _SECONDARY_INDEXES:
            await conn.execute(statement)
        await conn.execute(notify_sql)
        for schema, table, _ in TABLES:
            await conn.execute(f"alter table {schema}.{table} enable trigger user")
        await conn.execute(f"analyze {qualified}")
    finally:
        await conn.close()

    summary = SeedSummary(
        residents=counts[1],
        households=counts[0],
        insurance=counts[2],
        tax_returns=counts[4],
        pensions=counts[3],
        military=counts[5],
        seconds=round(time.perf_counter() - started, 3),
    )
    if console is not None:
        console.print(
            f"seeded {summary.residents:,} residents in {summary.households:,} households, "
            f"{summary.insurance:,} insurance enrolments, {summary.tax_returns:,} tax returns, "
            f"{summary.pensions:,} pension records, {summary.military:,} military records "
            f"in {summary.seconds:.1f} s"
        )
    return summary


# Batches generated ahead of loading; each holds DEFAULT_CHUNK residents and their rows.
_BATCHES_AHEAD = 3


async def _load(
    dsn: str, residents: int, seed_value: int, on_residents: Callable[[int], None]
) -> list[int]:
    """Generate on a worker thread and COPY each table over its own connection.

    Generation is pure Python and PostgreSQL works in other processes, so overlapping the two
    keeps both cores busy; the table queues are bounded to keep memory flat.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[Batch | None] = asyncio.Queue()
    slots = threading.Semaphore(_BATCHES_AHEAD)
    stop = threading.Event()
    queues: list[asyncio.Queue[Sequence[Sequence[object]] | None]] = [
        asyncio.Queue(maxsize=2) for _ in TABLES
    ]
    counts = [0] * len(TABLES)

    def produce() -> None:
        try:
            for batch in generate(residents, seed_value):
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(ready.put_nowait, batch)
        finally:
            if not stop.is_set():
                loop.call_soon_threadsafe(ready.put_nowait, None)

    async def dispatch() -> None:
        while (batch := await ready.get()) is not None:
            slots.release()
            for queue, rows in zip(queues, batch.tables(), strict=True):
                if rows:
                    await queue.put(rows)
        for queue in queues:
            await queue.put(None)

    async def copy(position: int) -> None:
        schema, table, columns = TABLES[position]
        queue = queues[position]
        conn = await asyncpg.connect(dsn)
        try:
            # Each COPY commits on its own; nothing is lost by not waiting for the WAL flush.
            await conn.execute("set synchronous_commit = off")
            while (rows := await queue.get()) is not None:
                await conn.copy_records_to_table(
                    table, schema_name=schema, columns=columns, records=rows
                )
                counts[position] += len(rows)
                if position == 1:
                    on_residents(len(rows))
        finally:
            await conn.close()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(asyncio.to_thread(produce))
            group.create_task(dispatch())
            for position in range(len(TABLES)):
                group.create_task(copy(position))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    finally:
        stop.set()
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Seed the demo agency tables.")
    parser.add_argument("dsn", help="asyncpg DSN, e.g. postgresql://postgres@127.0.0.1/demo")
    parser.add_argument("residents", type=int, nargs="?", default=100_000)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--keep", action="store_true", help="do not empty the tables first")
    args = parser.parse_args(argv)
    asyncio.run(
        seed(args.dsn, args.residents, seed=args.seed, progress=not args.quiet,
             replace=not args.keep)
    )  # fmt: skip


if __name__ == "__main__":
    main()
