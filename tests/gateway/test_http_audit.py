"""GraphQL over HTTP: graphql-http's audit suite (npm) against a real uvicorn gateway.

Needs node and npm (CI installs them, see .ci/run); without them this test fails rather than
skips, so a missing tool cannot pass for a conforming server. The audit's packages are pinned
in tests/http_audit/package.json and installed there on first use.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.config import Config
from tests.conftest import token

AUDIT_DIR = Path(__file__).resolve().parent.parent / "http_audit"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextlib.contextmanager
def serving(config: Config, **app_options: Any) -> Iterator[str]:
    """The gateway under uvicorn on 127.0.0.1, in a thread of this process
    (``app_options``: create_app's keyword arguments)."""
    port = _free_port()
    app = create_app(config, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _npm_install() -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail(
            "node and npm are needed for the GraphQL-over-HTTP audit (graphql-http); "
            "install them (apt-get install nodejs npm; .ci/run does this)"
        )
    if (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        return
    command = "ci" if (AUDIT_DIR / "package-lock.json").is_file() else "install"
    done = subprocess.run(
        [npm, command, "--no-audit", "--no-fund"],
        cwd=AUDIT_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"npm {command} failed:\n{done.stdout}\n{done.stderr}"


def run_audit(url: str, bearer: str) -> tuple[dict[str, dict[str, int]], str]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, "audit.mjs", f"{url}/graphql"],
        cwd=AUDIT_DIR, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": str(Path(node).parent), "GATEWAY_AUDIT_TOKEN": bearer},
    )  # fmt: skip
    summary = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert summary, f"the audit printed no summary:\n{done.stdout}\n{done.stderr}"
    counts: dict[str, dict[str, int]] = json.loads(summary[-1].removeprefix("SUMMARY "))
    return counts, done.stdout


def test_graphql_over_http_audit(config: Config) -> None:
    _npm_install()
    # A role the test policy grants no query: the audits ask only for { __typename }.
    bearer = token("agency_system", agency="nts")
    with serving(config) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        counts, report = run_audit(url, bearer)
    print(report)
    print(
        f"graphql-http audit: MUST {counts['MUST']['passed']}/{counts['MUST']['total']}, "
        f"SHOULD {counts['SHOULD']['passed']}/{counts['SHOULD']['total']}"
    )
    for level in ("MUST", "SHOULD"):
        assert counts[level]["passed"] == counts[level]["total"], report
