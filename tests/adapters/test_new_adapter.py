"""`gateway new-adapter NAME` writes a package that installs and passes its own tests."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from gateway.cli import main


def test_generated_package_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    package = tmp_path / "lris"
    assert main(["new-adapter", "land_registry", "--dir", str(package)]) == 0
    assert (package / "src/gateway_adapter_land_registry/adapter.py").is_file()

    # A fresh virtualenv that sees this one's packages (the gateway, pytest, setuptools), so
    # the install is offline and fast and leaves this environment's entry points alone.
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
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "13 passed" in run.stdout, run.stdout


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
