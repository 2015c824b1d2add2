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
    ├── RateLimited          RATE_LIMITED        (HTTP 429, Retry-After)
    ├── PersistedQueryNotFound PERSISTED_QUERY_NOT_FOUND (HTTP 200: Apollo clients retry)
    ├── OperationNotAllowed  OPERATION_NOT_ALLOWED (HTTP 403: trusted documents only)
    ├── CacheUnavailableError CACHE_UNAVAILABLE (POST /events/invalidate only; HTTP 503)
    └── BadRequest           BAD_REQUEST
        └── NotAcceptable    BAD_REQUEST         (HTTP 406)

Anything else that escapes a resolver is reported as ``INTERNAL`` with a generic message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions

    def as_extensions(self) -> dict[str, Any]:
        return {"code": self.code, **self.extensions}

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers to send when the error is the whole response."""
        return {}

    @property
    def http_status(self) -> int:
        """The status when this error is the whole response (see ``http_status``)."""
        return http_status(self.code)


class Unauthenticated(GatewayError):
    code = "UNAUTHENTICATED"


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

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many requests; try again in {retry_after} s.", retryAfter=retry_after
        )
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PersistedQueryNotFound(GatewayError):
    """Apollo's APQ protocol: the client sends the full query next (so HTTP 200)."""

    code = "PERSISTED_QUERY_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotFound")


class OperationNotAllowed(GatewayError):
    code = "OPERATION_NOT_ALLOWED"


class CacheUnavailableError(GatewayError):
    """The cache could not apply an invalidation (only outside GraphQL; the sender retries)."""

    code = "CACHE_UNAVAILABLE"


class BadRequest(GatewayError):
    code = "BAD_REQUEST"


class NotAcceptable(BadRequest):
    """The Accept header allows no media type /graphql answers with: the one status that is
    not its code's (HTTP 406, a transport matter, coded BAD_REQUEST)."""

    @property
    def http_status(self) -> int:
        return 406


# The one table from code to HTTP status, for an error that is the whole response (refused
# before any GraphQL execution, or outside GraphQL: /metrics, /events/invalidate). An error
# inside a GraphQL response (a field's, or a refused document's) leaves the status at 200.
_WHOLE_RESPONSE_STATUS = {
    "UNAUTHENTICATED": 401,
    "RATE_LIMITED": 429,
    "BAD_REQUEST": 400,
    "CACHE_UNAVAILABLE": 503,
    "PERSISTED_QUERY_NOT_FOUND": 200,
    "OPERATION_NOT_ALLOWED": 403,
    "FORBIDDEN": 403,
    "CONSENT_REQUIRED": 403,
    "AUDIT_UNAVAILABLE": 503,
    "AGENCY_UNAVAILABLE": 503,
    "AGENCY_TIMEOUT": 504,
    "QUERY_TOO_COMPLEX": 400,
    "INVALID_RRN": 400,
}


def http_status(code: str) -> int:
    """The HTTP status for a whole-response error with this code; unknown codes are 500."""
    return _WHOLE_RESPONSE_STATUS.get(code, 500)


INTERNAL_MESSAGE = "Something went wrong on our side; it has been logged."


def quote(value: str, limit: int = 40) -> str:
    """A client's value, safe to quote in an error message: cut short, and control and
    non-ASCII characters escaped (ascii()), so nothing unprintable reaches a client or a log."""
    return ascii(value if len(value) <= limit else value[:limit] + "...")
