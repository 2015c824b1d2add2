"""What the gateway tells operators about its work. The request path (``gateway.view``), the
agencies (``gateway.agencies``) and the audit writer call the hooks here; each hook feeds the
metrics (``gateway.metrics``), the spans (``gateway.tracing``) and the request log line.

Nothing here ever sees a resident's data: hooks take codes, names, counts and durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from gateway import metrics, tracing
from gateway.logs import REQUEST_FIELDS, mask_rrns, scrub

if TYPE_CHECKING:
    from gateway.agencies import Agencies
    from gateway.config import Config
    from gateway.principal import Principal

request_log = logging.getLogger("gateway.request")

#: Outcomes that are the gateway's (or an agency's) failure, not the caller's.
FAILURES = frozenset({"INTERNAL", "AUDIT_UNAVAILABLE", "AGENCY_UNAVAILABLE", "AGENCY_TIMEOUT"})


# --- requests ------------------------------------------------------------------------------


class RequestSeen:
    """What one /graphql request did, filled in as it runs."""

    def __init__(self, request_id: str, method: str, client_request_id: str | None) -> None:
        self.request_id = request_id
        self.method = method
        self.client_request_id = client_request_id
        self.started = time.perf_counter()
        self.status = 0
        #: One entry per executed operation: its name (None: unnamed).
        self.operations: list[str | None] = []
        self.codes: list[str] = []
        self.principal: Principal | None = None
        self.purposes: set[str] = set()
        self.cost: int | None = None

    def errors(self, errors: Sequence[Mapping[str, Any]]) -> None:
        """The errors of a response (the contract's shape), as the caller sees them."""
        for error in errors:
            extensions = error.get("extensions")
            code = extensions.get("code") if isinstance(extensions, dict) else None
            self.codes.append(code if isinstance(code, str) else "INTERNAL")

    def fields(self, operation: str, outcome: str, duration_s: float) -> dict[str, Any]:
        principal = self.principal
        names = [name or "anonymous" for name in self.operations]
        return {
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "method": self.method,
            "status": self.status,
            "operation": ",".join(names)[:200] or None,
            "operation_label": operation,
            "roles": list(principal.roles) if principal else [],
            "agency": principal.agency if principal else None,
            "purposes": sorted(self.purposes),
            "duration_ms": round(duration_s * 1000, 2),
            "outcome": outcome,
            "codes": sorted(set(self.codes)),
            "cost": self.cost,
        }


_TRACE_CONTEXT = TraceContextTextMapPropagator()


def _callers_context(headers: Mapping[str, str]) -> Context:
    """The caller's trace, from its ``traceparent`` alone: its ``tracestate`` (free text the
    caller chooses, which may hold an RRN) would be kept in every span exported and sent on
    to the agencies, and its ``baggage`` too, so neither is read; nor a trace id that looks
    like an RRN."""
    traceparent = headers.get("traceparent")
    if not traceparent or mask_rrns(traceparent) != traceparent:
        # Ids are kept unmasked (log lines, spans): one holding an RRN-shaped run of digits
        # (about one random trace in 140) starts a new trace rather than carry it.
        return Context()
    return _TRACE_CONTEXT.extract({"traceparent": traceparent})


class Observer:
    """One app's observers: the operation-name label set, and its tracer."""

    def __init__(self, config: Config) -> None:
        self.names = metrics.OperationNames(
            config.metrics.max_operations, config.metrics.operations
        )
        self.tracing = tracing.Tracing(config.tracing)
        self._request_series: dict[tuple[str, str], tuple[Any, Any]] = {}

    @contextlib.contextmanager
    def request(
        self,
        headers: Mapping[str, str],
        method: str,
        request_id: str,
        client_request_id: str | None,
    ) -> Iterator[RequestSeen]:
        """Around one request: its span (a child of the caller's ``traceparent``), then its
        metrics and its log line."""
        seen = RequestSeen(request_id, method, client_request_id)
        if not self.tracing.active:
            # No span is recorded anywhere: none is made, and the request runs with no
            # current span, as under a tracer that records nothing.
            token = tracing.current.set(tracing.OFF)
            attached = otel_context.attach(trace.set_span_in_context(trace.INVALID_SPAN))
            try:
                with self._finished(seen, None):
                    yield seen
            finally:
                otel_context.detach(attached)
                tracing.current.reset(token)
            return
        tracer = self.tracing.tracer
        token = tracing.current.set(tracer)
        try:
            with tracer.start_as_current_span(
                f"{method} /graphql",
                context=_callers_context(headers),
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "http.route": "/graphql",
                    "gateway.request_id": request_id,
                },
                record_exception=False,  # an exception's text may quote anything
                set_status_on_exception=False,
            ) as span, self._finished(seen, span):  # fmt: skip
                yield seen
        finally:
            tracing.current.reset(token)

    @contextlib.contextmanager
    def _finished(self, seen: RequestSeen, span: trace.Span | None) -> Iterator[None]:
        """Metrics and the log line of ``seen`` once the request is done (inside its span)."""
        try:
            yield
        except Exception:
            seen.codes.append("INTERNAL")  # escaped the view: the server answers 500
            seen.status = seen.status or 500
            raise
        finally:
            self._finish(seen, span)

    def _series(self, operation: str, outcome: str) -> tuple[Any, Any]:
        """The request counter and histogram of (operation, outcome), bound once (both
        labels are bounded sets: ``OperationNames`` and the contract's codes)."""
        series = self._request_series.get((operation, outcome))
        if series is None:
            series = self._request_series[operation, outcome] = (
                metrics.REQUESTS.labels(operation, outcome),
                metrics.REQUEST_DURATION.labels(operation, outcome),
            )
        return series

    def _finish(self, seen: RequestSeen, span: trace.Span | None) -> None:
        duration = time.perf_counter() - seen.started
        outcome = metrics.outcome(seen.codes)
        operation = self.names.label(seen.operations)
        requests, durations = self._series(operation, outcome)
        requests.inc()
        durations.observe(duration)
        for code in seen.codes:
            if code in metrics.DENIALS:
                metrics.DENIED.labels(code).inc()
        recording = span is not None and span.is_recording()
        logged = request_log.isEnabledFor(logging.INFO)
        if not (recording or logged):
            return
        fields = seen.fields(operation, outcome, duration)
        if recording:
            assert span is not None
            span.update_name(f"graphql {operation}")
            span.set_attributes({
                "http.response.status_code": seen.status,
                "graphql.operation.name": scrub(operation),
                "gateway.outcome": outcome,
                "gateway.codes": fields["codes"],
                "gateway.roles": fields["roles"],
                "gateway.purposes": fields["purposes"],
            })  # fmt: skip
            if fields["agency"]:
                span.set_attribute("gateway.agency", fields["agency"])
            if seen.cost is not None:
                span.set_attribute("gateway.cost", seen.cost)
            if outcome in FAILURES or seen.status >= 500:
                span.set_status(Status(StatusCode.ERROR, outcome))
            fields["trace_id"] = format(span.get_span_context().trace_id, "032x")
        if logged:
            request_log.info(
                "request %s %s %s op=%s",
                seen.method,
                seen.status,
                outcome,
                fields["operation"] or "-",
                extra={REQUEST_FIELDS: fields},
            )

    def declare(self, agencies: Agencies) -> None:
        """The configured agencies' series, at 0 until they move."""
        for code in agencies.by_code:
            metrics.declare_agency(code, agencies.datasets_of(code))
        self.refresh_circuits(agencies)

    def refresh_circuits(self, agencies: Agencies) -> None:
        """This process's circuit states into the gauge (at each scrape, and every second)."""
        for code, agency in agencies.by_code.items():
            state = metrics.CIRCUIT_STATES.get(agency.breaker.state.value, 2)
            metrics.CIRCUIT.labels(code).set(state)

    async def refresh_forever(self, agencies: Agencies, every_s: float = 1.0) -> None:
        while True:
            self.refresh_circuits(agencies)
            await asyncio.sleep(every_s)

    def shutdown(self) -> None:
        self.tracing.shutdown()


