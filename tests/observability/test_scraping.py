"""How Prometheus scrapes: a static bearer token from ``[metrics] token_file``, a separate
listener on ``[metrics] listen``, and one count across several worker processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.config import Config, ConfigError, MetricsConfig, from_dict
from gateway.demo.processes import demo_agency_settings
from gateway.metrics import Listener
from tests.conftest import (
    ALLOW_ALL,
    TEST_AUDIT_KEY,
    TEST_SECRET,
    ScratchDatabase,
    gateway_client,
    token,
)
from tests.observability.conftest import parse, value
from tests.resilience.conftest import free_port
from tests.test_demo_workers import worker_pids

SCRAPE_TOKEN = "scrape-" + "z" * 40


def token_file(tmp_path: Path, text: str = SCRAPE_TOKEN) -> Path:
    path = tmp_path / "metrics-token"
    path.write_text(text + "\n")  # as `openssl rand -hex 32 > file` leaves it
    return path


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_a_static_token_from_token_file_is_what_prometheus_sends(
    config: Config, tmp_path: Path
) -> None:
    path = token_file(tmp_path)
    scraped = dataclasses.replace(config, metrics=MetricsConfig(token_file=str(path)))
    async with gateway_client(scraped) as gateway:
        await gateway.query("{ agencies { code } }")
        ok = await gateway.http.get("/metrics", headers=bearer(SCRAPE_TOKEN))
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain")
        assert value(parse(ok.text), "gateway_requests_total") >= 1

        for headers in ({}, bearer("scrape-" + "y" * 40), {"Authorization": SCRAPE_TOKEN}):
            refused = await gateway.http.get("/metrics", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert "gateway_" not in refused.text

        # The token file is read at each scrape: rotated in place, the old token is refused.
        token_file(tmp_path, "rotated-" + "r" * 40)
        assert (await gateway.http.get("/metrics", headers=bearer(SCRAPE_TOKEN))).status_code == 401
        rotated = await gateway.http.get("/metrics", headers=bearer("rotated-" + "r" * 40))
        assert rotated.status_code == 200

        # An operator's token still works (a person with curl), a role without the right not.
        assert (await gateway.http.get("/metrics", headers=bearer(token("tester")))).is_success


def test_a_token_file_that_is_missing_or_short_stops_start_up(
    config: Config, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"\[metrics\] token_file: .* does not exist"):
        from_dict({"metrics": {"token_file": str(tmp_path / "absent")}})
    short = token_file(tmp_path, "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        create_app(dataclasses.replace(config, metrics=MetricsConfig(token_file=str(short))))
    for listen in ("9464", "127.0.0.1:99999", ":9464"):
        with pytest.raises(ConfigError, match=r'\[metrics\] listen must be "HOST:PORT"'):
            from_dict({"metrics": {"listen": listen}})


def test_the_separate_listener_serves_only_metrics_and_only_with_the_token(
    tmp_path: Path,
) -> None:
    path = token_file(tmp_path)
    with Listener(MetricsConfig(listen="127.0.0.1:0", token_file=str(path))) as listener:
        url = f"http://127.0.0.1:{listener.port}"
        ok = httpx.get(f"{url}/metrics", headers=bearer(SCRAPE_TOKEN))
        assert ok.status_code == 200
        assert "# TYPE gateway_requests_total counter" in ok.text
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers=bearer("x" * 40)).status_code == 401
        assert httpx.get(f"{url}/graphql", headers=bearer(SCRAPE_TOKEN)).status_code == 404
    with Listener(MetricsConfig(listen="127.0.0.1:0")) as open_listener:
        # Without a token file: for an internal address only (docs/operations.md).
        assert httpx.get(f"http://127.0.0.1:{open_listener.port}/metrics").status_code == 200


# --- several workers ------------------------------------------------------------------------


def write_config(
    tmp_path: Path, dsn: str, urls: dict[str, str], *, port: int, listen: int, workers: int
) -> Path:
    auth = demo_agency_settings()["auth_header"]  # the demo agencies' credential
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[server]
port = {port}
workers = {workers}
[database]
url = "{dsn}"
[auth]
secret = "{TEST_SECRET}"
[audit]
key = "{TEST_AUDIT_KEY}"
[policy]
file = "{ALLOW_ALL}"
[log]
format = "json"
[metrics]
listen = "127.0.0.1:{listen}"
token_file = "{token_file(tmp_path)}"
[agencies.nts]
kind = "http"
url = "{urls["nts"]}"
auth_header = "{auth}"
[agencies.mma]
kind = "http"
url = "{urls["mma"]}"
auth_header = "{auth}"
[agencies.registry]
kind = "sql"
dsn = "{dsn}"
[agencies.nhis]
kind = "sql"
dsn = "{dsn}"
[agencies.nps]
kind = "sql"
dsn = "{dsn}"
"""
    )
    return path


