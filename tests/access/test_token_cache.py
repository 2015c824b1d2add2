"""Verified tokens are remembered by hash until they expire: a token checked once is not
checked again, an expired one is refused however often it was accepted before, refusals are
never remembered, and the memory is bounded."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gateway import auth
from gateway.auth import Authenticator, issue_token
from gateway.config import AuthConfig
from gateway.errors import Unauthenticated
from tests.conftest import TEST_SECRET

CONFIG = AuthConfig(secret=TEST_SECRET)


class Counting(Authenticator):
    """Counts the signature checks actually made."""

    checks = 0

    async def _verify(self, token: str) -> dict[str, Any]:
        self.checks += 1
        return await super()._verify(token)


def bearer(sub: str = "officer-1", ttl_s: int = 600) -> str:
    return "Bearer " + issue_token(CONFIG, sub=sub, roles=["tax_officer"], ttl_s=ttl_s)


async def test_a_token_is_verified_once_and_answers_the_same_principal() -> None:
    authenticator = Counting(CONFIG)
    header = bearer()
    first = await authenticator.authenticate(header)
    again = [await authenticator.authenticate(header) for _ in range(5)]
    assert (first.sub, first.roles) == ("officer-1", ("tax_officer",))
    assert all(p == first for p in again)
    assert authenticator.checks == 1


async def test_an_expired_token_is_refused_even_after_being_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authenticator = Counting(CONFIG)
    header = bearer(ttl_s=5)
    await authenticator.authenticate(header)
    later = time.time() + 60  # past exp and past the 30 s leeway of a fresh check
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthenticated, match="expired"):
        await authenticator.authenticate(header)
    assert authenticator.checks == 2


async def test_refusals_are_not_remembered() -> None:
    authenticator = Counting(CONFIG)
    forged = bearer()[:-4] + "AAAA"
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await authenticator.authenticate(forged)
    assert authenticator.checks == 3
    assert len(authenticator._verified) == 0


async def test_the_memory_of_tokens_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_MAX", 3)
    authenticator = Counting(CONFIG)
    headers = [bearer(sub=f"officer-{i}") for i in range(5)]
    for header in headers:
        await authenticator.authenticate(header)
    assert len(authenticator._verified) == 3
    await authenticator.authenticate(headers[0])  # the oldest went: checked again
    assert authenticator.checks == 6
