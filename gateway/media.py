"""GraphQL over HTTP: which media type a response uses, and what that changes.

``application/graphql-response+json`` (the GraphQL-over-HTTP spec): a request error (the
document does not parse or validate, a variable does not coerce) is HTTP 400 and the body has
no ``data`` entry; once execution has started the status is 200, field errors or not.

``application/json`` (what clients have always had): GraphQL errors come with HTTP 200 and
``data: null``. A client that sends no Accept header, ``*/*`` or ``application/*`` gets this.

An Accept header that allows neither gets HTTP 406.
"""

from __future__ import annotations

import re

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"

_SERVED = (GRAPHQL_RESPONSE, JSON)
# Wildcards served as application/json, the media type every client understands.
_WILDCARDS = {"*/*": JSON, "application/*": JSON}
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None when the Accept header allows neither.

    The highest q-value wins; on a tie application/graphql-response+json, then
    application/json, then a wildcard (which means application/json)."""
    if accept is None or not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None
    for item in accept.split(","):
        media_range, *params = (part.strip() for part in item.split(";"))
        media_range = media_range.lower()
        if media_range in _SERVED:
            media_type, rank = media_range, 2 - _SERVED.index(media_range)
        elif media_range in _WILDCARDS:
            media_type, rank = _WILDCARDS[media_range], 0
        else:
            continue
        quality = _quality(params)
        if quality <= 0:
            continue
        if best is None or (quality, rank) > best[:2]:
            best = (quality, rank, media_type)
    return None if best is None else best[2]


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0


def content_type(media_type: str) -> str:
    return f"{media_type}; charset=utf-8"


def without_suggestions(message: str) -> str:
    """A validation message without graphql-core's "Did you mean 'x'?" hints, which name
    schema members (kept out of sight when introspection is off)."""
    return _SUGGESTION.sub("", message)