def test_two_workers_are_counted_as_one_gateway(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    port, listen = free_port(), free_port()
    path = write_config(tmp_path, agency_db.dsn, http_agencies, port=port, listen=listen, workers=2)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or ()), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    requests = 40
    try:
        deadline = time.monotonic() + 90
        workers: list[int] = []
        while True:
            assert process.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            workers = worker_pids(process.pid)
            try:
                if len(workers) == 2 and httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        [directory] = list(scratch.glob("gateway-metrics-*"))

        def one(_: int) -> int:
            response = httpx.post(  # a connection each, 8 at a time: both workers serve
                f"{url}/graphql",
                json={"query": "query Census { agencies { code } }"},
                headers=bearer(token("tester")),
                timeout=30,
            )
            return response.status_code

        # Half the requests with one worker stopped, half with the other: each serves some,
        # whichever way the kernel would have spread the connections (a fast worker can take
        # them all). A worker stays stopped briefly: uvicorn replaces one that misses its 5 s
        # health check.
        for stopped in (workers[0], workers[1]):
            os.kill(stopped, signal.SIGSTOP)
            try:
                with ThreadPoolExecutor(8) as pool:
                    got = list(pool.map(one, range(requests // 2)))
                assert got == [200] * (requests // 2)
            finally:
                os.kill(stopped, signal.SIGCONT)
        assert worker_pids(process.pid) == workers  # none was replaced
        listener = httpx.get(f"http://127.0.0.1:{listen}/metrics", headers=bearer(SCRAPE_TOKEN))
        assert listener.status_code == 200
        census = {"operation": "Census"}
        counts = [value(parse(listener.text), "gateway_requests_total", **census)]
        for _ in range(4):  # whichever worker answers, it reports both
            scrape = httpx.get(f"{url}/metrics", headers=bearer(SCRAPE_TOKEN))
            counts.append(value(parse(scrape.text), "gateway_requests_total", **census))
        assert counts == [requests] * 5
        assert list(directory.glob("*.db"))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()
    lines = [json.loads(line) for line in output if line.startswith("{")]
    served_by = {line["pid"] for line in lines if line.get("operation") == "Census"}
    assert len(served_by) == 2, served_by  # both workers answered some
    assert not list(scratch.glob("gateway-metrics-*"))  # the private directory is gone


async def test_a_token_file_caught_mid_rotation_refuses_and_does_not_fail(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``openssl rand -hex 32 > file`` empties the file before writing it, and a rotation may
    replace it by a rename: a scrape in between is refused (401), never a 500 with a
    traceback, and an operator's token still works on the main port and the listener answers."""
    path = token_file(tmp_path)
    scraped = dataclasses.replace(config, metrics=MetricsConfig(token_file=str(path)))
    async with gateway_client(scraped) as gateway:
        with Listener(MetricsConfig(listen="127.0.0.1:0", token_file=str(path))) as listener:
            url = f"http://127.0.0.1:{listener.port}/metrics"
            direct = httpx.AsyncClient()
            for broken in ("empty", "missing"):
                if broken == "empty":
                    path.write_text("")
                else:
                    path.unlink()
                main = await gateway.http.get("/metrics", headers=bearer(SCRAPE_TOKEN))
                assert main.status_code == 401, main.text
                assert main.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
                operator = await gateway.http.get("/metrics", headers=bearer(token("tester")))
                assert operator.status_code == 200, operator.text
                refused = await direct.get(url, headers=bearer(SCRAPE_TOKEN))
                assert refused.status_code == 401
            token_file(tmp_path)
            assert (await gateway.http.get("/metrics", headers=bearer(SCRAPE_TOKEN))).is_success
            assert (await direct.get(url, headers=bearer(SCRAPE_TOKEN))).status_code == 200
            await direct.aclose()
    assert not [r for r in caplog.records if r.exc_info or r.exc_text], caplog.text
    assert "token_file" in caplog.text  # the operator is told why scrapes are refused


def test_the_separate_listener_binds_an_ipv6_address(tmp_path: Path) -> None:
    """``listen = "[::1]:PORT"`` passes the configuration check, so it must bind too."""
    path = token_file(tmp_path)
    with Listener(MetricsConfig(listen="[::1]:0", token_file=str(path))) as listener:
        ok = httpx.get(f"http://[::1]:{listener.port}/metrics", headers=bearer(SCRAPE_TOKEN))
        assert ok.status_code == 200
        assert "# TYPE gateway_requests_total counter" in ok.text


def test_an_idle_connection_does_not_stop_the_listener(tmp_path: Path) -> None:
    """Anyone who reaches the listener can open a connection and send nothing more: scrapes
    go on meanwhile, and the idle connection is closed after a while."""
    path = token_file(tmp_path)
    with Listener(MetricsConfig(listen="127.0.0.1:0", token_file=str(path))) as listener:
        idle = socket.create_connection(("127.0.0.1", listener.port))
        try:
            idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
            time.sleep(0.2)
            ok = httpx.get(
                f"http://127.0.0.1:{listener.port}/metrics",
                headers=bearer(SCRAPE_TOKEN),
                timeout=5,
            )
            assert ok.status_code == 200
            idle.settimeout(30)
            assert idle.recv(1024) == b""  # closed by the listener, well before 30 s
        finally:
            idle.close()