class ObserveOperation(SchemaExtension):
    """Notes the name of each operation that executes (``RequestSeen.operations``)."""

    def on_execute(self) -> Iterator[None]:
        note_operation(self.execution_context)
        yield


def note_operation(execution_context: ExecutionContext) -> None:
    """The operation's name and measured cost into its request's ``RequestSeen``."""
    context = execution_context.context
    request = getattr(context, "request", None)
    seen = request.scope.get("gateway", {}).get("seen") if request is not None else None
    if isinstance(seen, RequestSeen):
        seen.operations.append(execution_context.operation_name)
        cost = getattr(context, "cost", None)  # measured by QueryLimits just before
        if isinstance(cost, int):
            seen.cost = (seen.cost or 0) + cost


# --- agencies ------------------------------------------------------------------------------


class AgencyCall:
    """One batched call to an agency, as the gateway saw it: a context manager around the
    adapter's ``fetch`` (see :func:`agency_call`)."""

    __slots__ = ("_duration", "_scope", "_span", "_started", "agency", "code", "dataset",
                 "failed_keys", "reason", "size")  # fmt: skip

    def __init__(self, agency: str = "", dataset: str = "", size: int = 0) -> None:
        self.agency, self.dataset, self.size = agency, dataset, size
        self.code = "OK"
        self.reason = ""
        self.failed_keys = 0

    def answered(self, entries: Sequence[Any], expected: int) -> None:
        """The adapter returned: a wrong count, or keys that failed, make it a failure."""
        if len(entries) != expected:
            self.code, self.reason = "AGENCY_UNAVAILABLE", "bad_answer"
            return
        self.failed_keys = sum(isinstance(entry, BaseException) for entry in entries)
        if self.failed_keys:
            self.code, self.reason = "AGENCY_UNAVAILABLE", "key_failure"

    def __enter__(self) -> AgencyCall:
        calls, batch, self._duration = _agency_series(self.agency, self.dataset)
        calls.inc()
        batch.observe(self.size)
        self._started = time.perf_counter()
        tracer = tracing.tracer()
        if tracer is tracing.OFF:  # no span is recorded anywhere: none is made
            self._scope: contextlib.AbstractContextManager[trace.Span] | None = None
            self._span: trace.Span | None = None
        else:
            self._scope = tracer.start_as_current_span(
                f"agency {self.agency} {self.dataset}",
                kind=SpanKind.CLIENT,
                attributes={
                    "gateway.agency": self.agency,
                    "gateway.dataset": self.dataset,
                    "gateway.batch_size": self.size,
                },
                record_exception=False,
                set_status_on_exception=False,
            )
            self._span = self._scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                pass
            elif issubclass(exc_type, TimeoutError):
                self.code, self.reason = "AGENCY_TIMEOUT", "timeout"
            elif issubclass(exc_type, asyncio.CancelledError):
                self.code = "CANCELLED"  # the request went away: not the agency's doing
            elif issubclass(exc_type, Exception):
                self.code, self.reason = "AGENCY_UNAVAILABLE", "failure"
            if self.code != "CANCELLED":
                self._duration.observe(time.perf_counter() - self._started)
            if self.reason:
                metrics.AGENCY_ERRORS.labels(self.agency, self.code, self.reason).inc()
            span = self._span
            if span is not None:
                span.set_attribute("gateway.outcome", self.code)
                if self.failed_keys:
                    span.set_attribute("gateway.failed_keys", self.failed_keys)
                if self.reason:
                    span.set_status(Status(StatusCode.ERROR, f"{self.code} ({self.reason})"))
        finally:
            if self._scope is not None:
                self._scope.__exit__(exc_type, exc, traceback)


