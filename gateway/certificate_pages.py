"""Certificate endpoints outside GraphQL, open to anyone (verifiers hold no token):

- ``GET /.well-known/jwks.json``: the public keys that verify certificates.
- ``GET /.well-known/revocations.jwt``: the signed list of revoked certificate ids.
- ``GET /verify``: the page where anyone checks a certificate (assets under /verify/static,
  served from the package: no CDN).
- ``POST /certificates/print`` (form field ``token``): a printable view of a genuine
  certificate with a QR code holding it. The gateway keeps no copy of tokens, so the holder
  posts theirs (the /verify page has a button for it).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

import segno
from segno import DataOverflowError
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.certificates import Certificates, Outcome, Revocations, read_revocations, verify

STATIC = files("gateway") / "static"
#: The pages load nothing from elsewhere, and nothing frames them.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
    " media-src 'self' blob:; connect-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
OPEN = {"Access-Control-Allow-Origin": "*"}  # any verifier's page may fetch these
KIND_TITLES = {
    "RESIDENT_REGISTRATION": "Resident registration abstract",
    "HOUSEHOLD_COMPOSITION": "Household composition",
    "TAX_PAYMENT": "Tax payment",
    "HEALTH_INSURANCE": "Health insurance enrolment",
}
_SHOWN_LAST = ("iss", "jti", "iat", "exp", "kind")


def certificate_routes(certificates: Certificates, max_body_bytes: int) -> list[BaseRoute]:
    async def jwks(request: Request) -> Response:
        return JSONResponse(
            certificates.keys.jwks(), headers={**OPEN, "Cache-Control": "max-age=300"}
        )

    async def revocations(request: Request) -> Response:
        token = await certificates.revocation_list()
        if token is None:
            return JSONResponse(
                {"error": "This gateway issues no certificates."}, status_code=404, headers=OPEN
            )
        return Response(
            token, media_type="application/jwt", headers={**OPEN, "Cache-Control": "no-cache"}
        )

    async def verify_page(request: Request) -> Response:
        return HTMLResponse((STATIC / "verify.html").read_text(), headers=PAGE_HEADERS)

    async def print_page(request: Request) -> Response:
        body = await request.body()
        if len(body) > max_body_bytes:
            return _page("Too large", "<p>That is not a certificate: it is too large.</p>", 400)
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        token = (form.get("token") or [""])[0].strip()
        listed = await certificates.revocation_list()
        jwks = certificates.keys.jwks()
        revoked: Revocations | None = None if listed is None else read_revocations(listed, jwks)
        verdict = verify(token, jwks, revoked)
        if verdict.claims is None:
            return _page(
                "Not a certificate",
                f"<p>Nothing to print: {html.escape(verdict.reason)}</p>"
                '<p><a href="/verify">Check a certificate</a></p>',
                400,
            )
        verify_url = str(request.url_for("verify"))
        return _page(
            KIND_TITLES.get(str(verdict.claims["kind"]), "Certificate"),
            _printable(token, verdict.claims, verdict.outcome, verdict.reason, verify_url),
        )

    return [
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/.well-known/revocations.jwt", revocations, methods=["GET"]),
        Route("/verify", verify_page, methods=["GET"], name="verify"),
        Mount("/verify/static", StaticFiles(directory=str(STATIC)), name="verify-static"),
        Route("/certificates/print", print_page, methods=["POST"]),
    ]


def qr_svg(token: str) -> str | None:
    """An inline SVG QR code holding the token (None when it cannot hold that much)."""
    for error in ("m", "l"):
        try:
            code = segno.make(token, error=error, micro=False)
        except DataOverflowError:
            continue
        return code.svg_inline(scale=4, border=4, omitsize=True, title="Certificate QR code")
    return None


def _printable(
    token: str, claims: Mapping[str, Any], outcome: Outcome, reason: str, verify_url: str
) -> str:
    qr = qr_svg(token)
    rows = "".join(_rows(k, v) for k, v in claims.items() if k not in _SHOWN_LAST)
    issued, expires = _when(claims["iat"]), _when(claims["exp"])
    return (
        f'<p class="status {outcome.value}" data-outcome="{outcome.value}">'
        f"{html.escape(reason)}</p>"
        f'<table class="contents">{rows}</table>'
        f'<p class="meta">Certificate {html.escape(str(claims["jti"]))}, issued by '
        f"{html.escape(str(claims['iss']))} on {issued}, valid until {expires}.</p>"
        + (f'<div class="qr">{qr}</div>' if qr else "<p>Too long for a QR code.</p>")
        + f"<p class=\"meta\">Check it at {html.escape(verify_url)}: scan the code, or paste"
        " the text below.</p>"
        f'<pre class="token">{html.escape(token)}</pre>'
        '<p class="noprint">Print this page with your browser (Ctrl-P).</p>'
    )


def _when(epoch: Any) -> str:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _label(key: str) -> str:
    if key == "rrn":
        return "RRN (masked)"
    spaced = "".join(f" {c.lower()}" if c.isupper() else c for c in key)
    return html.escape(spaced[:1].upper() + spaced[1:])


def _rows(key: str, value: Any) -> str:
    return f"<tr><th>{_label(key)}</th><td>{_value(value)}</td></tr>"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_rows(k, v) for k, v in value.items())
        return f'<table class="nested">{inner}</table>'
    if isinstance(value, list):
        if not value:
            return "none"
        return "<ol>" + "".join(f"<li>{_value(v)}</li>" for v in value) + "</ol>"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    return html.escape(str(value))


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="/verify/static/verify.css"></head>'
        f'<body class="print"><h1>{html.escape(title)}</h1>{body}</body></html>'
    )
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
