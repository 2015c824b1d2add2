"""The benchmark scenarios: a query, the RRNs it rotates over, and the gateway set-up it needs.

To add one (a warm-cache or audit-on variant, say), append a :class:`Scenario` to
``SCENARIOS``; ``dataclasses.replace`` an existing one when only the gateway configuration
differs::

    FULL_WARM = replace(
        FULL,
        name="full-warm",
        description="full profile, agency cache on and primed",
        gateway={"cache": {"backend": "memory"}},   # deep-merged into gateway.toml
        prime=True,                                 # send every body once before warming up
    )

(the ``-warm``, ``-noaudit`` and ``-patched`` variants below are built that way). Every
scenario runs against each of its ``targets``; scenarios with different ``gateway`` overrides
or ``patches`` get a gateway process of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

FULL_QUERY = """\
query Full($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    rrn name birthDate sex status
    address { region city street postalCode }
    insurance { insuredType monthlyPremium dependents }
    taxes(years: [2024, 2025]) { year reportedIncome taxAssessed arrears }
    pension { subscriberType monthsContributed expectedMonthlyBenefit monthlyBenefit }
    militaryService { status branch enlistedOn dischargedOn }
  }
}"""

HOUSEHOLD_QUERY = """\
query Household($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name
    household {
      size
      members { name insurance { insuredType monthlyPremium } taxes { year reportedIncome } }
    }
  }
}"""


@dataclass(frozen=True)
class Keys:
    """RRNs available to scenarios."""

    sample: Sequence[str]  # many seeded residents, in a fixed pseudo-random order
    household: Sequence[str]  # the fixture household of 20, head (940812-1001751) first
    #: Heads of 200 households of 20 (``BenchStack.households``), for household-rotating.
    households: Sequence[str] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    query: str
    keys: Callable[[Keys], Sequence[str]]
    # Deep-merged into the gateway's TOML config (e.g. {"cache": {...}, "agencies": {...}}).
    gateway: Mapping[str, Any] = field(default_factory=dict)
    # Experiments from bench.patches applied to the gateway process (bench.launch --patch).
    patches: tuple[str, ...] = ()
    targets: tuple[str, ...] = ("gateway", "ceiling")
    # Send every request body once before the warm-up (fills caches for warm variants).
    prime: bool = False

    def bodies(self, keys: Keys) -> list[bytes]:
        """One JSON request body per RRN; the query text is identical, only variables vary."""
        return [
            json.dumps({"query": self.query, "variables": {"rrn": rrn}}).encode()
            for rrn in self.keys(keys)
        ]

    def gateway_key(self) -> str:
        """Scenarios with equal keys can share one gateway process."""
        return json.dumps([self.gateway, self.patches], sort_keys=True)


AGENCIES = ("registry", "nhis", "nps", "nts", "mma")
#: Every agency read from the agency itself on every request: the "cold" profile.
CACHE_OFF: dict[str, Any] = {"agencies": {code: {"cache": False} for code in AGENCIES}}
AUDIT_OFF: dict[str, Any] = {"audit": {"enabled": False}}
#: Every prototype in bench.patches (see BENCHMARKS.md for what each one stands for).
ALL_PATCHES = ("stable-rules", "quiet-httpx", "streams-http")

FULL = Scenario(
    name="full",
    description="full single-resident profile (5 agencies), agency cache off, audit on, "
    "rotating over seeded RRNs",
    query=FULL_QUERY,
    keys=lambda keys: keys.sample,
    gateway=CACHE_OFF,
    targets=("gateway", "ceiling", "peer"),
)

HOUSEHOLD = Scenario(
    name="household",
    description=(
        "the 20-member household of 940812-1001751 with each member's insurance and taxes, "
        "asked through each of its 20 members in turn; agency cache off, audit on"
    ),
    query=HOUSEHOLD_QUERY,
    keys=lambda keys: keys.household,
    gateway=CACHE_OFF,
)


HOUSEHOLD_ROTATING = Scenario(
    name="household-rotating",
    description=(
        "households of 20 with each member's insurance and taxes, rotating over the heads of "
        "200 of them (cross-request merging cannot hide agency work); agency cache off, audit on"
    ),
    query=HOUSEHOLD_QUERY,
    keys=lambda keys: keys.households,
    gateway=CACHE_OFF,
    targets=("gateway", "ceiling", "peer"),
)


def _variant(base: Scenario, suffix: str, description: str, **changes: Any) -> Scenario:
    return replace(
        base, name=f"{base.name}-{suffix}", description=f"{base.name}, {description}", **changes
    )


VARIANTS = [
    variant
    for base in (FULL, HOUSEHOLD, HOUSEHOLD_ROTATING)
    for variant in (
        # The gateway's default: agency cache on (memory), every key fetched once beforehand.
        _variant(base, "warm", "agency cache on (memory) and primed", gateway={}, prime=True),
        _variant(base, "noaudit", "[audit] enabled = false", gateway=CACHE_OFF | AUDIT_OFF),
        _variant(
            base,
            "nolog",
            "[log] requests = false (no request log line)",
            gateway=CACHE_OFF | {"log": {"requests": False}},
        ),
        _variant(
            base,
            "wide",
            "16 batches in flight per agency instead of the default 4 (less coalescing)",
            gateway={
                "agencies": {code: {"cache": False, "max_concurrency": 16} for code in AGENCIES}
            },
        ),
        _variant(
            base,
            "patched",
            "with the bench.patches experiments (" + ", ".join(ALL_PATCHES) + ")",
            patches=ALL_PATCHES,
        ),
        _variant(
            base,
            "patched-noaudit",
            "patched, and [audit] enabled = false",
            gateway=CACHE_OFF | AUDIT_OFF,
            patches=ALL_PATCHES,
        ),
    )
]

#: The same gateway with two uvicorn workers (``[server] workers = 2``), for 1 vs 2 workers
#: side by side on one machine; CPU and RSS are the workers' and their supervisor's together.
TWO_WORKERS = [
    _variant(
        base,
        "2w",
        "[server] workers = 2",
        gateway=CACHE_OFF | {"server": {"workers": 2}},
        targets=("gateway",),
    )
    for base in (FULL, HOUSEHOLD_ROTATING)
]

#: The same gateway with authorization per field (the path before operation plans), gateway
#: only: measured side by side with the planned default.
PER_FIELD = [
    _variant(
        base,
        "perfield",
        "authorization per field (the pre-plan path, bench.patches per-field)",
        patches=("per-field",),
        targets=("gateway",),
    )
    for base in (FULL, HOUSEHOLD_ROTATING, *(v for v in VARIANTS if v.name == "full-warm"))
]

SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (FULL, HOUSEHOLD, HOUSEHOLD_ROTATING, *VARIANTS, *TWO_WORKERS, *PER_FIELD)
}
#: What ``python -m bench.run`` runs without ``--scenarios``.
DEFAULT_SCENARIOS = ("full", "household")
