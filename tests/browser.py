"""Real headless Chromium for page tests: Debian's /usr/bin/chromium driven by playwright
(never `playwright install`, never a browser playwright downloads). Every request to a host
other than this machine is aborted, as on a government intranet without internet.

Two ways in: the ``browser_page`` fixture for plain (sync) tests — it records every request
that tried to leave the machine and fails the test if there was any
(``from tests.browser import browser_page  # noqa: F401``); and the session-wide async
``browser`` fixture with ``local_page(browser)`` for async tests. Skipped only when
/usr/bin/chromium is absent (.ci/run installs it, so CI never skips).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright import async_api, sync_api

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
SKIP = f"{CHROMIUM} is absent (apt-get install chromium chromium-driver; .ci/run installs it)"


def _local(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK or url.startswith(("data:", "blob:"))


@pytest.fixture
def browser_page() -> Iterator[sync_api.Page]:
    if not CHROMIUM.exists():
        pytest.skip(SKIP)
    attempted: list[str] = []

    def only_loopback(route: sync_api.Route) -> None:
        if _local(route.request.url):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context()
            context.route("**/*", only_loopback)
            yield context.new_page()
            context.close()
        finally:
            browser.close()
    assert not attempted, f"the page tried to reach hosts off this machine: {attempted}"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[async_api.Browser]:
    if not CHROMIUM.exists():  # noqa: ASYNC240 (once per session)
        pytest.skip(SKIP)
    async with async_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def local_page(browser: async_api.Browser, **context_options: object) -> async_api.Page:
    """A page in a fresh context that can reach this machine only."""
    context = await browser.new_context(**context_options)  # type: ignore[arg-type]
    page = await context.new_page()

    async def only_local(route: async_api.Route) -> None:
        if _local(route.request.url):
            await route.continue_()
        else:
            await route.abort()

    await page.route("**/*", only_local)
    return page
