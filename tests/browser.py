"""Real headless Chromium for page tests: Debian's /usr/bin/chromium driven by playwright
(never a browser playwright downloads). Every request to a host other than this machine is
aborted, as on a government intranet without internet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():  # noqa: ASYNC240 (once per session)
        pytest.skip("no /usr/bin/chromium (apt-get install chromium; .ci/run installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def local_page(browser: Browser, **context_options: object) -> Page:
    """A page in a fresh context that can reach this machine only."""
    context = await browser.new_context(**context_options)  # type: ignore[arg-type]
    page = await context.new_page()

    async def only_local(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            await route.abort()

    await page.route("**/*", only_local)
    return page
