"""OpenTelemetry: a span per request and per agency batch, the W3C trace context sent to HTTP
and GraphQL agencies, OTLP/HTTP export when ``[tracing] otlp_endpoint`` is set."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from opentelemetry import trace as trace_api
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.config import Config, PolicyConfig, TracingConfig
from gateway.logs import JSONFormatter
from gateway.tracing import Tracing
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN
from tests.federation.conftest import POLICY, vehicle_agency
from tests.federation.subgraph_server import Subgraph
from tests.federation.subgraph_server import serving as serving_subgraph
from tests.federation.test_subgraph import QUERY
from tests.resilience.conftest import TAXES, http_agency
from tests.rrn_watch import RRN_SHAPED

NAMED_TAXES = TAXES.replace("query(", "query Taxes(", 1)


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name.startswith(prefix)]


async def request_span(
    config: Config, spans: InMemorySpanExporter, traceparent: str
) -> ReadableSpan:
    """The span of one request sent with ``traceparent``."""
    async with gateway_client(config) as gateway:
        response = await gateway.http.post(
            "/graphql",
            json={"query": "query Agencies { agencies { code } }"},
            headers={**gateway.headers, "traceparent": traceparent},
        )
        assert response.status_code == 200
    [request] = by_name(spans.get_finished_spans(), "graphql ")
    assert request.context is not None
    return request


async def test_a_span_per_request_and_per_agency_batch(
    config: Config, spans: InMemorySpanExporter
) -> None:
    async with gateway_client(config) as gateway:
        body = await gateway.query(NAMED_TAXES, {"rrn": HEAD_RRN})
        assert "errors" not in body, body
    ended = spans.get_finished_spans()
    [request] = by_name(ended, "graphql ")
    assert request.name == "graphql Taxes"
    assert request.kind is SpanKind.SERVER
    attributes = dict(request.attributes or {})
    assert attributes["gateway.outcome"] == "OK"
    assert attributes["http.response.status_code"] == 200
    assert attributes["graphql.operation.name"] == "Taxes"
    assert attributes["gateway.roles"] == ("tester",)
    assert attributes["gateway.purposes"] == ("TAX_ADMINISTRATION",)
    assert isinstance(attributes["gateway.cost"], int)
    assert len(str(attributes["gateway.request_id"])) == 32

    batches = by_name(ended, "agency ")
    assert {span.name for span in batches} == {
        "agency registry resident", "agency nhis insurance", "agency nts taxes"
    }  # fmt: skip
    assert request.context is not None
    for span in batches:
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == request.context.span_id
        assert span.context is not None
        assert span.context.trace_id == request.context.trace_id
        batch = dict(span.attributes or {})
        assert batch["gateway.batch_size"] == 1
        assert batch["gateway.outcome"] == "OK"
        assert batch["gateway.agency"] == span.name.split()[1]
        assert batch["gateway.dataset"] == span.name.split()[2]
    # Nothing of the resident: the RRN looked up is in no span, in any spelling.
    for span in ended:
        text = repr(dict(span.attributes or {})) + span.name
        assert HEAD_RRN not in text
        assert HEAD_RRN.replace("-", "") not in text
        assert not RRN_SHAPED.search(text.replace(str(attributes["gateway.request_id"]), ""))


async def test_a_failed_batch_span_says_why(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], spans: InMemorySpanExporter
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", "http://127.0.0.1:9", retries=0)},
    )
    async with gateway_client(config) as gateway:
        await gateway.query(NAMED_TAXES, {"rrn": HEAD_RRN})
    [batch] = by_name(spans.get_finished_spans(), "agency nts")
    assert dict(batch.attributes or {})["gateway.outcome"] == "AGENCY_UNAVAILABLE"
    assert batch.status.description == "AGENCY_UNAVAILABLE (failure)"
    [request] = by_name(spans.get_finished_spans(), "graphql ")
    assert dict(request.attributes or {})["gateway.outcome"] == "AGENCY_UNAVAILABLE"


async def test_the_callers_trace_context_is_continued(
    config: Config, spans: InMemorySpanExporter
) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    request = await request_span(config, spans, f"00-{trace_id}-{parent}-01")
    assert request.parent is not None
    assert format(request.context.trace_id, "032x") == trace_id
    assert format(request.parent.span_id, "016x") == parent


# --- W3C trace context to the agencies ------------------------------------------------------


@dataclasses.dataclass
class Recorder:
    url: str
    traceparents: list[str | None] = dataclasses.field(default_factory=list)
    headers: list[dict[str, str]] = dataclasses.field(default_factory=list)
    bodies: list[bytes] = dataclasses.field(default_factory=list)


@contextmanager
def recording_server(routes: list[Route], state: dict[str, Any]) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=routes), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the recording server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def tax_agency() -> Iterator[Recorder]:
    """An nts speaking the HTTP batch protocol that has no records and notes the headers."""
    state: dict[str, Any] = {}

    async def batch(request: Request) -> Response:
        recorder: Recorder = state["recorder"]
        recorder.traceparents.append(request.headers.get("traceparent"))
        recorder.headers.append(dict(request.headers))
        keys = (await request.json())["keys"]
        return JSONResponse({"records": [None] * len(keys)})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [Route("/v1/taxes:batch", batch, methods=["POST"]), Route("/healthz", healthz)]
    with recording_server(routes, state) as url:
        state["recorder"] = recorder = Recorder(url)
        yield recorder


def parent_of(traceparent: str | None) -> tuple[int, int]:
    assert traceparent is not None
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    return int(trace_id, 16), int(span_id, 16)


async def test_the_trace_context_goes_to_http_agencies(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], spans: InMemorySpanExporter
) -> None:
    with tax_agency() as nts:
        config = make_config(
            agency_db.dsn, http_agencies, agencies={"nts": http_agency("nts", nts.url)}
        )
        async with gateway_client(config) as gateway:
            body = await gateway.query(NAMED_TAXES, {"rrn": HEAD_RRN})
            assert body["data"]["resident"]["taxes"] == []
    [batch] = by_name(spans.get_finished_spans(), "agency nts")
    assert batch.context is not None
    assert len(nts.traceparents) == 1
    assert parent_of(nts.traceparents[0]) == (batch.context.trace_id, batch.context.span_id)


async def test_a_callers_tracestate_and_baggage_go_nowhere(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], spans: InMemorySpanExporter
) -> None:
    """Only the caller's ``traceparent`` is continued: its ``tracestate`` (free text a hostile
    caller fills with an RRN) is neither kept in the spans exported nor sent to an agency, and
    neither is its ``baggage``."""
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with tax_agency() as nts:
        config = make_config(
            agency_db.dsn, http_agencies, agencies={"nts": http_agency("nts", nts.url)}
        )
        async with gateway_client(config) as gateway:
            response = await gateway.http.post(
                "/graphql",
                json={"query": NAMED_TAXES, "variables": {"rrn": HEAD_RRN}},
                headers={
                    **gateway.headers,
                    "traceparent": f"00-{trace_id}-{parent}-01",
                    "tracestate": f"leak={HEAD_RRN}",
                    "baggage": f"leak={HEAD_RRN}",
                },
            )
            assert response.json()["data"]["resident"]["taxes"] == []
    [sent] = nts.headers
    assert parent_of(sent["traceparent"])[0] == int(trace_id, 16)  # the trace is continued
    assert HEAD_RRN not in repr(sent), sent
    ended = spans.get_finished_spans()
    [request] = by_name(ended, "graphql ")
    [batch] = by_name(ended, "agency nts")
    for span in (request, batch):
        assert span.context is not None
        assert HEAD_RRN not in repr(span.context.trace_state), span.context.trace_state
        assert format(span.context.trace_id, "032x") == trace_id


async def test_with_tracing_off_no_span_is_made_and_no_trace_context_is_passed_on(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A program that set no tracer provider: spans would be recorded nowhere.
    monkeypatch.setattr(trace_api, "get_tracer_provider", trace_api.ProxyTracerProvider)
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with tax_agency() as nts:
        config = make_config(
            agency_db.dsn, http_agencies, agencies={"nts": http_agency("nts", nts.url)}
        )
        async with gateway_client(config) as gateway:
            response = await gateway.http.post(
                "/graphql",
                json={"query": NAMED_TAXES, "variables": {"rrn": HEAD_RRN}},
                headers={**gateway.headers, "traceparent": caller},
            )
            assert response.status_code == 200
            assert response.json()["data"]["resident"]["taxes"] == []
            metrics = await gateway.http.get("/metrics", headers=gateway.headers)
    assert nts.traceparents == [None]
    assert by_name(spans.get_finished_spans(), "graphql ") == []
    assert by_name(spans.get_finished_spans(), "agency ") == []
    assert 'gateway_agency_calls_total{agency="nts",dataset="taxes"}' in metrics.text
    assert 'gateway_requests_total{code="OK",operation="Taxes"}' in metrics.text


async def test_the_trace_context_goes_to_graphql_agencies(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Any,
    spans: InMemorySpanExporter,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    subgraph: Subgraph
    with serving_subgraph() as subgraph:
        config = make_config(
            agency_db.dsn,
            http_agencies,
            agencies={"vehicle": vehicle_agency(subgraph.url)},
            policy=PolicyConfig(file=str(policy)),
        )
        async with gateway_client(config, token("vehicle_officer", agency="welfare")) as gateway:
            body = await gateway.query(QUERY, {"rrn": HEAD_RRN})
            assert "errors" not in body, body
        traceparents = subgraph.traceparents  # read from the subgraph while it runs
    [batch] = by_name(spans.get_finished_spans(), "agency vehicle")
    assert batch.context is not None
    assert [parent_of(t) for t in traceparents] == [(batch.context.trace_id, batch.context.span_id)]


# --- OTLP/HTTP export -----------------------------------------------------------------------


def test_tracing_is_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    tracing = Tracing(TracingConfig())
    assert tracing.provider is None  # no exporter, no thread: the global provider's
    assert tracing.active  # ... which this suite made an SDK one (tests/conftest.py)
    # A program that set none: a caller's traceparent is then not continued either.
    monkeypatch.setattr(trace_api, "get_tracer_provider", trace_api.ProxyTracerProvider)
    assert not tracing.active
    exporting = Tracing(TracingConfig(otlp_endpoint="http://127.0.0.1:9/v1/traces"))
    assert exporting.active
    exporting.shutdown()


async def test_otlp_endpoint_receives_the_spans(config: Config) -> None:
    state: dict[str, Any] = {}

    async def traces(request: Request) -> Response:
        state["recorder"].bodies.append(await request.body())
        return Response(b"", media_type="application/x-protobuf")

    with recording_server([Route("/v1/traces", traces, methods=["POST"])], state) as url:
        state["recorder"] = recorder = Recorder(url)
        exporting = dataclasses.replace(
            config,
            tracing=TracingConfig(otlp_endpoint=f"{url}/v1/traces", service_name="gw-test"),
        )
        async with gateway_client(exporting) as gateway:
            await gateway.query(NAMED_TAXES, {"rrn": HEAD_RRN})
        # The lifespan's end flushed the batch processor.
    assert recorder.bodies, "no OTLP export arrived"
    names: list[str] = []
    services: set[str] = set()
    for body in recorder.bodies:
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            services |= {
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            }
            for scope in resource_spans.scope_spans:
                names += [span.name for span in scope.spans]
        assert HEAD_RRN.encode() not in body
        assert HEAD_RRN.replace("-", "").encode() not in body
    assert services == {"gw-test"}
    assert "graphql Taxes" in names
    assert {"agency nts taxes", "agency nhis insurance"} <= set(names)


@pytest.mark.parametrize("endpoint", ["collector:4318", "grpc://collector:4317"])
def test_an_endpoint_that_is_not_an_http_url_is_refused(endpoint: str) -> None:
    from gateway.config import ConfigError, from_dict

    with pytest.raises(ConfigError, match=r"\[tracing\] otlp_endpoint must be an http"):
        from_dict({"tracing": {"otlp_endpoint": endpoint}})


async def test_a_caller_cannot_switch_the_gateways_own_tracing_off(config: Config) -> None:
    """With ``otlp_endpoint`` the gateway samples every request: a caller's ``traceparent``
    flagged not-sampled (``-00``) still gives its span (in the caller's trace), so a client
    cannot keep its requests out of the operators' traces."""
    state: dict[str, Any] = {}

    async def traces(request: Request) -> Response:
        state["recorder"].bodies.append(await request.body())
        return Response(b"", media_type="application/x-protobuf")

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with recording_server([Route("/v1/traces", traces, methods=["POST"])], state) as url:
        state["recorder"] = recorder = Recorder(url)
        exporting = dataclasses.replace(
            config, tracing=TracingConfig(otlp_endpoint=f"{url}/v1/traces")
        )
        async with gateway_client(exporting) as gateway:
            response = await gateway.http.post(
                "/graphql",
                json={"query": NAMED_TAXES, "variables": {"rrn": HEAD_RRN}},
                headers={**gateway.headers, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-00"},
            )
            assert "errors" not in response.json()
    spans = []
    for body in recorder.bodies:
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            for scope in resource_spans.scope_spans:
                spans += [(s.name, s.trace_id.hex()) for s in scope.spans]
    assert ("graphql Taxes", trace_id) in spans, spans


async def test_a_trace_id_shaped_like_an_rrn_is_not_continued(
    config: Config, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A trace id is the caller's choice when its trace is continued, and the log line keeps
    trace ids unmasked (they are hex ids): one holding 13 decimal digits in a row would put
    a full RRN in the log and in every exported span. Such a traceparent starts a new trace."""
    rrn_digits = HEAD_RRN.replace("-", "")
    trace_id = "abcdefabcdefa" + rrn_digits + "bcdefa"
    assert len(trace_id) == 32
    request = await request_span(config, spans, f"00-{trace_id}-00f067aa0ba902b7-01")
    assert rrn_digits not in format(request.context.trace_id, "032x")
    assert request.parent is None  # a new trace
    lines = [r for r in caplog.records if r.name == "gateway.request"]
    assert lines
    assert not any(rrn_digits in JSONFormatter().format(r) for r in lines)
