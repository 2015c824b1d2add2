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
    └── BadRequest           BAD_REQUEST

Anything else that escapes a resolver is reported as ``INTERNAL`` with a generic message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 200

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions

    def as_extensions(self) -> dict[str, Any]:
        return {"code": self.code, **self.extensions}


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


class BadRequest(GatewayError):
    code = "BAD_REQUEST"
    status = 400


INTERNAL_MESSAGE = "Something went wrong on our side; it has been logged."
