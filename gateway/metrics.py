"""Prometheus metrics (prometheus-client), correct across worker processes.

With several workers the gateway gives them a private ``PROMETHEUS_MULTIPROC_DIR``
(:func:`worker_directory`); every process then writes its samples there and a scrape of
any of them, or of the separate listener, adds up all of them. Names and labels are listed
in docs/operations.md. No label ever carries a resident's data: operations are bounded
names (:class:`OperationNames`), agencies and datasets come from the configuration, codes
from ``gateway.errors``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from gateway.config import Config, ConfigError, MetricsConfig

log = logging.getLogger(__name__)

# No *_created series: Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Outcome codes a request or an agency call is labelled with: "OK" or a contract code.
CODES = frozenset({
    "OK", "UNAUTHENTICATED", "FORBIDDEN", "CONSENT_REQUIRED", "INVALID_RRN",
    "AGENCY_UNAVAILABLE", "AGENCY_TIMEOUT", "QUERY_TOO_COMPLEX", "AUDIT_UNAVAILABLE",
    "RATE_LIMITED", "PERSISTED_QUERY_NOT_FOUND", "OPERATION_NOT_ALLOWED", "CACHE_UNAVAILABLE",
    "BAD_REQUEST", "INTERNAL",
})  # fmt: skip
#: A request with several errors is labelled with the first of these it has.
SEVERITY = (
    "INTERNAL", "AUDIT_UNAVAILABLE", "UNAUTHENTICATED", "RATE_LIMITED", "OPERATION_NOT_ALLOWED",
    "PERSISTED_QUERY_NOT_FOUND", "BAD_REQUEST", "QUERY_TOO_COMPLEX", "AGENCY_TIMEOUT",
    "AGENCY_UNAVAILABLE", "FORBIDDEN", "CONSENT_REQUIRED", "INVALID_RRN", "CACHE_UNAVAILABLE",
)  # fmt: skip
DENIALS = frozenset({"UNAUTHENTICATED", "FORBIDDEN", "CONSENT_REQUIRED", "OPERATION_NOT_ALLOWED"})
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)

REQUESTS = Counter(
    "gateway_requests_total",
    "GraphQL HTTP requests answered, by operation and outcome code.",
    ["operation", "code"],
)
REQUEST_DURATION = Histogram(
    "gateway_request_duration_seconds",
    "Time from a request's arrival to its answer, by operation and outcome code.",
    ["operation", "code"],
    buckets=LATENCY_BUCKETS,
)
DENIED = Counter(
    "gateway_authorization_denials_total",
    "Refusals a caller saw (each error entry), by code.",
    ["code"],
)
AGENCY_CALLS = Counter(
    "gateway_agency_calls_total", "Batched calls made to an agency.", ["agency", "dataset"]
)
AGENCY_BATCH = Histogram(
    "gateway_agency_batch_size",
    "Keys per batched agency call.",
    ["agency", "dataset"],
    buckets=BATCH_BUCKETS,
)
AGENCY_DURATION = Histogram(
    "gateway_agency_call_duration_seconds",
    "Time an agency took to answer a batched call (failures and timeouts included).",
    ["agency", "dataset"],
    buckets=LATENCY_BUCKETS,
)
AGENCY_ERRORS = Counter(
    "gateway_agency_errors_total",
    "Failed agency calls, by the code callers saw and why (timeout, failure, bad_answer,"
    " key_failure, circuit_open, queue_timeout).",
    ["agency", "code", "reason"],
)
AGENCY_RETRIES = Counter(
    "gateway_agency_retries_total", "Agency calls retried after a failure.", ["agency"]
)
AGENCY_STALE = Counter(
    "gateway_agency_stale_total", "Answers served stale from the cache.", ["agency"]
)
CACHE_HITS = Counter(
    "gateway_agency_cache_hits_total",
    "Keys answered fresh from the cache.",
    ["agency", "dataset"],
)
CACHE_MISSES = Counter(
    "gateway_agency_cache_misses_total",
    "Keys the cache could not answer fresh (asked of the agency).",
    ["agency", "dataset"],
)
CIRCUIT = Gauge(
    "gateway_agency_circuit_state",
    "An agency's circuit: 0 closed, 1 half-open, 2 open (the worst of the live workers).",
    ["agency"],
    multiprocess_mode="livemax",
)
AUDIT_COMMITS = Counter("gateway_audit_commits_total", "Audit transactions (group commits).")
AUDIT_RECORDS = Counter("gateway_audit_records_total", "Audit records committed.")
AUDIT_FAILURES = Counter(
    "gateway_audit_failures_total", "Audit transactions that failed (requests withheld)."
)
AUDIT_DURATION = Histogram(
    "gateway_audit_commit_duration_seconds",
    "Time to write and commit one audit group.",
    buckets=LATENCY_BUCKETS,
)
AUDIT_BATCH = Histogram(
    "gateway_audit_commit_records",
    "Audit records per committed group.",
    buckets=BATCH_BUCKETS,
)


def declare_agency(agency: str, datasets: Iterable[str]) -> None:
    """Series of a configured agency exist (at 0) before its first call."""
    for dataset in datasets:
        for metric in (AGENCY_CALLS, CACHE_HITS, CACHE_MISSES):
            metric.labels(agency, dataset)
        AGENCY_BATCH.labels(agency, dataset)
        AGENCY_DURATION.labels(agency, dataset)
    AGENCY_RETRIES.labels(agency)
    AGENCY_STALE.labels(agency)


def outcome(codes: Iterable[str]) -> str:
    """One code for a request: "OK" without errors, else its most severe."""
    found = set(codes)
    if not found:
        return "OK"
    return next((code for code in SEVERITY if code in found), "INTERNAL")


_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,63}$")


class OperationNames:
    """The ``operation`` label: a bounded set. Named operations that executed are labelled
    with their name until ``limit`` distinct names were seen by this process; after that, and
    for names that do not look like GraphQL names, "other". Requests that never executed
    (refused, malformed) are "-", unnamed documents "anonymous", batches "batch"."""

    def __init__(self, limit: int = 100, allowed: Iterable[str] = ()) -> None:
        self.limit = limit
        #: ``[metrics] operations``: when given, only these names are labelled (no caller
        #: can crowd the real operations out of the label set with names of its own).
        self.allowed = frozenset(allowed)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, names: list[str | None] | None) -> str:
        if not names:
            return "-"
        if len(names) > 1:
            return "batch"
        name = names[0]
        if name is None:
            return "anonymous"
        if not _NAME.match(name) or _has_rrn_digits(name):
            return "other"
        if self.allowed:
            return name if name in self.allowed else "other"
        with self._lock:
            if name in self._seen:
                return name
            if len(self._seen) >= self.limit:
                return "other"
            self._seen.add(name)
        return name


def _has_rrn_digits(text: str) -> bool:
    return re.search(r"\d{6}", text) is not None


# --- exposition ---------------------------------------------------------------------------


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render() -> bytes:
    """The text exposition: this process's samples, or every worker's in multiprocess mode."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def read_token(config: MetricsConfig) -> str | None:
    """The scrape token from ``token_file`` (read on every scrape: rotate it in place)."""
    if not config.token_file:
        return None
    try:
        token = Path(config.token_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"[metrics] token_file cannot be read: {exc.strerror}") from None
    if len(token) < 16:
        raise ConfigError("[metrics] token_file must hold a token of at least 16 characters")
    return token


