"""The /graphql endpoint: strawberry's ASGI view with our context, limits and error shape."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from gateway.agencies import Agencies
from gateway.config import LimitsConfig
from gateway.context import Context, Loaders
from gateway.errors import INTERNAL_MESSAGE, BadRequest, GatewayError
from gateway.logs import mask_rrns

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TOO_COMPLEX = ("exceeds maximum operation depth", "aliases found", "token limit")


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The contract's error shape: message, path, locations, extensions.code."""
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    if isinstance(original, GatewayError):
        message, extensions = original.message, original.as_extensions()
    elif original is None or isinstance(original, GraphQLError):
        # Parse, validation and variable coercion errors: the client's query is at fault.
        message = error.message
        too_complex = any(marker in message for marker in _TOO_COMPLEX)
        code = "QUERY_TOO_COMPLEX" if too_complex else "BAD_REQUEST"
        extensions = {**(error.extensions or {}), "code": code}
    else:
        message, extensions = INTERNAL_MESSAGE, {"code": "INTERNAL"}
    out: dict[str, Any] = {"message": message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = list(error.path)
    out["extensions"] = extensions
    return out


def error_response(error: GatewayError, request_id: str | None = None) -> JSONResponse:
    headers = {"X-Request-ID": request_id} if request_id else None
    body = {"errors": [{"message": error.message, "extensions": error.as_extensions()}]}
    return JSONResponse(body, status_code=error.status, headers=headers)


class GatewayView(GraphQL[Context, None]):
    def __init__(self, *args: Any, agencies: Agencies, limits: LimitsConfig, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.agencies = agencies
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = _request_id(request)
        request.state.request_id = request_id
        try:
            if request.method == "POST":
                await self._read_body(request)
            response = await self.run(request)
        except GatewayError as exc:
            response = error_response(exc, request_id)
        except HTTPException as exc:
            response = error_response(BadRequest(exc.reason), request_id)
            response.status_code = exc.status_code
        response.headers["X-Request-ID"] = request_id
        await response(scope, receive, send)

    async def _read_body(self, request: Request) -> None:
        """Read at most max_body_bytes, and insist on a JSON object or array."""
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"The request body is over the {limit}-byte limit.")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"The request body is over the {limit}-byte limit.")
            chunks.append(chunk)
        body = b"".join(chunks)
        request._body = body  # strawberry reads the body again through this request
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type:
            raise BadRequest("Send the request as JSON (Content-Type: application/json).")
        try:
            data = json.loads(body)
        except ValueError:
            raise BadRequest("The request body is not valid JSON.") from None
        if not isinstance(data, dict | list):
            raise BadRequest("The request body must be a JSON object with a query.")
        if isinstance(data, list) and len(data) > self.limits.max_batch:
            raise BadRequest(f"At most {self.limits.max_batch} operations per batch.")

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        assert isinstance(request, Request)
        return Context(
            request=request,
            response=response,
            request_id=request.state.request_id,
            agencies=self.agencies,
            limits=self.limits,
            loaders=Loaders(self.agencies),
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [format_error(err) for err in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def log_errors(errors: list[GraphQLError]) -> None:
    """Expected errors (coded, or the client's) at debug; anything else with its traceback."""
    for error in errors:
        original = error.original_error
        if original is None or isinstance(original, GatewayError | GraphQLError):
            log.debug("graphql error: %s", mask_rrns(error.message))
        else:
            log.error("unexpected error at %s", error.path, exc_info=original)
