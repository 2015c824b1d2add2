"""Watches every log line and span of the test session for a full RRN.

``tests/conftest.py`` installs it for the whole session: a logging handler that formats each
record as the gateway's own handler would (the RRN-masking filter, then the JSON formatter)
and a span processor on the global tracer provider, which the gateway uses while
``[tracing] otlp_endpoint`` is unset. Anything RRN-shaped and unmasked is recorded, and the
session fails at its end if anything was. The pattern is wider than the mask's own (a space
between the halves counts too), so a mask that misses a spelling is caught here.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.logs import OWN_IDS, JSONFormatter, install_filter

RRN_SHAPED = re.compile(r"(?<!\d)\d{6}[-\s]?\d{7}(?!\d)")
#: Span attributes holding the gateway's own hex ids (see gateway.logs.OWN_IDS).
OWN_ID_ATTRIBUTES = frozenset({"gateway.request_id"})


class Watch:
    def __init__(self) -> None:
        self.leaks: list[str] = []
        self.lines = 0
        self.spans = 0
        self.request_lines: list[dict[str, Any]] = []

    def check_line(self, line: str) -> None:
        self.lines += 1
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if isinstance(data, dict):
            if data.get("logger") == "gateway.request":
                self.request_lines.append(data)
            line = json.dumps({k: v for k, v in data.items() if k not in OWN_IDS})
        if RRN_SHAPED.search(line):
            self.leaks.append(f"log line: {line[:300]}")

    def check_span(self, span: ReadableSpan) -> None:
        self.spans += 1
        texts = [span.name, span.status.description or ""]
        texts += _values(span.attributes or {}, skip=OWN_ID_ATTRIBUTES)
        if span.context is not None:  # exported with the span, and sent on to agencies
            texts += [f"{key}={value}" for key, value in span.context.trace_state.items()]
        for event in span.events:
            texts += [event.name, *_values(event.attributes or {})]
        for text in texts:
            if RRN_SHAPED.search(text):
                self.leaks.append(f"span {span.name!r}: {text[:300]}")


def _values(attributes: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    out: list[str] = []
    for key, value in attributes.items():
        if key in skip:
            continue
        items: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
        out += [str(item) for item in items]
    return out


class LogWatch(logging.Handler):
    """Formats a copy of each record (others' handlers see it untouched) as the gateway's
    handler would, and checks the line."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(logging.DEBUG)
        self.watch = watch
        self.setFormatter(JSONFormatter())
        install_filter(self)

    def handle(self, record: logging.LogRecord) -> bool:
        return super().handle(copy.copy(record))

    def emit(self, record: logging.LogRecord) -> None:
        self.watch.check_line(self.format(record))


class SpanWatch(SpanProcessor):
    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return

    def on_end(self, span: ReadableSpan) -> None:
        self.watch.check_span(span)


class Capture(SpanProcessor):
    """Hands ended spans to an exporter while a test has one plugged in (the ``spans``
    fixture plugs in the SDK's InMemorySpanExporter)."""

    def __init__(self) -> None:
        self.exporter: SpanExporter | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return

    def on_end(self, span: ReadableSpan) -> None:
        if self.exporter is not None:
            result = self.exporter.export([span])
            assert result is SpanExportResult.SUCCESS
