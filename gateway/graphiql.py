"""GraphiQL for an intranet: the page, its assets (vendored in ``gateway/static/graphiql``,
nothing fetched from the internet) and the example operations of the caller's roles.

The page is open (it holds no data); it asks for a token before it loads the schema. In the
embedded demo it also carries the demo roles' tokens, for a role picker: ``create_app`` gets
them from ``gateway serve`` only when it runs the demo, never from a configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from gateway.errors import GatewayError, Unauthenticated
from gateway.examples import Example
from gateway.view import GatewayView, error_response

TITLE = "Resident Gateway"
#: Where the vendored files are served (relative to the page, so a path prefix in front of the
#: gateway still works).
ASSETS = "graphiql/assets"
EXAMPLES = "graphiql/examples"
SCRIPTS = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "gateway-graphiql.js",
)
STYLES = ("graphiql.min.css", "gateway-graphiql.css")

#: The browser may load scripts and styles from this gateway only, and talk to it only: even
#: a tampered asset cannot reach another host. GraphiQL sets inline styles; its fonts are
#: data: URLs in its CSS.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "font-src 'self' data:",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True)
class DemoRole:
    """A role of the embedded demo and a token for it, offered by the page's role picker."""

    role: str
    description: str
    token: str


def assets() -> StaticFiles:
    return StaticFiles(packages=[("gateway", "static/graphiql")])


def page_html(title: str, demo: Sequence[DemoRole] | None = None) -> str:
    settings: dict[str, Any] = {
        "title": title,
        "endpoint": "graphql",
        "examples": EXAMPLES,
        "demo": None if demo is None else [vars(d) for d in demo],
    }
    # JSON inside <script>: "<" escaped so no value can close the element.
    data = json.dumps(settings).replace("<", "\\u003c")
    styles = "".join(f'<link rel="stylesheet" href="{ASSETS}/{name}">\n' for name in STYLES)
    scripts = "".join(f'<script src="{ASSETS}/{name}"></script>\n' for name in SCRIPTS)
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        '<link rel="icon" href="data:,">\n'
        f"{styles}</head>\n<body>\n"
        '<div id="gateway-graphiql">Loading GraphiQL&hellip;</div>\n'
        f'<script id="gateway-graphiql-config" type="application/json">{data}</script>\n'
        f"{scripts}</body>\n</html>\n"
    )


def page_response(html: str) -> Response:
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": CSP,
            # The demo page carries tokens: never kept by a cache or shown to another site.
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def examples_endpoint(view: GatewayView, by_role: Mapping[str, Sequence[Example]]) -> Any:
    """``GET graphiql/examples``: the example operations of the caller's roles (a bearer
    token, as for /graphql; refused tokens count against the client's address there too)."""

    async def examples(request: Request) -> Response:
        try:
            try:
                principal = await view.runtime.authenticate(request.headers.get("authorization"))
            except Unauthenticated:
                await view.charge_address(request)  # 429 once the address is over its limit
                raise
        except GatewayError as exc:
            return error_response(exc)
        seen: set[str] = set()
        out = []
        for role in principal.roles:
            for example in by_role.get(role, ()):
                if example.query not in seen:
                    seen.add(example.query)
                    out.append(example.as_json() | {"role": role})
        return JSONResponse(
            {"roles": list(principal.roles), "examples": out},
            headers={"Cache-Control": "no-store"},
        )

    return examples
