"""`gateway serve` without a config (the embedded demo) in a child process, over a real socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Demo:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def printed(self) -> str:
        return "".join(self.output)


@contextmanager
def serving_demo(
    tmp_path: Path, stop: signal.Signals = signal.SIGINT, residents: int = 300
) -> Iterator[Demo]:
    """Start ``gateway serve`` in ``tmp_path`` (no gateway.toml there; its cache directory,
    so its own embedded PostgreSQL, under it), wait until it answers /healthz, and stop it
    with ``stop`` afterwards."""
    port = free_port()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("GATEWAY_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port),
         "--demo-residents", str(residents)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    demo = Demo(f"http://127.0.0.1:{port}", process)
    reader = threading.Thread(
        target=lambda: demo.output.extend(process.stdout),  # type: ignore[arg-type]
        daemon=True,
    )
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, demo.printed
            try:
                if httpx.get(f"{demo.url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield demo
    finally:
        process.send_signal(stop)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
        process.stdout.close()  # type: ignore[union-attr]
