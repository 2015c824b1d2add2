"""gateway persisted build | check: manifests from .graphql files, checked against the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.persisted import load_manifest, sha256_hex

OPERATIONS = """
query Codes { agencies { ...Code } }
query Resident($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { ...Named } }
"""
FRAGMENTS = """
fragment Code on AgencyStatus { code }
fragment Named on Resident { name ...Addr }
fragment Addr on Resident { address { city } }
fragment Unused on Resident { sex }
"""


def test_build_writes_an_apollo_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ops = tmp_path / "ops"
    ops.mkdir()
    (ops / "operations.graphql").write_text(OPERATIONS)
    (ops / "fragments.gql").write_text(FRAGMENTS)
    out = tmp_path / "persisted-documents.json"
    assert main(["persisted", "build", str(ops), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["format"] == "apollo-persisted-query-manifest"
    assert data["version"] == 1
    by_name = {op["name"]: op for op in data["operations"]}
    assert set(by_name) == {"Codes", "Resident"}
    resident = by_name["Resident"]
    assert resident["type"] == "query"
    assert resident["id"] == sha256_hex(resident["body"])
    # The fragments it uses, transitively, and no others.
    assert "fragment Named" in resident["body"]
    assert "fragment Addr" in resident["body"]
    assert "Unused" not in resident["body"]
    assert "fragment Code" not in resident["body"]
    assert len(load_manifest(out)) == 2
    assert main(["persisted", "check", str(out)]) == 0
    assert "2 documents valid" in capsys.readouterr().out


def test_build_refuses_an_invalid_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.graphql"
    source.write_text("query Bad { agencies { nope } }\nquery Good { agencies { code } }")
    out = tmp_path / "m.json"
    assert main(["persisted", "build", str(source), "--out", str(out)]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "Bad" in err
    assert "nope" in err
    assert "Good" not in err


def test_check_names_each_broken_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = "query Good { agencies { code } }"
    gone = "query Gone { agencies { retired } }"
    deep = "query Deep { me { household { members { household { members { household { members { household { members { household { members { household { members { name } } } } } } } } } } } } }"  # noqa: E501
    manifest = tmp_path / "persisted-documents.json"
    # The client preset's plain map form.
    manifest.write_text(json.dumps({sha256_hex(d): d for d in (good, gone, deep)}))
    assert main(["persisted", "check", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert f"{sha256_hex(gone)} (Gone)" in err
    assert "retired" in err
    assert f"{sha256_hex(deep)} (Deep)" in err  # over the depth limit
    assert "(Good)" not in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["persisted", "--help"], ["persisted", "build", "--help"],
                    ["persisted", "check", "--help"]):  # fmt: skip
        with pytest.raises(SystemExit) as exited:
            main(command)
        assert exited.value.code == 0
    assert "MANIFEST" in capsys.readouterr().out
