"""Browser tests' shared fixture: a page in Debian's headless chromium, driven by playwright,
that cannot reach the internet (a government intranet has none).

Every request to a host other than 127.0.0.1/localhost is aborted and recorded, and the
test fails if there was any. Import the fixture into a test module:
``from tests.browser import browser_page  # noqa: F401``; write tests as plain (sync) functions.
Skipped only when /usr/bin/chromium is absent (.ci/run installs it, so CI never skips);
never `playwright install`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@pytest.fixture
def browser_page() -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium chromium-driver)")
    attempted: list[str] = []

    def only_loopback(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            attempted.append(url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
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
