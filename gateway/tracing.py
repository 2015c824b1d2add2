"""OpenTelemetry tracing: off unless ``[tracing] otlp_endpoint`` is set.

A span per request (``gateway.observe``) and per agency batch; the W3C trace context goes to
HTTP and GraphQL agencies (``adapters.http``). Spans carry codes, names and counts, never an
RRN: no argument, variable or record value is ever put in one.

Without an endpoint the gateway uses the process's global tracer provider, which is a no-op
unless the program embedding the gateway installed an SDK provider (the test suite does).
"""

from __future__ import annotations

import contextvars

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from gateway.config import TracingConfig

INSTRUMENTATION = "resident-gateway"
EXPORT_TIMEOUT_S = 3

#: The tracer of the app serving the current request (set per request by gateway.observe).
current: contextvars.ContextVar[trace.Tracer | None] = contextvars.ContextVar(
    "gateway_tracer", default=None
)


class Tracing:
    """One app's tracer, and the provider it owns when it exports spans itself."""

    def __init__(self, config: TracingConfig) -> None:
        self.provider: TracerProvider | None = None
        if config.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Every request is sampled: a caller's traceparent flagged not-sampled is
            # continued (its trace id) but cannot keep the request out of our traces.
            self.provider = TracerProvider(
                resource=Resource.create({"service.name": config.service_name}),
                sampler=ALWAYS_ON,
            )
            # Spans are best-effort: a collector that is down costs at most a few seconds
            # (at shutdown, when the last batch is flushed), never a request.
            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint, timeout=EXPORT_TIMEOUT_S)
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
            self.tracer: trace.Tracer = self.provider.get_tracer(INSTRUMENTATION)
        else:
            self.tracer = trace.get_tracer(INSTRUMENTATION)

    @property
    def active(self) -> bool:
        """Spans are recorded somewhere: ours are exported, or the embedding program set an
        SDK provider. While not, a caller's ``traceparent`` is not continued either, so
        nothing of it is passed on to the agencies."""
        if self.provider is not None:
            return True
        return not isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
        )

    def shutdown(self) -> None:
        """Send what is pending and stop exporting."""
        if self.provider is not None:
            self.provider.shutdown()


#: The tracer of a request while no span is recorded anywhere (``Tracing.active`` is false):
#: the request's hooks skip making spans that nobody would see.
OFF: trace.Tracer = trace.NoOpTracer()


def tracer() -> trace.Tracer:
    """The current request's tracer, else the global one."""
    return current.get() or trace.get_tracer(INSTRUMENTATION)
