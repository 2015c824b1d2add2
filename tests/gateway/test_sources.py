"""Which agency serves which dataset: declared in config, checked at start-up and by
``gateway check-config`` (one line naming the problem), and used at query time."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Adapter, AgencyFailure
from adapters.contract import check_adapter
from adapters.http import HTTPAdapter
from adapters.records import TAXES, Dataset, TaxRecord
from gateway import agencies as agencies_module
from gateway import config as config_module
from gateway.agencies import Agency
from gateway.app import create_app
from gateway.cli import main
from gateway.config import AgencyConfig, ConfigError, PolicyConfig
from gateway.errors import AgencyError
from gateway.graphql_schema import PURPOSES, build_schema, schema_fields
from gateway.runtime import DEMO_POLICY
from tests.conftest import ALLOW_ALL, ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN

DSN = "postgresql://postgres@127.0.0.1/agencies"
FIVE = {
    "registry": 'kind = "sql"\ndsn = "DSN"',
    "nhis": 'kind = "sql"\ndsn = "DSN"',
    "nps": 'kind = "sql"\ndsn = "DSN"',
    "nts": 'kind = "http"\nurl = "http://127.0.0.1:9100"',
    "mma": 'kind = "http"\nurl = "http://127.0.0.1:9101"',
}
INVALIDATING = 'agencies = ["registry", "nhis", "nts", "nps", "mma"]'


def gateway_toml(
    tmp_path: Path,
    agencies: dict[str, str],
    *,
    extra: str = "",
    policy: Path = DEMO_POLICY,
) -> Path:
    lines = [
        "[database]",
        f'url = "{DSN}"',
        "[auth]",
        'secret = "a-development-secret-of-forty-characters!"',
        "[audit]",
        'key = "an-audit-key-of-at-least-thirty-two-characters"',
        "[policy]",
        f'file = "{policy}"',
        extra,
    ]
    for code, table in agencies.items():
        lines += [f"[agencies.{code}]", table.replace("DSN", DSN)]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def demo_policy_invalidating(tmp_path: Path, codes: Sequence[str]) -> Path:
    """The demo policy, its agency_system role invalidating for ``codes`` only."""
    text = DEMO_POLICY.read_text()
    assert INVALIDATING in text
    listed = ", ".join(f'"{code}"' for code in codes)
    path = tmp_path / "policy.toml"
    path.write_text(text.replace(INVALIDATING, f"agencies = [{listed}]"))
    return path


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["check-config", "--no-connect", "--config", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def refused(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """check-config's first error line (without its prefix); asserts exit 2 and that every
    line is one prefixed problem (check-config reports every problem, one per line)."""
    status, out, err = check_config(path, capsys)
    assert status == 2, (out, err)
    prefix = "gateway: configuration error: "
    lines = err.splitlines()
    assert lines, err
    assert all(line.startswith(prefix) for line in lines), err
    return lines[0][len(prefix) :].strip()


# --- the mapping --------------------------------------------------------------------------


def test_demo_codes_keep_their_datasets_without_a_datasets_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = gateway_toml(tmp_path, FIVE)
    loaded = config_module.load(path, environ={})
    assert config_module.sources(loaded) == {
        "resident": "registry",
        "household": "registry",
        "insurance": "nhis",
        "taxes": "nts",
        "pension": "nps",
        "military_service": "mma",
    }
    status, out, err = check_config(path, capsys)
    assert (status, err) == (0, "")
    assert "note:" not in out  # the demo policy lets some role read every field
    assert out.strip().endswith("ok (5 agencies)")


def test_a_dataset_moves_to_another_agency_by_config(tmp_path: Path) -> None:
    agencies = {k: v for k, v in FIVE.items() if k != "nhis"}
    agencies["registry"] += '\ndatasets = ["resident", "household", "insurance"]\ncost_weight = 7'
    loaded = config_module.load(gateway_toml(tmp_path, agencies), environ={})
    assert config_module.sources(loaded)["insurance"] == "registry"
    assert config_module.cost_weights(loaded)["insurance"] == 7
    assert config_module.cost_weights(loaded)["taxes"] == config_module.DEFAULT_COST_WEIGHT


def test_datasets_can_be_set_from_the_environment(tmp_path: Path) -> None:
    agencies = {k: v for k, v in FIVE.items() if k != "nps"}
    env = {"GATEWAY__AGENCIES__NHIS__DATASETS": '["insurance", "pension"]'}
    loaded = config_module.load(gateway_toml(tmp_path, agencies), environ=env)
    assert loaded.agencies["nhis"].datasets == ("insurance", "pension")
    assert config_module.sources(loaded)["pension"] == "nhis"


# --- check-config and start-up refuse, in one line ------------------------------------


def test_two_sources_for_one_dataset_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agencies = {**FIVE, "nhis2": f'kind = "sql"\ndsn = "{DSN}"\ndatasets = ["insurance"]'}
    assert refused(gateway_toml(tmp_path, agencies), capsys) == (
        "dataset insurance has two sources: [agencies.nhis] and [agencies.nhis2] "
        "(give each dataset to one agency with datasets = [...])"
    )


def test_a_dataset_without_an_agency_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agencies = {k: v for k, v in FIVE.items() if k not in ("mma", "nps")}
    assert refused(gateway_toml(tmp_path, agencies), capsys) == (
        "no agency serves dataset(s) pension, military_service: configure an agency for each "
        "(datasets = [...]) or list them in [sources] unserved"
    )


def test_a_dataset_may_be_unserved_when_declared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agencies = {k: v for k, v in FIVE.items() if k != "mma"}
    policy = demo_policy_invalidating(tmp_path, ["registry", "nhis", "nts", "nps"])
    path = gateway_toml(
        tmp_path, agencies, extra='[sources]\nunserved = ["military_service"]', policy=policy
    )
    status, out, err = check_config(path, capsys)
    assert (status, err) == (0, "")
    assert (
        "note: no agency serves military_service ([sources] unserved): its fields answer "
        "AGENCY_UNAVAILABLE"
    ) in out


def test_unserved_must_not_name_a_served_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = gateway_toml(tmp_path, FIVE, extra='[sources]\nunserved = ["taxes"]')
    assert refused(path, capsys) == "[sources] unserved lists taxes, which [agencies.nts] serves"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('datasets = ["pets"]', "[agencies.nhis]: datasets: unknown dataset pets (known: "),
        ("datasets = []", "[agencies.nhis]: datasets must name at least one dataset"),
        ('datasets = "insurance"', "[agencies.nhis]: datasets must be a list of dataset names"),
        ('datasets = ["insurance", "insurance"]', "[agencies.nhis]: datasets names a dataset"),
    ],
)
def test_bad_datasets_keys_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, message: str
) -> None:
    agencies = {**FIVE, "nhis": FIVE["nhis"] + "\n" + table}
    assert refused(gateway_toml(tmp_path, agencies), capsys).startswith(message)


def test_an_agency_outside_the_demo_codes_must_say_what_it_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agencies = {**FIVE, "kcomwel": f'kind = "sql"\ndsn = "{DSN}"'}
    assert refused(gateway_toml(tmp_path, agencies), capsys).startswith(
        "[agencies.kcomwel]: datasets is required (say which of resident, household, "
    )


def test_an_agency_given_a_dataset_its_adapter_does_not_serve_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The HTTP adapter declares (Adapter.datasets) the four agency datasets, not the registry's.
    agencies = {**FIVE, "registry": 'kind = "http"\nurl = "http://127.0.0.1:9102"'}
    assert refused(gateway_toml(tmp_path, agencies), capsys) == (
        "[agencies.registry]: kind 'http' does not serve resident, household "
        "(it serves: insurance, military_service, pension, taxes)"
    )


def test_invalidating_agencies_of_the_policy_must_be_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # agency_system (Events.invalidate) lists mma, which is not configured. Consumer agency
    # codes of other roles (welfare, statistics, ...) are principals' agencies: not checked.
    agencies = {k: v for k, v in FIVE.items() if k != "mma"}
    path = gateway_toml(tmp_path, agencies, extra='[sources]\nunserved = ["military_service"]')
    assert refused(path, capsys) == (
        f"{DEMO_POLICY}: [roles.agency_system] may call Events.invalidate for mma, which no "
        "[agencies.<code>] configures (configured: nhis, nps, nts, registry)"
    )


def test_start_up_refuses_with_the_same_lines() -> None:
    base = make_config(DSN, {"nts": "http://127.0.0.1:9100", "mma": "http://127.0.0.1:9101"})
    twice = dict(base.agencies)
    twice["extra"] = AgencyConfig(code="extra", kind="sql", dsn=DSN, datasets=("taxes",))
    with pytest.raises(ConfigError, match=r"^dataset taxes has two sources: \[agencies\.nts\]"):
        create_app(dataclasses.replace(base, agencies=twice))
    missing = {k: v for k, v in base.agencies.items() if k != "nps"}
    with pytest.raises(ConfigError, match=r"^no agency serves dataset\(s\) pension: "):
        create_app(dataclasses.replace(base, agencies=missing))
    wrong = dict(base.agencies)
    wrong["registry"] = AgencyConfig(code="registry", kind="http", url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=r"^\[agencies\.registry\]: kind 'http' does not serve"):
        create_app(dataclasses.replace(base, agencies=wrong))


# --- the policy: fail closed, and notes -----------------------------------------------


def policy_without(tmp_path: Path, coordinate: str) -> Path:
    """allow_all.toml with Resident.* spelled out, less ``coordinate``: no role grants it."""
    resident = sorted(schema_fields(build_schema())["Resident"])
    listed = ", ".join(f'"Resident.{f}"' for f in resident if f"Resident.{f}" != coordinate)
    text = ALLOW_ALL.read_text().replace('"Resident.*"', listed)
    assert coordinate.split(".")[1] in resident
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_check_config_notes_fields_no_role_may_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = gateway_toml(tmp_path, FIVE, policy=policy_without(tmp_path, "Resident.pension"))
    status, out, err = check_config(path, capsys)
    assert (status, err) == (0, "")
    assert "note: no role may read: Resident.pension\n" in out


def test_check_config_refuses_a_policy_naming_a_field_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(DEMO_POLICY.read_text().replace('"Resident.name"', '"Resident.shoeSize"', 1))
    line = refused(gateway_toml(tmp_path, FIVE, policy=policy), capsys)
    assert line.endswith("[roles.citizen] view SELF_HOUSEHOLD: Resident has no field 'shoeSize'")


async def test_a_field_no_role_grants_is_forbidden_to_everyone(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    policy = policy_without(tmp_path, "Resident.pension")
    config = make_config(agency_db.dsn, http_agencies, policy=PolicyConfig(file=str(policy)))
    async with gateway_client(config) as gateway:
        for purpose in PURPOSES:
            body = await gateway.query(
                f"""query($rrn: String!) {{ resident(rrn: $rrn, purpose: {purpose}) {{
                    name pension {{ monthsContributed }} }} }}""",
                {"rrn": HEAD_RRN},
            )
            assert body["data"]["resident"] == {"name": "Kim Min-jun", "pension": None}, purpose
            [error] = body["errors"]
            assert error["path"] == ["resident", "pension"]
            assert error["extensions"]["code"] == "FORBIDDEN"
        assert gateway.calls("nps") == 0  # never fetched


# --- the configured mapping at query time ---------------------------------------------


async def test_queries_and_invalidation_follow_the_configured_sources(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    base = make_config(agency_db.dsn, http_agencies)
    agencies = {k: v for k, v in base.agencies.items() if k != "nhis"}
    agencies["registry"] = dataclasses.replace(
        agencies["registry"], datasets=("resident", "household", "insurance")
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(
        ALLOW_ALL.read_text().replace('"registry", "nhis", "nts"', '"registry", "nts"', 1)
    )
    config = dataclasses.replace(base, agencies=agencies, policy=PolicyConfig(file=str(policy)))
    async with gateway_client(config) as gateway:
        body = await gateway.query(
            """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
                insurance { insuredType } } }""",
            {"rrn": HEAD_RRN},
            extensions={"provenance": True},
        )
        assert body["data"]["resident"]["insurance"] == {"insuredType": "EMPLOYEE"}
        sources = {tuple(e["path"]): e["agency"] for e in body["extensions"]["provenance"]}
        assert sources[("resident", "insurance")] == "registry"
        accepted = await gateway.http.post(
            "/events/invalidate",
            json={"agency": "registry", "keys": [HEAD_RRN], "datasets": ["insurance"]},
            headers={"Authorization": f"Bearer {token('agency_system', agency='registry')}"},
        )
        assert accepted.status_code == 202, accepted.text


# --- the two bugs ---------------------------------------------------------------------


class NoneForManyAdapter(Adapter):
    """Answers None (no records) for every key of the many dataset ``taxes``."""

    datasets = frozenset({"taxes"})

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        return [None] * len(keys)


class NullRecordsHTTP(HTTPAdapter):
    """An HTTP agency answering ``{"records": null}``."""

    async def _send(
        self, method: str, path: str, body: bytes | None, token: str | None
    ) -> tuple[int, bytes]:
        return 200, b'{"records": null}'  # what the wire would carry


@pytest.fixture
def test_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = agencies_module.adapter_classes()
    extra = {"none-for-many": NoneForManyAdapter, "null-records": NullRecordsHTTP}
    monkeypatch.setattr(agencies_module, "adapter_classes", lambda: {**installed, **extra})


class TaxesOrNone(Adapter):
    """Records for HEAD_RRN, None (rather than ()) for every other key."""

    datasets = frozenset({"taxes"})

    async def fetch(self, dataset: Dataset, keys: Sequence[str]) -> Sequence[Any]:
        record = TaxRecord(HEAD_RRN, 2024, 1, 1, 1, 0)
        return [(record,) if key == HEAD_RRN else None for key in keys]


async def test_the_contract_accepts_none_for_a_many_dataset() -> None:
    async with TaxesOrNone("nts", {}) as adapter:
        assert await check_adapter(adapter, TAXES, [HEAD_RRN], ["900101-1234568"]) == []
    async with NoneForManyAdapter("nts", {}) as adapter:  # a present key still needs records
        assert await check_adapter(adapter, TAXES, [HEAD_RRN], ["900101-1234568"]) == [
            f"{HEAD_RRN}: a taxes entry must be a tuple of records"
        ]


async def test_none_for_a_many_dataset_is_served_as_no_records(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], test_kinds: None
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": AgencyConfig(code="nts", kind="none-for-many", cache=False)},
    )
    async with gateway_client(config) as gateway:
        body = await gateway.query(
            """query($rrn: String!) { resident(rrn: $rrn, purpose: TAX_ADMINISTRATION) {
                name taxes { year } } }""",
            {"rrn": HEAD_RRN},
        )
    assert body == {"data": {"resident": {"name": "Kim Min-jun", "taxes": []}}}


async def test_http_null_records_is_an_agency_failure() -> None:
    settings = {"url": "http://nts.test"}
    async with NullRecordsHTTP("nts", settings) as adapter:
        with pytest.raises(AgencyFailure, match="nts answered something that is not a batch"):
            await adapter.fetch(TAXES, [HEAD_RRN])
        config = AgencyConfig(code="nts", kind="http", url="http://nts.test", retries=0)
        [outcome] = await Agency(config, adapter, None).fetch(TAXES, [HEAD_RRN])
    assert isinstance(outcome, AgencyError)
    assert (outcome.code, outcome.agency) == ("AGENCY_UNAVAILABLE", "nts")


async def test_http_null_records_answers_agency_unavailable(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], test_kinds: None
) -> None:
    nts = AgencyConfig(code="nts", kind="null-records", url="http://nts.test", retries=0)
    config = make_config(agency_db.dsn, http_agencies, agencies={"nts": nts})
    async with gateway_client(config) as gateway:
        body = await gateway.query(
            """query($rrn: String!) { resident(rrn: $rrn, purpose: TAX_ADMINISTRATION) {
                name taxes { year } } }""",
            {"rrn": HEAD_RRN},
        )
        last_error = gateway.app.state.agencies.by_code["nts"].stats.last_error
    assert body["data"]["resident"] == {"name": "Kim Min-jun", "taxes": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "nts"}
    assert last_error == "nts answered something that is not a batch"