#: (agency, dataset) -> its bound calls, batch-size and duration series (``labels()`` once).
_AGENCY_SERIES: dict[tuple[str, str], tuple[Any, Any, Any]] = {}


def _configured(dataset: str) -> str:
    """A metric's dataset label: the configured dataset, never a part of it
    (``adapters.records.Dataset.narrowed``, ``<name>@<digest>``): parts follow callers'
    selections, and a label per selection would grow the series without bound."""
    return dataset.partition("@")[0]


def _agency_series(agency: str, dataset: str) -> tuple[Any, Any, Any]:
    dataset = _configured(dataset)
    series = _AGENCY_SERIES.get((agency, dataset))
    if series is None:
        series = _AGENCY_SERIES[agency, dataset] = (
            metrics.AGENCY_CALLS.labels(agency, dataset),
            metrics.AGENCY_BATCH.labels(agency, dataset),
            metrics.AGENCY_DURATION.labels(agency, dataset),
        )
    return series


def agency_call(agency: str, dataset: str, size: int) -> AgencyCall:
    """Around the adapter's ``fetch`` (and the timeout around it): a span, the call, batch and
    latency metrics, and the error metric when it fails (a timeout is AGENCY_TIMEOUT)."""
    return AgencyCall(agency, dataset, size)


def agency_refused(agency: str, dataset: str, size: int, code: str, reason: str) -> None:
    """A batch answered with errors without asking the agency: its circuit is open
    (``circuit_open``), or no slot freed up in the gateway's own queue (``queue_timeout``)."""
    metrics.AGENCY_ERRORS.labels(agency, code, reason).inc()
    span = tracing.tracer().start_span(
        f"agency {agency} {dataset}",
        kind=SpanKind.CLIENT,
        attributes={
            "gateway.agency": agency,
            "gateway.dataset": dataset,
            "gateway.batch_size": size,
            "gateway.outcome": code,
            "gateway.refused": reason,
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{code} ({reason})"))
    span.end()


#: (agency, dataset) -> its bound cache hit and miss counters.
_CACHE_SERIES: dict[tuple[str, str], tuple[Any, Any]] = {}


def cache_lookup(agency: str, dataset: str, hits: int, misses: int) -> None:
    dataset = _configured(dataset)
    series = _CACHE_SERIES.get((agency, dataset))
    if series is None:
        series = _CACHE_SERIES[agency, dataset] = (
            metrics.CACHE_HITS.labels(agency, dataset),
            metrics.CACHE_MISSES.labels(agency, dataset),
        )
    if hits:
        series[0].inc(hits)
    if misses:
        series[1].inc(misses)


def agency_retry(agency: str) -> None:
    metrics.AGENCY_RETRIES.labels(agency).inc()


def agency_stale(agency: str) -> None:
    metrics.AGENCY_STALE.labels(agency).inc()


# --- the audit writer ----------------------------------------------------------------------


def audit_committed(duration_s: float, records: int) -> None:
    metrics.AUDIT_COMMITS.inc()
    metrics.AUDIT_RECORDS.inc(records)
    metrics.AUDIT_DURATION.observe(duration_s)
    metrics.AUDIT_BATCH.observe(records)


def audit_failed() -> None:
    metrics.AUDIT_FAILURES.inc()
