"""What clients send, read defensively: JSON and GraphQL documents nested beyond reason are
refused before any recursive parser sees them (a 30,000-deep ``[[[`` used to end in a
RecursionError, HTTP 500 and a traceback)."""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.errors import BadRequest, QueryTooComplex

#: Deepest JSON nesting a client may send (bodies, variables, extensions, events).
MAX_JSON_DEPTH = 64
#: Deepest bracket nesting ({ ( [) of a GraphQL document, at least this; the configured
#: max_depth (selection depth, checked after parsing) raises it where needed.
MIN_DOCUMENT_NESTING = 64

# Strings are skipped whole (an unterminated one runs to the end, so a scan stays linear).
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_DOCUMENT_TOKENS = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*(?:"""|\Z)'  # block string
    r'|"(?:[^"\\\n\r]|\\.)*"?'  # string
    r"|#[^\n\r]*"  # comment
    r"|[\[\](){}]",
    re.DOTALL,
)


def _deeper_than(tokens: re.Pattern[str], text: str, limit: int, opening: str) -> bool:
    if sum(text.count(c) for c in opening) <= limit:
        return False  # the common case: too few brackets to nest that deep
    depth = 0
    for match in tokens.finditer(text):
        token = match.group()
        if len(token) != 1:
            continue  # a string or a comment
        if token in opening:
            depth += 1
            if depth > limit:
                return True
        elif depth:
            depth -= 1
    return False


def load_json(data: bytes | str, what: str) -> Any:
    """JSON from a client; BadRequest (naming ``what``) if it is not JSON or nested deeper
    than MAX_JSON_DEPTH."""
    raw = data.encode() if isinstance(data, str) else data
    # Scanned byte for byte (latin-1): brackets, quotes and backslashes are ASCII in every
    # encoding json.loads accepts, and never part of a multi-byte UTF-8 character.
    if _deeper_than(_JSON_TOKENS, raw.decode("latin-1"), MAX_JSON_DEPTH, "[{"):
        raise BadRequest(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest(f"{what} is not valid JSON.") from None


def check_document(document: object, max_depth: int) -> None:
    """Refuse a GraphQL document whose brackets nest deeper than any allowed query needs."""
    if not isinstance(document, str):
        return  # not a document at all: strawberry says so
    limit = max(MIN_DOCUMENT_NESTING, 4 * max_depth)
    if _deeper_than(_DOCUMENT_TOKENS, document, limit, "{(["):
        raise QueryTooComplex(f"The query is nested more than {limit} levels deep.")
