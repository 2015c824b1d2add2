from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import config
from gateway.cli import main
from gateway.runtime import DEMO_POLICY

GOOD = """
[server]
port = 9000
[database]
url = "postgresql://postgres@127.0.0.1/gw"
[auth]
secret = "a-development-secret-of-forty-characters!"
[audit]
key = "an-audit-key-of-at-least-thirty-two-characters"
[policy]
file = "POLICY"
[limits]
max_depth = 8
[agencies.registry]
kind = "sql"
dsn = "postgresql://postgres@127.0.0.1/agencies"
[agencies.nhis]
kind = "sql"
dsn = "postgresql://postgres@127.0.0.1/agencies"
[agencies.nps]
kind = "sql"
dsn = "postgresql://postgres@127.0.0.1/agencies"
[agencies.mma]
kind = "http"
url = "http://127.0.0.1:9101"
[agencies.nts]
kind = "http"
url = "http://127.0.0.1:9100"
timeout_ms = 500
[agencies.nts.headers]
x-api-key = "secret"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text.replace("POLICY", str(DEMO_POLICY)))
    return path


def test_file_is_read_and_env_overrides_it(tmp_path: Path) -> None:
    env = {
        "GATEWAY__SERVER__PORT": "9001",
        "GATEWAY__LIMITS__MAX_DEPTH": "6",
        "GATEWAY__AGENCIES__NTS__URL": "http://127.0.0.1:9200",
        "GATEWAY__CACHE__BACKEND": "redis",
        "GATEWAY__CACHE__URL": "redis://127.0.0.1:6379/0",
        "OTHER": "ignored",
    }
    loaded = config.load(write(tmp_path, GOOD), environ=env)
    assert loaded.server.port == 9001
    assert loaded.limits.max_depth == 6
    assert loaded.cache.backend == "redis"
    nts = loaded.agencies["nts"]
    assert (nts.kind, nts.url, nts.timeout_ms) == ("http", "http://127.0.0.1:9200", 500)
    # Keys the contract does not name still reach the adapter.
    assert nts.settings["headers"] == {"x-api-key": "secret"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[serverr]\nport = 1", "unknown section [serverr] (did you mean server?)"),
        ("[server]\nprot = 1", "[server]: unknown key prot (did you mean port?)"),
        ('[server]\nport = "eighty"', "port must be int"),
        ("[agencies.nhis]\ndsn = 'x'", "kind is required"),
        ("[agencies.nhis]\nkind = 'sql'", "a sql agency needs dsn"),
        ("[agencies.nts]\nkind = 'http'", "an http agency needs url"),
        ("[cache]\nbackend = 'memcached'", 'backend must be "memory" or "redis"'),
        ("[limits]\nmax_depth = 0", "max_depth must be at least 1"),
        ("[server\n", "gateway.toml"),
    ],
)
def test_bad_config_says_where_and_why(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.load(write(tmp_path, text), environ={})


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "ok (5 agencies)" in capsys.readouterr().out
    bad = write(
        tmp_path,
        GOOD.replace('[agencies.nhis]\nkind = "sql"', '[agencies.nhis]\nkind = "carrier-pigeon"'),
    )
    assert main(["check-config", "--config", str(bad)]) == 2
    assert "kind 'carrier-pigeon' is not installed" in capsys.readouterr().err
    assert main(["check-config", "--config", str(tmp_path / "missing.toml")]) == 2
    no_key = write(tmp_path, GOOD.replace("[audit]", "[unused]"))
    assert main(["check-config", "--config", str(no_key)]) == 2
    assert "unknown section [unused]" in capsys.readouterr().err
    no_audit = write(tmp_path, GOOD.replace('key = "an-audit', 'retention_days = 9\n# "'))
    assert main(["check-config", "--config", str(no_audit)]) == 2
    assert "[audit] key is required" in capsys.readouterr().err


def test_schema_command_prints_sdl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    sdl = capsys.readouterr().out
    assert "type Resident {" in sdl
    assert "resident(" in sdl
    assert "residents(" in sdl
    assert "scalar KRW" in sdl
