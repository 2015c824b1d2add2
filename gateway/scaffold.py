"""``gateway new-adapter NAME``: a separate, installable agency package that passes its own
tests as generated (the compliance suite of ``adapters.testing`` included)."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from gateway.config import ConfigError

NAME_SHAPE = re.compile(r"[a-z][a-z0-9_]{1,30}")
#: Kinds the gateway has or reserves: an entry point of that name would shadow ours.
RESERVED = frozenset({"sql", "http", "graphql", "memory"})


def check_name(name: str, installed: frozenset[str] = frozenset()) -> None:
    """Raise ConfigError unless ``name`` can be an adapter kind, a dataset and a module."""
    if not NAME_SHAPE.fullmatch(name) or name.endswith("_") or "__" in name:
        raise ConfigError(
            f"new-adapter: {name!r} is not a valid name: 2 to 31 lowercase letters, digits and "
            "single underscores, starting with a letter (an agency code like 'land_registry')"
        )
    if keyword.iskeyword(name):
        raise ConfigError(f"new-adapter: {name!r} is a Python keyword")
    if name in RESERVED or name in installed:
        raise ConfigError(f"new-adapter: an adapter kind named {name!r} already exists")


def camel(name: str, upper: bool) -> str:
    words = name.split("_")
    first = words[0].capitalize() if upper else words[0]
    return first + "".join(w.capitalize() for w in words[1:])


def scaffold(name: str, directory: Path, installed: frozenset[str] = frozenset()) -> list[Path]:
    """Write the package for adapter ``name`` into ``directory`` (which must not exist)."""
    check_name(name, installed)
    if directory.exists():
        raise ConfigError(f"new-adapter: {directory} already exists; choose another --dir")
    package = f"gateway_adapter_{name}"
    values = {
        "__NAME__": name,
        "__PACKAGE__": package,
        "__DIST__": f"gateway-adapter-{name.replace('_', '-')}",
        "__CLASS__": camel(name, upper=True),
        "__FIELD__": camel(name, upper=False),
        "__HOST__": name.replace("_", "-"),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        "policy.toml": POLICY,
        f"src/{package}/__init__.py": INIT,
        f"src/{package}/py.typed": "",
        f"src/{package}/records.py": RECORDS,
        f"src/{package}/adapter.py": ADAPTER,
        f"src/{package}/contribution.py": CONTRIBUTION,
        "tests/test_compliance.py": TESTS,
    }
    written = []
    for relative, template in files.items():
        text = template
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "Resident Gateway adapter for the __NAME__ agency"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["resident-gateway>=0.1"]

[project.optional-dependencies]
# The suite needs only pytest; pytest-asyncio is for tests of your own that are async.
test = ["pytest>=8", "pytest-asyncio>=0.24"]

# The gateway finds the adapter here: [agencies.<code>] kind = "__NAME__".
[project.entry-points."gateway.adapters"]
__NAME__ = "__PACKAGE__.adapter:__CLASS__Adapter"

# ... and what it adds to the schema (the type __CLASS__, the field Resident.__FIELD__),
# once an agency is configured with datasets = ["__NAME__"].
[project.entry-points."gateway.datasets"]
__NAME__ = "__PACKAGE__.contribution:CONTRIBUTION"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
__PACKAGE__ = ["py.typed"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "--strict-markers -ra"
filterwarnings = ["error"]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

INIT = '''\
"""Resident Gateway adapter for the __NAME__ agency."""

from __PACKAGE__.adapter import __CLASS__Adapter
from __PACKAGE__.records import __CLASS__Record, DATASET

__all__ = ["DATASET", "__CLASS__Adapter", "__CLASS__Record"]
'''

RECORDS = '''\
"""What the __NAME__ agency answers for a resident: plain frozen records, no behaviour."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from adapters.records import Dataset


@dataclass(frozen=True, slots=True)
class __CLASS__Record:
    """One record per resident (set ``many=True`` on the dataset for several)."""

    rrn: str
    reference: str
    registered_on: dt.date


