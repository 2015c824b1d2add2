"""A newcomer's first command: `gateway serve` with no config, queried over a real socket."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.demo_serve import serving_demo


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_without_config_runs_the_demo(tmp_path: Path, stop: signal.Signals) -> None:
    with serving_demo(tmp_path, stop) as demo:
        url, printed = demo.url, demo.printed
        assert f"GraphiQL: {url}/graphql" in printed
        rrn = re.search(r'resident\(rrn: "(\d{6}-\d{7})"', printed)
        assert rrn, printed
        tokens = dict(re.findall(r"^  (\w+) +(\S+\.\S+\.\S+)$", printed, re.M))
        assert set(tokens) >= {"citizen", "welfare_officer", "tax_officer", "operator"}
        # The citizen reads their own record whole.
        response = httpx.post(
            f"{url}/graphql",
            json={
                "query": """{ me { rrn name household { size } insurance { insuredType }
                    taxes { year } pension { monthsContributed } militaryService { status } } }"""
            },
            headers={"Authorization": f"Bearer {tokens['citizen']}"},
            timeout=10,
        )
        body = response.json()
        assert response.status_code == 200
        assert "errors" not in body, body
        assert body["data"]["me"]["rrn"] == rrn.group(1)
        assert body["data"]["me"]["household"]["size"] >= 1
        # A welfare officer may not read military service, and the rest is served.
        response = httpx.post(
            f"{url}/graphql",
            json={
                "query": """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY)
                  { name militaryService { status } } }""",
                "variables": {"rrn": rrn.group(1)},
            },
            headers={"Authorization": f"Bearer {tokens['welfare_officer']}"},
            timeout=10,
        )
        body = response.json()
        assert body["data"]["resident"]["name"]
        assert body["data"]["resident"]["militaryService"] is None
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # No token, no data.
        response = httpx.post(f"{url}/graphql", json={"query": "{ me { name } }"}, timeout=10)
        assert response.status_code == 401
        # The demo's GraphiQL page offers the printed tokens in its role picker.
        page = httpx.get(f"{url}/graphql", headers={"Accept": "text/html"}, timeout=10).text
        assert "<title>Resident Gateway (demo)</title>" in page
        assert all(f'"token": "{tokens[role]}"' in page for role in tokens)
        examples = httpx.get(
            f"{url}/graphiql/examples",
            headers={"Authorization": f"Bearer {tokens['welfare_officer']}"},
            timeout=10,
        ).json()["examples"]
        assert examples[0]["variables"] == {"rrn": rrn.group(1)}  # the sample resident
        assert (tmp_path / "cache" / "resident-gateway" / "postgres").is_dir()
    # Ctrl-C (or SIGTERM, as a service manager sends) stops everything it started: no demo
    # agency or postgres is left behind.
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "cache")], capture_output=True, text=True
    ).stdout
    assert leftover.strip() == ""


def test_a_killed_demos_handle_does_not_keep_the_embedded_server_alive(tmp_path: Path) -> None:
    from gateway.demo.embedded import _forget_dead_handles

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / ".handle_pids.json").write_text(json.dumps([dead.pid, os.getpid()]))
    _forget_dead_handles(tmp_path)
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [os.getpid()]