def token_matches(config: MetricsConfig, authorization: str | None) -> bool:
    """``Authorization: Bearer <the token in token_file>``, compared in constant time. A token
    file that cannot be read or is too short just now (caught mid-rotation: ``openssl rand
    > file`` empties it first) matches nothing: the scrape is refused, not failed."""
    try:
        token = read_token(config)
    except ConfigError as exc:
        log.warning("metrics scrape refused: %s", exc)
        return False
    if token is None or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


# --- several workers --------------------------------------------------------------------


@contextlib.contextmanager
def worker_directory(workers: int) -> Iterator[Path | None]:
    """With several workers: a private, empty PROMETHEUS_MULTIPROC_DIR for this run (set in
    the environment the workers inherit), removed afterwards. One worker: nothing."""
    if workers <= 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int | None = None) -> None:
    """A worker's live gauges leave the sums (prometheus-client's ``mark_process_dead``)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


# --- the separate listener ----------------------------------------------------------------


#: A scrape's connection is closed after this long without a request (seconds).
LISTENER_TIMEOUT_S = 5.0
#: Connections served at once by the listener; more are closed at once.
LISTENER_CONNECTIONS = 32


class _QuietHandler(WSGIRequestHandler):
    timeout = LISTENER_TIMEOUT_S  # a connection that sends nothing more is dropped

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        return


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per connection (one idle connection must not stop every scrape), at most
    LISTENER_CONNECTIONS at once."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(LISTENER_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


def metrics_wsgi_app(config: MetricsConfig) -> Callable[..., Iterable[bytes]]:
    """GET /metrics only; with ``token_file`` only for its bearer token."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") != "GET":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only GET /metrics here\n"]
        if config.token_file and not token_matches(config, environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"a bearer token is required\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
        return [render()]

    return app


def open_to_all(config: MetricsConfig) -> bool:
    """``listen`` on a wildcard address without ``token_file``: anyone reaching the machine
    may read the metrics (``gateway check-config`` says so)."""
    host = config.listen.rpartition(":")[0].strip("[]")
    return bool(config.listen) and not config.token_file and host in ("", "0.0.0.0", "::")


class Listener:
    """The separate metrics listener (``[metrics] listen``), served from a thread."""

    def __init__(self, config: MetricsConfig) -> None:
        host, _, port = config.listen.rpartition(":")
        ipv6 = ":" in host  # "[::1]:9464"
        self.server = make_server(
            host.strip("[]"),
            int(port),
            metrics_wsgi_app(config),
            server_class=_ThreadingWSGIServer6 if ipv6 else _ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self.port = self.server.server_port
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="metrics-listener", daemon=True
        )

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def serving(config: Config, workers: int) -> Iterator[None]:
    """Around ``uvicorn.run``: the workers' metrics directory and the separate listener."""
    with worker_directory(workers), contextlib.ExitStack() as stack:
        if config.metrics.listen:
            try:
                stack.enter_context(Listener(config.metrics))
            except OSError as exc:
                raise ConfigError(
                    f"[metrics] listen {config.metrics.listen}: {exc.strerror}"
                ) from None
        yield
