"""Errors clients see, each with a stable ``extensions.code``.

    GatewayError
    ├── Unauthenticated      UNAUTHENTICATED
    ├── Forbidden            FORBIDDEN
    ├── ConsentRequired      CONSENT_REQUIRED
    ├── InvalidRRNError      INVALID_RRN
    ├── AgencyError          AGENCY_UNAVAILABLE  (extensions.agency)
    │   └── AgencyTimeout    AGENCY_TIMEOUT      (extensions.agency)
    ├── QueryTooComplex      QUERY_TOO_COMPLEX
    ├── AuditUnavailable     AUDIT_UNAVAILABLE
    ├── RateLimited          RATE_LIMITED
    ├── CacheUnavailableError CACHE_UNAVAILABLE (POST /events/invalidate only; HTTP 503)
    └── BadRequest           BAD_REQUEST
        └── NotAcceptable    BAD_REQUEST         (HTTP 406)

Anything else that escapes a resolver is reported as ``INTERNAL`` with a generic message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    code: ClassVar[str] = "INTERNAL"
    #: HTTP status when the error is the whole response; a field error inside a GraphQL
    #: response leaves the status at 200.
    status: ClassVar[int] = 200

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions

    def as_extensions(self) -> dict[str, Any]:
        return {"code": self.code, **self.extensions}

    @property
    def http_status(self) -> int:
        return self.status if self.status != 200 else _WHOLE_RESPONSE_STATUS.get(self.code, 500)


class Unauthenticated(GatewayError):
    code = "UNAUTHENTICATED"
    status = 401


class Forbidden(GatewayError):
    code = "FORBIDDEN"


class ConsentRequired(GatewayError):
    code = "CONSENT_REQUIRED"


class InvalidRRNError(GatewayError):
    code = "INVALID_RRN"


class AgencyError(GatewayError):
    code = "AGENCY_UNAVAILABLE"

    def __init__(self, agency: str, message: str | None = None) -> None:
        super().__init__(message or f"The {agency} agency could not answer.", agency=agency)
        self.agency = agency


class AgencyTimeout(AgencyError):
    code = "AGENCY_TIMEOUT"

    def __init__(self, agency: str, timeout_ms: int) -> None:
        super().__init__(agency, f"The {agency} agency did not answer within {timeout_ms} ms.")


class QueryTooComplex(GatewayError):
    code = "QUERY_TOO_COMPLEX"


class AuditUnavailable(GatewayError):
    code = "AUDIT_UNAVAILABLE"


class RateLimited(GatewayError):
    code = "RATE_LIMITED"
    status = 429


class CacheUnavailableError(GatewayError):
    """The cache could not apply an invalidation (only outside GraphQL; the sender retries)."""

    code = "CACHE_UNAVAILABLE"
    status = 503


class BadRequest(GatewayError):
    code = "BAD_REQUEST"
    status = 400


class NotAcceptable(BadRequest):
    """The Accept header allows no media type /graphql answers with (HTTP 406)."""

    status = 406


# Outside GraphQL (e.g. /metrics, /events/invalidate) a refusal is the whole answer.
_WHOLE_RESPONSE_STATUS = {
    "FORBIDDEN": 403,
    "CONSENT_REQUIRED": 403,
    "AUDIT_UNAVAILABLE": 503,
    "AGENCY_UNAVAILABLE": 503,
    "AGENCY_TIMEOUT": 504,
    "QUERY_TOO_COMPLEX": 400,
    "INVALID_RRN": 400,
}

INTERNAL_MESSAGE = "Something went wrong on our side; it has been logged."


def quote(value: str, limit: int = 40) -> str:
    """A client's value, safe to quote in an error message: cut short, and control and
    non-ASCII characters escaped (ascii()), so nothing unprintable reaches a client or a log."""
    return ascii(value if len(value) <= limit else value[:limit] + "...")
