"""`gateway check-config` reports every problem at once: schemes, hosts, ports, agency codes
and dataset names, each with a "did you mean" and the variable a value came from."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway import config
from gateway.cli import main
from gateway.demo.processes import demo_agency_headers, demo_agency_settings
from tests.conftest import ScratchDatabase
from tests.gateway.test_config import GOOD, write

PREFIX = "gateway: configuration error: "


def problems(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], env: dict[str, str] | None = None
) -> list[str]:
    path = write(tmp_path, text)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert all(line.startswith(PREFIX) for line in lines), err
    assert "Traceback" not in err
    return [line[len(PREFIX) :] for line in lines]


def test_the_issues_examples_are_all_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        GOOD.replace('url = "http://127.0.0.1:9100"', 'url = "htps//nts example"')
        .replace('url = "postgresql://postgres@127.0.0.1/gw"', 'url = "postgress://db/gw"')
        .replace("port = 9000", "port = 99999")
        .replace("[limits]\nmax_depth = 8", "[limits]\nmax_dept = 8")
        + '\n[agencies.Bad_Code]\nkind = "sql"\ndsn = "postgresql://h/db"\ndatasets = ["pensoin"]\n'
    )
    found = problems(tmp_path, text, capsys)
    assert "[server] port 99999 is not between 1 and 65535" in found
    assert (
        "[database] url scheme postgress:// is not one of postgresql://, postgres:// "
        "(did you mean postgres?)" in found
    )
    assert (
        "[agencies.nts]: url is not a URL: it must start with http:// or https:// "
        "(did you mean https?)" in found
    )
    assert "[limits]: unknown key max_dept (did you mean max_depth?)" in found
    assert any(p.startswith("[agencies.Bad_Code]: 'Bad_Code' is not an agency code") for p in found)
    assert any(
        p.startswith(
            "[agencies.Bad_Code]: datasets: unknown dataset pensoin (did you mean pension?)"
        )
        for p in found
    )
    assert len(found) == 6, found


@pytest.mark.parametrize(
    ("replace", "by", "problem"),
    [
        (
            'url = "http://127.0.0.1:9101"',
            'url = "ftp://127.0.0.1:9101"',
            "[agencies.mma]: url scheme ftp:// is not one of http://, https://",
        ),
        (
            'url = "http://127.0.0.1:9101"',
            'url = "http://mma agency:9101"',
            "[agencies.mma]: url 'mma agency' is not a host name or IP address",
        ),
        (
            'url = "http://127.0.0.1:9101"',
            'url = "http://127.0.0.1:0"',
            "[agencies.mma]: url port 0 is not between 1 and 65535",
        ),
        (
            'url = "http://127.0.0.1:9101"',
            'url = "http://:9101"',
            "[agencies.mma]: url has no host",
        ),
        (
            'dsn = "postgresql://postgres@127.0.0.1/agencies"\n[agencies.nps]',
            'dsn = "mysql://postgres@127.0.0.1:70000/agencies"\n[agencies.nps]',
            "[agencies.nhis]: dsn scheme mysql:// is not one of postgresql://, postgres://",
        ),
        (
            "[server]\n",
            '[server]\nhost = "0.0.0.0:80"\n',
            "[server] host: '0.0.0.0:80' is not a host name or IP address",
        ),
        (
            "[server]\n",
            '[cache]\nbackend = "redis"\nurl = "http://127.0.0.1:6379"\n[server]\n',
            "[cache] url scheme http:// is not one of redis://, rediss://, unix://",
        ),
        (
            "[auth]\n",
            '[auth]\njwks_url = "idp.example/jwks.json"\n',
            "[auth] jwks_url is not a URL: it must start with http:// or https://",
        ),
        (
            "[cache]",
            "[cach]",
            "unknown section [cach] (did you mean cache?)",
        ),
        (
            "[server]\n",
            '[server]\n[persisted]\nmode = "trusteed"\n',
            '[persisted] mode must be "off", "apq" or "trusted" (did you mean trusted?)',
        ),
    ],
)
def test_each_endpoint_problem_is_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    replace: str,
    by: str,
    problem: str,
) -> None:
    text = GOOD.replace(replace, by, 1)
    assert text != GOOD or replace == "[cache]"
    if replace == "[cache]":
        text = GOOD + "\n[cach]\nbackend = 'memory'\n"
    assert problem in problems(tmp_path, text, capsys)


def test_a_password_in_a_bad_dsn_is_never_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace(
        'url = "postgresql://postgres@127.0.0.1/gw"',
        'url = "postgress://gateway:hunter2-secret@db:99999/gw"',
    )
    found = problems(tmp_path, text, capsys)
    assert not any("hunter2" in line for line in found)
    assert any(line.startswith("[database] url scheme postgress://") for line in found)


def test_values_from_the_environment_name_their_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "GATEWAY__SERVER__PORT": "70000",
        "GATEWAY__AGENCIES__NTS__URL": "http//nts",
        "GATEWAY__AUTH__SECRET": "short",
        "GATEWAY__LIMITS__MAX_DEPHT": "3",
    }
    found = problems(tmp_path, GOOD, capsys, env)
    assert "[server] port 70000 is not between 1 and 65535 (set by $GATEWAY__SERVER__PORT)" in found
    assert any(
        line.startswith("[agencies.nts]: url is not a URL")
        and line.endswith("(set by $GATEWAY__AGENCIES__NTS__URL)")
        for line in found
    )
    assert (
        "[limits]: unknown key max_depht (did you mean max_depth?) "
        "(set by $GATEWAY__LIMITS__MAX_DEPHT)" in found
    )
    # load() stops at the file's problems; the secret's length is checked with the rest of
    # what serving needs, once the file loads.
    assert len(found) == 3, found
    env.pop("GATEWAY__SERVER__PORT")
    env.pop("GATEWAY__AGENCIES__NTS__URL")
    env.pop("GATEWAY__LIMITS__MAX_DEPHT")
    assert problems(tmp_path, GOOD, capsys, env) == [
        "[auth] secret must be at least 32 characters (set by $GATEWAY__AUTH__SECRET)"
    ]


def test_serving_checks_report_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace(
        'secret = "a-development-secret-of-forty-characters!"', 'secret = "too short"'
    ).replace('key = "an-audit-key-of-at-least-thirty-two-characters"', 'key = "short too"')
    text = text.replace('[agencies.nps]\nkind = "sql"', '[agencies.nps]\nkind = "carrier-pigeon"')
    found = problems(tmp_path, text, capsys)
    assert "[auth] secret must be at least 32 characters" in found
    assert "[audit] key must be at least 32 characters" in found
    assert any("kind 'carrier-pigeon' is not installed" in line for line in found)


def test_good_endpoints_pass() -> None:
    for value, schemes in [
        ("postgresql://gw:pw@db.internal:6432/gateway?sslmode=require", config.POSTGRES_SCHEMES),
        ("postgresql://postgres:@/postgres?host=/tmp/x", config.POSTGRES_SCHEMES),
        ("postgres://h1:5432,h2:5433/db", config.POSTGRES_SCHEMES),
        ("https://[::1]:8443/jwks.json", config.HTTP_SCHEMES),
        ("rediss://:pw@redis-1.internal:6380/0", config.REDIS_SCHEMES),
    ]:
        assert config.endpoint_problem(value, schemes, host_required=False) is None, value


def test_check_config_reaches_each_agency_and_prints_a_table(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn = agency_db.dsn
    text = (
        GOOD.replace("postgresql://postgres@127.0.0.1/gw", dsn)
        .replace("postgresql://postgres@127.0.0.1/agencies", dsn)
        .replace('url = "http://127.0.0.1:9101"', f'url = "{http_agencies["mma"]}"')
        # nts: nothing listens on port 9
        .replace('url = "http://127.0.0.1:9100"', 'url = "http://127.0.0.1:9"')
        .replace('x-api-key = "secret"', "")
        .replace("[agencies.nts.headers]", "")
    )
    text = text.replace(
        f'url = "{http_agencies["mma"]}"',
        f'url = "{http_agencies["mma"]}"\nauth_header = "{demo_agency_settings()["auth_header"]}"',
    )
    path = write(tmp_path, text)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split() for line in out.splitlines() if "  " in line}
    assert table["AGENCY"] == ["AGENCY", "KIND", "ENDPOINT", "STATE"]
    host = urlsplit(dsn).netloc.rpartition("@")[2]
    for name in ("(store)", "registry", "nhis", "nps"):
        assert table[name][2].startswith(f"postgresql://{host}"), out
        assert table[name][3] == "up", out
    assert table["mma"][1:4] == ["http", http_agencies["mma"], "up"], out
    assert table["nts"][1:4] == ["http", "http://127.0.0.1:9", "DOWN:"], out
    assert "note: 1 of 6 endpoints could not be reached" in out
    assert out.endswith("ok (5 agencies)\n")
    assert demo_agency_headers()["Authorization"].split()[-1] not in out
    # --strict: a down agency fails the check.
    assert main(["check-config", "--config", str(path), "--strict"]) == 1
    capsys.readouterr()


def test_overrides_apply_to_a_config_built_in_memory(tmp_path: Path) -> None:
    """What the embedded demo does with GATEWAY__ variables (gateway.config.overlay)."""
    base = config.load(write(tmp_path, GOOD), environ={})
    env = {
        "GATEWAY__SERVER__WORKERS": "3",
        "GATEWAY__LIMITS__MAX_DEPTH": "5",
        "GATEWAY__AGENCIES__NTS__TIMEOUT_MS": "750",
    }
    merged = config.overlay(base, env)
    assert (merged.server.workers, merged.server.port) == (3, 9000)
    assert merged.limits.max_depth == 5
    assert merged.agencies["nts"].timeout_ms == 750
    assert merged.agencies["nts"].url == base.agencies["nts"].url
    assert merged.agencies["nts"].settings["headers"] == {"x-api-key": "secret"}
    assert merged.agencies["registry"] == base.agencies["registry"]
    assert config.overlay(base, {}) is base
    with pytest.raises(config.ConfigError) as raised:
        config.overlay(base, {"GATEWAY__SERVER__PORT": "0", "GATEWAY__CACHE__BACKEND": "redi"})
    assert raised.value.problems == [
        "[server] port 0 is not between 1 and 65535 (set by $GATEWAY__SERVER__PORT)",
        '[cache] backend must be "memory" or "redis" (did you mean redis?) '
        "(set by $GATEWAY__CACHE__BACKEND)",
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('secret = "a-development-secret-of-forty-characters!"', "secret = " + "8" * 40),
        (
            'key = "an-audit-key-of-at-least-thirty-two-characters"',
            "key = [1234567890123456789, 987654321987654321]",
        ),
    ],
)
def test_a_wrong_typed_secret_is_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str
) -> None:
    """check-config (and serve) print their problems to stderr, which orchestrators keep:
    a secret of the wrong type (a number in TOML, say) is named, never quoted."""
    assert old in GOOD
    found = problems(tmp_path, GOOD.replace(old, new), capsys)
    [line] = [p for p in found if "must be str, got" in p]
    assert "got a value of type" in line, line
    for digits in ("8" * 40, "1234567890123456789"):
        assert digits not in "\n".join(found)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://gw:Pw/Secr3tW0rd@127.0.0.1/gw",  # '/' in the password, not encoded
        "postgresql://gw:Pw#Secr3tW0rd@127.0.0.1/gw",
        "postgresql://gw:Pw?Secr3tW0rd@127.0.0.1/gw",
        "postgresql://gw:Pw@Secr3tW0rd?x@127.0.0.1/gw",
        "postgresql://gw:Pw:Secr3tW0rd/gw@127.0.0.1",
        "postgresql://gw:PwSecr3tW0rd/gw",  # the host forgotten
        "redis://:Pw/Secr3tW0rd@127.0.0.1:6379/0",
    ],
)
def test_a_dsn_whose_password_breaks_parsing_is_refused_without_quoting_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """A password holding '/', '?', '#', '@' or ':' unencoded splits the URL elsewhere than
    its author meant: the part taken for the host or the port is the password. The problem
    says so without repeating either."""
    variable = "GATEWAY__CACHE__URL" if url.startswith("redis") else "GATEWAY__DATABASE__URL"
    found = problems(tmp_path, GOOD, capsys, {variable: url})
    [line] = [p for p in found if f"(set by ${variable})" in p]
    assert "percent-encode" in line, line
    for secret in ("Secr3tW0rd", "Pw"):
        assert secret not in line, line


def test_an_open_metrics_listener_on_every_interface_is_pointed_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[metrics] listen`` on a wildcard address without ``token_file`` serves the metrics
    to anyone who reaches the machine: check-config says so (it is allowed: a firewall may
    stand in front)."""
    path = write(tmp_path, GOOD + '\n[metrics]\nlisten = "0.0.0.0:9464"\n')
    assert main(["check-config", "--config", str(path), "--no-connect"]) == 0
    out = capsys.readouterr().out
    assert "note: [metrics] listen 0.0.0.0:9464 serves /metrics without a token" in out
    path = write(tmp_path, GOOD + '\n[metrics]\nlisten = "127.0.0.1:9464"\n')
    assert main(["check-config", "--config", str(path), "--no-connect"]) == 0
    assert "[metrics] listen" not in capsys.readouterr().out


def test_an_all_digit_secret_from_the_environment_stays_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An environment variable is text: a secret or key made only of digits (or reading as
    ``true``) is that text for a key that takes text, not a TOML number refused as one.
    Keys that take numbers still read them."""
    digits = "7" * 40
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GATEWAY__AUTH__SECRET", digits)
        patch.setenv("GATEWAY__AUDIT__KEY", "1234567890" * 4)
        patch.setenv("GATEWAY__SERVER__PORT", "9123")
        patch.setenv("GATEWAY__LIMITS__INTROSPECTION", "false")
        patch.setenv("GATEWAY__TRACING__SERVICE_NAME", '"quoted"')  # TOML text: unquoted
        loaded = config.load(write(tmp_path, GOOD))
    assert loaded.auth.secret == digits
    assert loaded.audit.key == "1234567890" * 4
    assert loaded.server.port == 9123
    assert loaded.limits.introspection is False
    assert loaded.tracing.service_name == "quoted"
