"""No full RRN in any log line or span: every kind of request, with RRNs everywhere a client
can put one, passes the session's watch (tests/rrn_watch.py); and the watch does catch one."""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import TracerProvider

from gateway.logs import REQUEST_FIELDS
from tests.conftest import WATCH, ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN, members
from tests.resilience.conftest import TAXES, Agent, http_agency
from tests.rrn_watch import LogWatch, SpanWatch, Watch

DIGITS = HEAD_RRN.replace("-", "")
SECOND = members()[1][0]


async def test_every_kind_of_request_logs_and_traces_no_full_rrn(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", nts.url, retries=0, cache=False)},
    )
    leaks, lines_before = len(WATCH.leaks), len(WATCH.request_lines)
    spans_before = WATCH.spans
    ids: list[str] = []
    async with gateway_client(config) as gateway:
        citizen = gateway.as_(token("tester", rrn=HEAD_RRN, sub="citizen-1"))
        system = gateway.as_(token("agency_system", agency="registry"))

        async def post(body: object, **headers: str) -> None:
            response = await gateway.http.post(
                "/graphql", json=body, headers={**gateway.headers, **headers}
            )
            ids.append(response.headers["X-Request-ID"])

        # An RRN in variables, in the document, in the operation name, in X-Request-Id.
        await post({"query": TAXES, "variables": {"rrn": HEAD_RRN}}, **{"X-Request-Id": DIGITS})
        await post({"query": f'query Q{DIGITS} {{ resident(rrn: "{DIGITS}", '
                             "purpose: CIVIL_PETITION) { name } }"})  # fmt: skip
        await post({
            "query": "query($r: [String!]!) { residents(rrns: $r, purpose: CIVIL_PETITION) "
                     "{ name household { members { name } } } }",
            "variables": {"r": [HEAD_RRN, SECOND, "991301-1234567", "12345"]},
        })  # fmt: skip
        # Malformed, impossible and refused RRNs; a document that does not validate.
        await post({"query": f'{{ resident(rrn: "{DIGITS}x", purpose: TAX) {{ name }} }}'})
        await post({"query": f"{{ resident(rrn: {DIGITS}, purpose: CIVIL_PETITION) {{ nm }} }}"})
        response = await gateway.http.get(
            "/graphql",
            params={
                "query": f'{{ resident(rrn: "{HEAD_RRN}", purpose: CIVIL_PETITION) {{ name }} }}'
            },
            headers=gateway.headers,
        )
        ids.append(response.headers["X-Request-ID"])
        # The citizen's own record and access log; a consent granted.
        response = await citizen.post({"query": "{ me { rrn name } myAccessLog { edges "
                                                "{ node { purpose } } } }"})  # fmt: skip
        ids.append(response.headers["X-Request-ID"])
        response = await citizen.post({
            "query": 'mutation { grantConsent(purpose: WELFARE_ELIGIBILITY, agency: "welfare") '
                     "{ id } }"})  # fmt: skip
        assert "errors" not in response.json(), response.text
        ids.append(response.headers["X-Request-ID"])
        # An agency that fails (its failure is logged as a warning), then garbage.
        for fault in ("error", "garbage"):
            await nts.fault(fault)
            await post({"query": TAXES, "variables": {"rrn": HEAD_RRN}})
            assert WATCH.request_lines[-1]["outcome"] == "AGENCY_UNAVAILABLE"
        # Unauthenticated, with an RRN in the body.
        response = await gateway.http.post(
            "/graphql", json={"query": TAXES, "variables": {"rrn": HEAD_RRN}}
        )
        ids.append(response.headers["X-Request-ID"])
        # An agency's change event naming residents (logged as counts).
        invalidated = await system.http.post(
            "/events/invalidate",
            json={"agency": "registry", "keys": [HEAD_RRN, DIGITS]},
            headers=system.headers,
        )
        assert invalidated.status_code == 202, invalidated.text

    seen = {line["request_id"] for line in WATCH.request_lines[lines_before:]}
    assert set(ids) <= seen  # the watch read every one of these requests' lines
    assert WATCH.spans > spans_before + len(ids)  # ... and their spans
    assert WATCH.leaks[leaks:] == []


def test_the_watch_catches_a_full_rrn_in_a_log_line_or_a_span() -> None:
    watch = Watch()
    handler = LogWatch(watch)
    logger = logging.getLogger("tests.watch")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # Masked by the gateway's filter and formatter: nothing to report.
        logger.warning("looked up %s", HEAD_RRN)
        logger.warning("fields", extra={REQUEST_FIELDS: {"operation": f"Q{DIGITS}"}})
        assert watch.leaks == []
        assert watch.lines == 2
        # A spelling the mask does not know: reported.
        logger.warning("looked up %s", HEAD_RRN.replace("-", " "))
        assert len(watch.leaks) == 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    provider = TracerProvider()
    provider.add_span_processor(SpanWatch(watch))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "clean", attributes={"gateway.request_id": f"ab{DIGITS}" + "c" * 17}
    ):
        pass
    assert len(watch.leaks) == 1  # our own hex ids are not RRNs
    with tracer.start_as_current_span("lookup", attributes={"subject": [HEAD_RRN]}):
        pass
    assert len(watch.leaks) == 2
    assert watch.spans == 2
