"""The embedded demo takes its settings from GATEWAY__ variables too, workers included:
`GATEWAY__SERVER__WORKERS=2 gateway serve` runs two worker processes and each answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.demo_serve import free_port


def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes: children of ``parent`` started by multiprocessing."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def test_two_demo_workers_each_answer(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    env |= {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "GATEWAY__SERVER__PORT": str(port),
        "GATEWAY__SERVER__WORKERS": "2",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--demo-residents", "300"],
        cwd=tmp_path,  # no gateway.toml here
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    reader = threading.Thread(
        target=lambda: output.extend(process.stdout),  # type: ignore[arg-type]
        daemon=True,
    )
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline:
            assert process.poll() is None, "".join(output)
            workers = worker_pids(process.pid)
            try:
                if len(workers) == 2 and httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        printed = "".join(output)
        assert f"GraphiQL: {url}/graphql (2 workers)" in printed, printed
        assert len(workers) == 2, printed
        tokens = dict(re.findall(r"^  (\w+) +(\S+\.\S+\.\S+)$", printed, re.M))
        # Stop one worker, then the other: whichever runs answers alone, so both serve. Each
        # is warmed first (its first request compiles plans), and a worker stays stopped only
        # briefly: uvicorn's supervisor replaces a worker that misses its 5 s health check.
        for _ in range(4):
            httpx.post(
                f"{url}/graphql",
                json={"query": "{ me { name } }"},
                headers={"Authorization": f"Bearer {tokens['citizen']}"},
                timeout=10,
            )
        for stopped, running in (workers, workers[::-1]):
            os.kill(stopped, signal.SIGSTOP)
            try:
                for _ in range(2):  # a new connection each time
                    response = httpx.post(
                        f"{url}/graphql",
                        json={"query": "{ me { name } }"},
                        headers={"Authorization": f"Bearer {tokens['citizen']}"},
                        timeout=4,
                    )
                    assert response.status_code == 200, response.text
                    assert response.json()["data"]["me"]["name"], response.text
            finally:
                os.kill(stopped, signal.SIGCONT)
            assert worker_pids(process.pid) == sorted(workers)  # none was replaced
            assert running in workers
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
    assert not list((tmp_path / "cache" / "resident-gateway").glob("demo-state-*"))
