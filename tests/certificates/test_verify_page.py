"""The /verify page in real headless Chromium: a pasted, opened or scanned certificate shows
genuine, expired, revoked or invalid, and its contents; the printable view's QR code, read
back by the page, is the certificate itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno
from playwright.async_api import Browser, Page, expect

from gateway.certificate_keys import CertificateKeys
from gateway.certificates import certificate_claims, sign
from gateway.config import CertificatesConfig
from tests.access.conftest import demo_config, served
from tests.browser import local_page
from tests.conftest import ScratchDatabase, token
from tests.data import HEAD_RRN

ISSUE = "mutation($kind: CertificateKind!) { issueCertificate(kind: $kind) { id token } }"
REVOKE = "mutation($id: ID!) { revokeCertificate(id: $id) { id } }"


@pytest.fixture(scope="module")
def server(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    store: ScratchDatabase,
    cert_config: CertificatesConfig,
) -> Iterator[str]:
    config = demo_config(agency_db, http_agencies, store.dsn, certificates=cert_config)
    with served(config) as (url, _app):
        yield url


def mutate(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token('citizen', rrn=HEAD_RRN, sub='citizen-web')}"},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tokens(server: str, signing_keys: CertificateKeys) -> dict[str, str]:
    """One certificate per outcome, as the page should call it."""
    genuine = mutate(server, ISSUE, {"kind": "RESIDENT_REGISTRATION"})["issueCertificate"]
    revoked = mutate(server, ISSUE, {"kind": "TAX_PAYMENT"})["issueCertificate"]
    mutate(server, REVOKE, {"id": revoked["id"]})
    assert signing_keys.current is not None
    issued = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    expired = sign(
        signing_keys.current,
        certificate_claims(
            issuer="gw-test", certificate_id="expired-1", kind="HEALTH_INSURANCE",
            issued_at=issued, expires_at=issued + dt.timedelta(days=90),
            body={"holder": {"name": "Kim Min-jun"}, "insurance": {"enrolled": False}},
        ),
    )  # fmt: skip
    text: str = genuine["token"]
    middle = len(text) // 2
    tampered = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    return {
        "genuine": text,
        "revoked": revoked["token"],
        "expired": expired,
        "invalid": tampered,
    }


@pytest.fixture
async def page(browser: Browser, server: str) -> AsyncIterator[Page]:
    page = await local_page(browser, device_scale_factor=2)
    await page.goto(f"{server}/verify")
    await page.wait_for_selector("body[data-ready=true]")
    yield page
    await page.context.close()


async def verdict(page: Page) -> tuple[str, str]:
    found = await page.wait_for_selector("#result:not([hidden]) #verdict[data-outcome]")
    assert found is not None
    outcome = await found.get_attribute("data-outcome")
    return str(outcome), await page.inner_text("#result")


@pytest.mark.parametrize("outcome", ["genuine", "expired", "revoked", "invalid"])
async def test_pasted_certificate_shows_its_outcome(
    page: Page, tokens: dict[str, str], outcome: str
) -> None:
    await page.fill("#token", tokens[outcome])
    await page.click("#check")
    shown, text = await verdict(page)
    assert shown == outcome
    if outcome == "invalid":
        assert "signature does not match" in text
        assert "Kim Min-jun" not in text  # nothing unverified is shown
    else:
        assert "Kim Min-jun" in text
    if outcome == "genuine":
        assert "Resident registration abstract" in text
        assert "940812-1******" in text
        assert "12 Teheran-ro" in text
        assert "not revoked as of" in text


async def test_uploaded_qr_image_is_read_and_checked(
    page: Page, tokens: dict[str, str], tmp_path: Path
) -> None:
    image = tmp_path / "certificate.png"
    segno.make(tokens["genuine"], error="m").save(str(image), scale=4)
    await page.set_input_files("#file", str(image))
    shown, text = await verdict(page)
    assert shown == "genuine"
    assert "Gangnam-gu" in text
    assert await page.input_value("#token") == tokens["genuine"]


async def test_uploaded_certificate_file_is_checked(
    page: Page, tokens: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "certificate.jwt"
    path.write_text(tokens["revoked"] + "\n")
    await page.set_input_files("#file", str(path))
    shown, text = await verdict(page)
    assert shown == "revoked"
    assert "Tax payment" in text


async def test_printable_view_holds_a_qr_code_of_the_certificate(
    page: Page, tokens: dict[str, str], tmp_path: Path, server: str
) -> None:
    await page.fill("#token", tokens["genuine"])
    await page.click("#check")
    await verdict(page)
    async with page.context.expect_page() as opened:
        await page.click("#print-form button")
    printed = await opened.value
    await printed.wait_for_load_state()
    assert await printed.title() == "Resident registration abstract"
    assert "Kim Min-jun" in await printed.inner_text("body")
    assert await printed.get_attribute(".status", "data-outcome") == "genuine"
    # Read the printed QR code back through the verify page: it is the certificate.
    shot = tmp_path / "printed-qr.png"
    await printed.locator(".qr svg").screenshot(path=str(shot))
    await page.fill("#token", "")
    await page.set_input_files("#file", str(shot))
    await expect(page.locator("#token")).to_have_value(tokens["genuine"], timeout=10_000)
    shown, text = await verdict(page)
    assert shown == "genuine", text
    async with httpx.AsyncClient() as http:
        refused = await http.post(f"{server}/certificates/print", data={"token": tokens["invalid"]})
    assert refused.status_code == 400
    assert "Nothing to print" in refused.text


def y4m_of_qr(text: str, path: Path, frames: int = 10) -> None:
    """A short video (YUV4MPEG2, 4:2:0) showing the QR code of ``text``: what Chromium's
    fake camera plays when started with --use-file-for-fake-video-capture."""
    rows = [list(row) for row in segno.make(text, error="m").matrix_iter(scale=4, border=8)]
    size = len(rows) + len(rows) % 2
    luma = bytearray(b"\xff" * size * size)
    for y, row in enumerate(rows):
        for x, dark in enumerate(row):
            if dark:
                luma[y * size + x] = 0
    chroma = b"\x80" * ((size // 2) * (size // 2) * 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{size} H{size} F5:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n" + bytes(luma) + chroma)


async def test_camera_scan_reads_the_qr_code(
    server: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    """The camera path, with Chromium's fake camera playing a video of the QR code."""
    from playwright.async_api import async_playwright

    from tests.browser import CHROMIUM, SKIP

    if not CHROMIUM.exists():
        pytest.skip(SKIP)
    video = tmp_path / "qr.y4m"
    y4m_of_qr(tokens["expired"], video)
    async with async_playwright() as playwright:
        camera_browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={video}",
            ],
        )
        try:
            page = await local_page(camera_browser, permissions=["camera"])
            await page.goto(f"{server}/verify")
            await page.wait_for_selector("body[data-ready=true]")
            await page.click("#camera")
            shown, text = await verdict(page)
            assert shown == "expired", text
            assert await page.input_value("#token") == tokens["expired"]
        finally:
            await camera_browser.close()
