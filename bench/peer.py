"""The Node peer (Hive Gateway over stub agencies, ``/work/shared/peers/hive-gateway``) as a
bench target beside the gateway: ``python -m bench.run --targets gateway,peer``.

Install the peer once, outside this repository (npm packages only)::

    cp -r /work/shared/peers/hive-gateway /somewhere/ && chmod -R u+w /somewhere/hive-gateway
    (cd /somewhere/hive-gateway/backends && npm ci) && (cd /somewhere/hive-gateway/hive && npm ci)
    export GATEWAY_BENCH_PEER=/somewhere/hive-gateway     # default: /work/peer-layers/hive-gateway

The peer serves the same profiles over its own stub data (4,000 residents in 200 households of
20): ``full`` is its ``single`` query rotating over every resident, ``household-rotating`` its
``household`` query rotating over the 200 heads. It has no authentication, field
authorization or audit trail; ours has all three on. Its ports are fixed (4000, 41xx, 42xx):
one peer per machine at a time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from bench.stack import BenchError, ServerProcess, http_get

PEER_DIR = Path(os.environ.get("GATEWAY_BENCH_PEER", "/work/peer-layers/hive-gateway"))
PORT = 4000
#: Our scenario -> (the peer's request body file, the RRN list it rotates over).
PROFILES = {
    "full": ("single.json", "rrns_all.txt"),
    "household-rotating": ("household.json", "rrns_heads.txt"),
}
VARIANTS = {
    # JS query planner over the Mesh supergraph (3 subgraphs + 2 OpenAPI sources)
    "mesh": {"SUPERGRAPH": "./supergraph.graphql"},
    # Rust query planner over the pure-federation supergraph (needs adapters.mjs)
    "rust": {"SUPERGRAPH": "./supergraph-fed.graphql"},
}


def bodies(scenario: str) -> list[bytes] | None:
    """The peer's request bodies for one of our scenarios; None when it has no equivalent."""
    if scenario not in PROFILES:
        return None
    body_file, rrn_file = PROFILES[scenario]
    template = json.loads((PEER_DIR / "bench" / body_file).read_text())
    rrns = (PEER_DIR / "bench" / rrn_file).read_text().split()
    return [
        json.dumps({"query": template["query"], "variables": {"rrn": rrn}}).encode() for rrn in rrns
    ]


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class PeerGateway(ServerProcess):
    """The Hive Gateway process; ready once it answers a query."""

    def start(self, timeout: float = 60.0) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, cwd=PEER_DIR / "hive", env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the peer exited while starting:\n{self.log_tail()}")
            try:
                status, _ = http_get(f"{self.url}/healthcheck", timeout=1.0)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise BenchError(f"the peer did not start within {timeout:.0f} s:\n{self.log_tail()}")


class Peer:
    """The peer's stub agencies and its gateway, started and stopped together."""

    def __init__(self, workdir: Path, variant: str = "mesh") -> None:
        if not (PEER_DIR / "hive" / "node_modules").is_dir():
            raise BenchError(f"the peer is not installed in {PEER_DIR} (see bench/peer.py)")
        busy = [p for p in (PORT, 4101, 4102, 4201, 4202, 4203) if not _free(p)]
        if busy:
            raise BenchError(f"ports {busy} are taken: is another peer running?")
        self.workdir = workdir
        self.variant = variant
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.gateway: PeerGateway | None = None

    def start(self) -> PeerGateway:
        env = {**os.environ, "NODE_ENV": "production", **VARIANTS[self.variant]}
        scripts = ["backends.mjs"] + (["adapters.mjs"] if self.variant == "rust" else [])
        for script in scripts:
            with (self.workdir / f"peer-{script}.log").open("ab") as log:
                self.helpers.append(
                    subprocess.Popen(
                        ["node", script],
                        cwd=PEER_DIR / "backends",
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        args = ["node", "node_modules/@graphql-hive/gateway/dist/bin.js", "supergraph"]
        if self.variant == "rust":
            args.append("--hive-router-runtime")
        self.gateway = PeerGateway(
            f"peer-{self.variant}", args, PORT, self.workdir / "peer-gateway.log", env
        )
        self.gateway.start()
        return self.gateway

    @property
    def helper_pids(self) -> list[int]:
        return [p.pid for p in self.helpers]

    @property
    def stub_pids(self) -> list[int]:
        """The stub agencies (backends.mjs)."""
        return [p.pid for p in self.helpers[:1]]

    @property
    def adapter_pids(self) -> list[int]:
        """The Rust variant's adapter subgraphs (adapters.mjs): gateway-side work."""
        return [p.pid for p in self.helpers[1:]]

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        for process in self.helpers:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.helpers.clear()


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process, MB (from /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
