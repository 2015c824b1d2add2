"""`gateway schema --format sdl|json` and `gateway schema diff OLD [NEW]`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from graphql import (
    GraphQLObjectType,
    build_client_schema,
    build_schema,
    lexicographic_sort_schema,
    print_schema,
)

from gateway.cli import main

OLD = '''
"""Read things."""
type Query {
  """One resident."""
  resident(rrn: String!): Resident
  """Gone soon."""
  legacy: String
}

"""A resident."""
type Resident {
  name: String
  sex: Sex
}

enum Sex { MALE FEMALE }
'''

NEW = '''
"""Read things."""
type Query {
  """One resident, by RRN."""
  resident(rrn: String!, asOf: String): Resident
  """Gone soon."""
  legacy: String @deprecated(reason: "use resident")
}

"""A resident."""
type Resident {
  sex: Sex
  birthDate: String
}

enum Sex { MALE FEMALE UNKNOWN }

"""Household."""
type Household { size: Int }
'''


def sdl_and_json(capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, object]]:
    assert main(["schema"]) == 0
    sdl = capsys.readouterr().out
    assert main(["schema", "--format", "json"]) == 0
    introspection = json.loads(capsys.readouterr().out)
    return sdl, introspection


def test_json_is_the_introspection_result_of_the_same_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sdl, introspection = sdl_and_json(capsys)
    assert set(introspection) == {"data"}
    from_json = build_client_schema(introspection["data"])  # type: ignore[arg-type]
    assert print_schema(lexicographic_sort_schema(from_json)) == print_schema(
        lexicographic_sort_schema(build_schema(sdl))
    )
    resident = introspection["data"]["__schema"]["types"]  # type: ignore[index]
    names = {t["name"] for t in resident}
    assert {"Query", "Resident", "Purpose"} <= names


def test_printed_schema_carries_the_policy(capsys: pytest.CaptureFixture[str]) -> None:
    sdl, _ = sdl_and_json(capsys)
    # Without a config: the demo's policy, appended to the field's own description.
    resident = build_schema(sdl).type_map["Resident"]
    assert isinstance(resident, GraphQLObjectType)
    military = resident.fields["militaryService"]
    assert military.description is not None
    assert military.description.endswith(
        "\n\nAccess: citizen for SELF; military_officer for MILITARY_ADMINISTRATION."
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_diff_flags_breaking_and_dangerous_changes_and_lists_safe_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = write(tmp_path, "old.graphql", OLD), write(tmp_path, "new.graphql", NEW)
    assert main(["schema", "diff", str(old), str(new)]) == 1  # breaking: exit 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["BREAKING", "FIELD_REMOVED"],
        ["DANGEROUS", "OPTIONAL_ARG_ADDED"],
        ["DANGEROUS", "VALUE_ADDED_TO_ENUM"],
        ["SAFE", "DESCRIPTION_CHANGED"],
        ["SAFE", "DEPRECATED"],
        ["SAFE", "FIELD_ADDED"],
        ["SAFE", "TYPE_ADDED"],
    ]
    assert "Resident.name was removed." in lines[0]
    assert "Query.resident(asOf:) was added" in lines[1]
    assert "Sex.UNKNOWN was added" in lines[2]
    assert "Query.resident has a new description." in lines[3]
    assert "Query.legacy was deprecated: use resident" in lines[4]
    assert "Resident.birthDate was added." in lines[5]
    assert "Household was added." in lines[6]
    assert lines[-1] == "7 changes: 1 breaking, 2 dangerous, 4 safe"


def test_diff_without_breaking_changes_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grown = NEW + '\n"""More."""\ntype Pension { months: Int }\n'
    old, new = write(tmp_path, "old.graphql", NEW), write(tmp_path, "new.graphql", grown)
    assert main(["schema", "diff", str(old), str(new)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{'SAFE':<10} {'TYPE_ADDED':<34} Pension was added.",
        "1 changes: 0 breaking, 0 dangerous, 1 safe",
    ]


def test_diff_reads_introspection_json_and_defaults_to_the_current_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "--format", "json"]) == 0
    current = write(tmp_path, "current.json", capsys.readouterr().out)
    assert main(["schema", "diff", str(current)]) == 0
    assert capsys.readouterr().out.splitlines() == ["0 changes: 0 breaking, 0 dangerous, 0 safe"]
    # A released schema that had a field the current one lacks: removing it breaks clients.
    data = json.loads(current.read_text())
    resident = next(t for t in data["data"]["__schema"]["types"] if t["name"] == "Resident")
    resident["fields"].append(dict(resident["fields"][0], name="nickname"))
    current.write_text(json.dumps(data))
    assert main(["schema", "diff", str(current)]) == 1
    assert "BREAKING   FIELD_REMOVED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", "{}", "JSON without __schema"),
        ("bad.json", "{not json", "not a schema"),
        ("bad.graphql", "type Query {", "not a schema"),
    ],
)
def test_diff_refuses_what_is_not_a_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, message: str
) -> None:
    bad = write(tmp_path, name, text)
    good = write(tmp_path, "good.graphql", OLD)
    assert main(["schema", "diff", str(bad), str(good)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: " in err
    assert message in err
    assert main(["schema", "diff", str(tmp_path / "missing.graphql"), str(good)]) == 2
    assert "missing.graphql" in capsys.readouterr().err
