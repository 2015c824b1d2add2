"""`gateway new-adapter NAME` writes a package that installs and passes its own tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from tests.access.conftest import fetch
from tests.conftest import TEST_AUDIT_KEY, TEST_SECRET, ScratchDatabase
from tests.data import HEAD_RRN
from tests.demo_serve import free_port


@dataclass(frozen=True)
class Generated:
    package: Path
    python: Path  # of a fresh virtualenv where it is installed


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """`gateway new-adapter land_registry`, installed into a fresh virtualenv that sees this
    one's packages (the gateway, pytest, setuptools), so the install is offline and fast and
    leaves this environment's entry points alone."""
    tmp_path = tmp_path_factory.mktemp("new-adapter")
    package = tmp_path / "lris"
    assert main(["new-adapter", "land_registry", "--dir", str(package)]) == 0
    assert (package / "src/gateway_adapter_land_registry/adapter.py").is_file()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "_gateway_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-e", str(package)],
        check=True,
    )  # fmt: skip
    return Generated(package, python)


def test_generated_package_installs_and_passes_its_own_tests(generated: Generated) -> None:
    run = subprocess.run(
        [generated.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=generated.package,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "13 passed" in run.stdout, run.stdout


def test_generated_package_serves_its_field_end_to_end(
    generated: Generated, agency_db: ScratchDatabase, tmp_path: Path
) -> None:
    # What its README tells a newcomer: configure an agency of its kind, merge the policy
    # snippet, check the config, make a token, query the field through a running gateway.
    policy = tmp_path / "policy.toml"
    policy.write_text((generated.package / "policy.toml").read_text())
    config = tmp_path / "gateway.toml"
    config.write_text(
        GATEWAY_TOML.format(dsn=agency_db.dsn, secret=TEST_SECRET, audit_key=TEST_AUDIT_KEY)
    )

    def gateway(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(generated.python), "-m", "gateway", *args, "--config", str(config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    checked = gateway("check-config")
    assert checked.returncode == 0, checked.stderr
    assert "gateway.toml: ok (4 agencies)" in checked.stdout
    sub = "scaffold-e2e-reader"
    made = gateway("token", "--role", "land_registry_reader", "--agency", "welfare", "--sub", sub)
    assert made.returncode == 0, made.stderr
    port = free_port()
    server = subprocess.Popen(
        [generated.python, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the gateway did not start"
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        answer = httpx.post(
            f"{url}/graphql",
            json={
                "query": "query($rrn: String!) { resident(rrn: $rrn, purpose: CIVIL_PETITION) "
                "{ name landRegistry { reference registeredOn } } }",
                "variables": {"rrn": HEAD_RRN},
            },
            headers={"Authorization": f"Bearer {made.stdout.strip()}"},
            timeout=10,
        ).json()
    finally:
        server.terminate()
        server.wait(20)
        server.stderr.close()  # type: ignore[union-attr]
    assert "errors" not in answer, answer
    assert answer["data"]["resident"]["name"]
    assert answer["data"]["resident"]["landRegistry"] == {
        "reference": "REF-0001",
        "registeredOn": "2021-03-04",
    }
    rows = asyncio.run(
        fetch(agency_db.dsn, "select disclosed from gateway.audit_log where principal = $1", sub)
    )
    assert [sorted(r["disclosed"]) for r in rows] == [
        ["LandRegistry.reference", "LandRegistry.registeredOn", "Resident.landRegistry",
         "Resident.name"]
    ]  # fmt: skip


GATEWAY_TOML = """
[database]
url = "{dsn}"

[auth]
secret = "{secret}"

[audit]
key = "{audit_key}"

[policy]
file = "policy.toml"

[limits]
rate_requests = 0
rate_cost = 0

[agencies.registry]
kind = "sql"
dsn = "{dsn}"

[agencies.nhis]
kind = "sql"
dsn = "{dsn}"

[agencies.nps]
kind = "sql"
dsn = "{dsn}"

[agencies.land_registry]
kind = "land_registry"
url = "https://land-registry.example.invalid"
datasets = ["land_registry"]

[sources]
unserved = ["taxes", "military_service"]
"""


def test_refuses_an_existing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-adapter", "lris", "--dir", str(tmp_path)]) == 2
    assert f"{tmp_path} already exists" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Land-Registry", "is not a valid name"),
        ("9lives", "is not a valid name"),
        ("a", "is not a valid name"),
        ("land__registry", "is not a valid name"),
        ("class", "is a Python keyword"),
        ("sql", "already exists"),
        ("http", "already exists"),
    ],
)
def test_refuses_bad_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, problem: str
) -> None:
    assert main(["new-adapter", name, "--dir", str(tmp_path / "out")]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_default_directory_is_named_after_the_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new-adapter", "land_registry"]) == 0
    pyproject = (tmp_path / "gateway-adapter-land-registry" / "pyproject.toml").read_text()
    assert 'land_registry = "gateway_adapter_land_registry.adapter:LandRegistryAdapter"' in (
        pyproject
    )