DATASET = Dataset("__NAME__", __CLASS__Record)
'''

ADAPTER = '''\
"""Reads the __NAME__ agency's records, many keys at a time (see ``adapters.base.Adapter``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.base import Adapter, AgencyFailure
from adapters.records import Dataset

from __PACKAGE__.records import DATASET, __CLASS__Record

#: Stand-in data until the adapter talks to the agency: what the tests look up, and the
#: embedded demo's sample resident (810413-1009948, in every `gateway seed`).
SAMPLE = {
    "940812-1001751": __CLASS__Record("940812-1001751", "REF-0001", dt.date(2021, 3, 4)),
    "810413-1009948": __CLASS__Record("810413-1009948", "REF-0002", dt.date(2019, 11, 30)),
}


class __CLASS__Adapter(Adapter):
    """Settings (the agency's ``[agencies.<code>]`` table): ``url`` of the agency, unused
    until :meth:`_lookup` calls it."""

    datasets = frozenset({DATASET.name})

    def __init__(self, agency: str, settings: Mapping[str, Any]) -> None:
        super().__init__(agency, settings)
        self.url = settings.get("url")
        self._open = False

    async def start(self) -> None:
        # Open the agency's client or pool here; never fail when the agency is down.
        self._open = True

    async def close(self) -> None:
        self._open = False

    async def ping(self) -> None:
        self._check_open()

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        if dataset.name != DATASET.name:
            raise AgencyFailure(f"{self.agency} does not serve {dataset.name}")
        self._check_open()
        found = await self._lookup(keys)
        # One entry per key, in key order: the record, or None when there is none.
        return [found.get(key) for key in keys]

    async def _lookup(self, keys: Sequence[str]) -> dict[str, __CLASS__Record]:
        """Ask the agency for ``keys`` in one call. Replace with your agency's protocol."""
        await asyncio.sleep(0)  # the agency call goes here
        return {key: SAMPLE[key] for key in keys if key in SAMPLE}

    def _check_open(self) -> None:
        if not self._open:
            raise AgencyFailure(f"{self.agency}: adapter used before start() or after close()")
'''

CONTRIBUTION = '''\
"""What the __NAME__ agency adds to the gateway's schema: the type __CLASS__
and the field Resident.__FIELD__ (see gateway.federation).

Describe every type and field: analysts read it."""

from __future__ import annotations

import datetime as dt

import strawberry

from gateway.federation import Contribution, ResidentField

from __PACKAGE__.records import DATASET, __CLASS__Record


@strawberry.type(description="What the __NAME__ agency holds about the resident.")
class __CLASS__:
    view: strawberry.Private[str]  # the purpose the lookup declared: policy decides per field
    subject: strawberry.Private[str]  # whose data this is: the audit names them

    reference: str = strawberry.field(description="The agency's reference for the record.")
    registered_on: dt.date = strawberry.field(description="When the agency registered it.")


def build(record: __CLASS__Record, view: str, subject: str) -> __CLASS__:
    return __CLASS__(
        view=view, subject=subject, reference=record.reference,
        registered_on=record.registered_on,
    )  # fmt: skip


CONTRIBUTION = Contribution(
    dataset=DATASET,
    types=(__CLASS__,),
    fields=(
        ResidentField(
            "__FIELD__",
            __CLASS__,
            "The __NAME__ agency's record.",
            build,
        ),
    ),
)
'''

TESTS = '''\
"""The adapter keeps the gateway's contract (adapters.testing), and the package is installed
so that the gateway finds it."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

from adapters.testing import AdapterCompliance

from __PACKAGE__ import DATASET, __CLASS__Adapter


class Test__CLASS__Adapter(AdapterCompliance):
    dataset = DATASET
    present = ["940812-1001751", "810413-1009948"]
    absent = ["900101-1234568"]

    def make_adapter(self) -> __CLASS__Adapter:
        return __CLASS__Adapter("__NAME__", {"url": "http://127.0.0.1:8081"})


def test_registered_as_a_gateway_adapter() -> None:
    [found] = [ep for ep in entry_points(group="gateway.adapters") if ep.name == "__NAME__"]
    assert found.load() is __CLASS__Adapter


def test_the_contribution_joins_the_schema_and_the_policy_snippet_names_it() -> None:
    from gateway import policy as policy_module
    from gateway.graphql_schema import PURPOSES, build_schema, resident_types, schema_fields

    [found] = [ep for ep in entry_points(group="gateway.datasets") if ep.name == "__NAME__"]
    schema = build_schema(contributions=[("__NAME__", found.load())])
    fields = schema_fields(schema)
    assert "__FIELD__" in fields["Resident"]
    assert "__CLASS__" in resident_types(schema)  # authorized field by field
    raw = tomllib.loads((Path(__file__).parents[1] / "policy.toml").read_text())
    policy_module.parse(raw, fields, PURPOSES, resident_types=resident_types(schema))
'''

POLICY = """\
# Grant the __NAME__ agency's fields: merge the lines below into the gateway's policy.toml,
# adding its coordinates to the `fields` of every view that may read them. Anything not
# granted is FORBIDDEN (fail closed): `gateway check-config` lists fields no role may read.
# They name the fields this package contributes (src/__PACKAGE__/contribution.py): a wildcard
# (`__CLASS__.*`, `Resident.*`) never grants a contributed field, so name each one you add.
[roles.__NAME___reader]
description = "Reads the __NAME__ agency's records (example role: adapt or remove)."
operations = ["Query.resident", "Query.residents"]
# The agencies whose officials hold this role (their tokens' `agency` claim), not the source.
agencies = ["welfare"]

[roles.__NAME___reader.views.CIVIL_PETITION]
fields = ["Resident.name", "Resident.__FIELD__", "__CLASS__.reference", "__CLASS__.registeredOn"]
"""

README = """\
# __DIST__

A [Resident Gateway](https://example.invalid/resident-gateway) adapter for the `__NAME__`
agency, generated by `gateway new-adapter __NAME__`.

| file | what |
| --- | --- |
| `src/__PACKAGE__/records.py` | `__CLASS__Record` (the frozen record) and `DATASET` |
| `src/__PACKAGE__/adapter.py` | `__CLASS__Adapter`: replace `_lookup` with a call to the agency |
| `src/__PACKAGE__/contribution.py` | the type `__CLASS__` and the field `Resident.__FIELD__` |
| `pyproject.toml` | entry points `__NAME__` in `gateway.adapters` and `gateway.datasets` |
| `policy.toml` | a policy snippet granting `Resident.__FIELD__` and each `__CLASS__` field |
| `tests/test_compliance.py` | the compliance suite (`adapters.testing`) run on the adapter |

## Develop

    pip install -e '.[test]'
    pytest

Keep `tests/test_compliance.py` passing as the adapter starts talking to the agency: point
`make_adapter()` at a test instance of it and list keys it has records for (`present`) and
none for (`absent`).

## Use

1. Install the package next to the gateway (`pip install .` in the gateway's environment).
2. Configure an agency of this kind in `gateway.toml` (the agency code is yours to choose;
   the dataset is this package's):

       [agencies.__NAME__]
       kind = "__NAME__"
       url = "https://__HOST__.example.invalid"
       datasets = ["__NAME__"]

3. Merge `policy.toml` here into the gateway's policy (it adds the role `__NAME___reader`).
4. `gateway check-config` says `ok`; restart the gateway, then with
   `gateway token --role __NAME___reader --agency welfare` as the bearer token:

       { resident(rrn: "810413-1009948", purpose: CIVIL_PETITION) {
           name __FIELD__ { reference registeredOn } } }

   answers the sample record (`REF-0002`) until `_lookup` asks the agency.
"""
