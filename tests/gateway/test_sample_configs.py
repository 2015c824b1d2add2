"""The sample configurations pass their own check: the README's and gateway.example.toml,
which documents every key of the config dataclasses."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import pytest

from gateway import config
from gateway.cli import main
from gateway.runtime import DEMO_POLICY

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "gateway.example.toml"


def readme_sample() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration") :]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match, "README's Configuration section has no toml sample"
    return match.group(1)


def check(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    # The samples name policy.toml beside them and take agency credentials from variables.
    shutil.copy(DEMO_POLICY, tmp_path / "policy.toml")
    monkeypatch.setenv("NTS_AUTH", "Bearer " + "n" * 40)
    monkeypatch.setenv("MMA_AUTH", "Bearer " + "m" * 40)
    for name in [n for n in os.environ if n.startswith("GATEWAY")]:
        monkeypatch.delenv(name)
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    status = main(["check-config", "--no-connect", "--config", str(path)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_readme_sample_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = check(tmp_path, readme_sample(), capsys, monkeypatch)
    assert (status, err) == (0, ""), err
    assert out.endswith("ok (5 agencies)\n")


def test_example_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # check-config does not connect: the example's hosts (db.internal, ...) need not resolve.
    status, out, err = check(tmp_path, EXAMPLE.read_text(), capsys, monkeypatch)
    assert (status, err) == (0, ""), err
    assert out.endswith("ok (5 agencies)\n")


def sections(text: str) -> dict[str, str]:
    """Each table header's text (commented-out keys included), by header name."""
    found: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        header = re.match(r"^#?\s*\[([\w.-]+)\]", line)
        if header:
            name = header.group(1)
        found[name] = found.get(name, "") + line + "\n"
    return found


def documented(block: str, key: str) -> bool:
    return re.search(rf"^#?\s*{re.escape(key)}\s*=", block, re.M) is not None


def test_example_documents_every_key() -> None:
    blocks = sections(EXAMPLE.read_text())
    missing = []
    for section, cls in config._SECTIONS.items():
        if section not in blocks:
            missing.append(f"[{section}]")
            continue
        missing += [
            f"[{section}] {f.name}"
            for f in dataclasses.fields(cls)
            if not documented(blocks[section], f.name)
        ]
    agency_block = "".join(text for name, text in blocks.items() if name.startswith("agencies."))
    missing += [
        f"[agencies.<code>] {f.name}"
        for f in dataclasses.fields(config.AgencyConfig)
        if f.name not in ("code", "settings") and not documented(agency_block, f.name)
    ]
    assert missing == []


def test_the_key_check_notices_a_missing_key() -> None:
    blocks = sections("[server]\nhost = 1\n# port = 2\n[database]\n")
    assert documented(blocks["server"], "port")
    assert not documented(blocks["server"], "workers")
    assert not documented(blocks["database"], "url")


def test_the_compose_trials_config_passes_check_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("GATEWAY")]:
        monkeypatch.delenv(name)
    assert main(["check-config", "--config", str(ROOT / "deploy" / "gateway.toml")]) == 0
    assert capsys.readouterr().out.endswith("ok (3 agencies)\n")
