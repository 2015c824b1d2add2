"""The view drops result errors' tracebacks (``_drop_tracebacks``): an unexpected error is
logged with its whole traceback first, and error paths leave no cyclic garbage either."""

from __future__ import annotations

import logging

import pytest

from gateway.access import Access
from tests.conftest import GatewayClient
from tests.data import HEAD_RRN
from tests.gateway.test_no_cycles import collector_paused  # noqa: F401

QUERY = '{ resident(rrn: "' + HEAD_RRN + '", purpose: WELFARE_ELIGIBILITY) { rrn name } }'


def _broken(self: Access, view: str, rrn: str, *, whole_allowed: bool = True) -> str:
    raise RuntimeError("probe13 bug")


async def test_internal_error_logged_with_traceback(
    client: GatewayClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Access, "show_rrn", _broken)
    caplog.set_level(logging.ERROR, logger="gateway")
    query = QUERY
    body = await client.query(query)
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL", body
    records = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert records, caplog.text
    text = records[0].exc_text or ""
    assert "_broken" in text, text  # the frame that raised
    assert "probe13 bug" in text, text


@pytest.mark.usefixtures("collector_paused")
async def test_internal_errors_leave_nothing_for_the_cycle_collector(
    client: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.gateway.test_no_cycles import HOUSEHOLD, OURS, cyclic_garbage

    monkeypatch.setattr(Access, "show_rrn", _broken)
    q = QUERY
    for _ in range(2):
        await client.query(q)
        await client.query(HOUSEHOLD, {"rrn": HEAD_RRN})
    cyclic_garbage()
    for _ in range(3):
        body = await client.query(q)
        assert body["errors"][0]["extensions"]["code"] == "INTERNAL"
        await client.query(HOUSEHOLD, {"rrn": HEAD_RRN})
    left = cyclic_garbage()
    assert not {name: n for name, n in left.items() if name in OURS}, left
