"""Start and stop the demo HTTP agencies as child processes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from types import TracebackType
from typing import Any

#: The demo agencies answer only requests carrying this variable's value as their
#: ``Authorization`` header. Made once per process (a demo start, a test session) and handed
#: to the agency processes through their environment, to the gateway by reference.
DEMO_AUTH_ENV = "GATEWAY_DEMO_AGENCY_AUTH"


def demo_agency_auth() -> str:
    """The demo agencies' credential (``Bearer ...``), made now if this process has none."""
    value = os.environ.get(DEMO_AUTH_ENV)
    if not value:
        value = os.environ[DEMO_AUTH_ENV] = f"Bearer {secrets.token_urlsafe(32)}"
    return value


def demo_agency_settings() -> dict[str, Any]:
    """What the gateway's ``[agencies.<code>]`` needs to be let in (a secret reference)."""
    demo_agency_auth()
    return {"auth_header": f"env:{DEMO_AUTH_ENV}"}


def demo_agency_headers() -> dict[str, str]:
    """Headers for talking to a demo agency directly (its /stats and /fault, in tests)."""
    return {"Authorization": demo_agency_auth()}


class AgencyProcess:
    """``gateway demo-agency`` in a child process; ``url`` is set once it listens. It answers
    only requests with ``headers``; give the gateway ``settings`` in its agency table."""

    def __init__(
        self, agency: str, dsn: str, *, delay_ms: int = 0, port: int = 0, fault: str = "ok"
    ) -> None:
        self.agency = agency
        self.args = [
            sys.executable, "-m", "gateway", "demo-agency",
            "--agency", agency, "--dsn", dsn, "--port", str(port), "--delay-ms", str(delay_ms),
            "--fault", fault,
        ]  # fmt: skip
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30) -> str:
        environ = os.environ | {DEMO_AUTH_ENV: demo_agency_auth()}
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=environ
        )
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout)
        if not line or not line[0].startswith("READY "):
            self.stop()
            raise RuntimeError(f"demo agency {self.agency} did not start: {line!r}")
        self.url = line[0].split()[1]
        return self.url

    @property
    def settings(self) -> dict[str, Any]:
        return demo_agency_settings()

    @property
    def headers(self) -> dict[str, str]:
        return demo_agency_headers()

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> AgencyProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
