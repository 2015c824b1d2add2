"""Start and stop the demo HTTP agencies as child processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from types import TracebackType


class AgencyProcess:
    """``gateway demo-agency`` in a child process; ``url`` is set once it listens."""

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
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
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
