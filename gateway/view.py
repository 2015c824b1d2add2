"""The /graphql endpoint: strawberry's ASGI view with our context, limits and error shape."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.dataloader import DataLoader
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult

from gateway import direct
from gateway.access import Access
from gateway.context import Context, Loaders, Provenance
from gateway.errors import (
    INTERNAL_MESSAGE,
    AuditUnavailable,
    BadRequest,
    GatewayError,
    NotAcceptable,
    Unauthenticated,
)
from gateway.inputs import check_document, load_json
from gateway.limits import request_cost
from gateway.logs import mask_rrns
from gateway.media import GRAPHQL_RESPONSE, JSON, content_type, negotiate, without_suggestions
from gateway.observe import Observer, RequestSeen
from gateway.principal import Principal
from gateway.ratelimit import RateLimiter, address_key, principal_key

if TYPE_CHECKING:
    from gateway.graphql_schema import GatewaySchema
    from gateway.persisted import PersistedDocuments
    from gateway.runtime import Runtime

log = logging.getLogger(__name__)

ANONYMOUS = Principal(sub="anonymous")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The contract's error shape: message, path, locations, extensions.code."""
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    if isinstance(original, GatewayError):
        message, extensions = original.message, original.as_extensions()
    elif original is None or isinstance(original, GraphQLError):
        # Parse, validation and variable coercion errors: the client's query is at fault,
        # unless the error was coded where it was raised (never guessed from its text).
        message = error.message
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", "BAD_REQUEST")
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
    """An error as a whole response (no GraphQL execution behind it)."""
    headers = {"X-Request-ID": request_id} if request_id else {}
    headers.update(error.headers)
    if error.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    # No RRN in a message, whoever wrote it: strawberry quotes an unknown operationName, say.
    message = _RRN_IN_MESSAGE.sub("******-*******", error.message)
    body = {"errors": [{"message": message, "extensions": error.as_extensions()}]}
    return JSONResponse(body, status_code=error.http_status, headers=headers)


class GatewayView(GraphQL[Context, None]):
    def __init__(self, *args: Any, runtime: Runtime, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.runtime = runtime
        self.limits = runtime.config.limits
        self.persisted: PersistedDocuments | None = None  # set by create_app
        self.observer = Observer(runtime.config)
        self.rate_limiter = RateLimiter(self.limits, runtime.config.cache)
        self.ide_html = ""  # set by create_app (gateway.graphiql.page_html)
        #: Queries known to pass run through the direct lane (gateway/direct.py); False
        #: sends every request strawberry's way (the differential tests' reference).
        self.direct = True

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our GraphiQL page (every asset served by the gateway), not strawberry's, which
        loads React and GraphiQL from a public CDN."""
        from gateway.graphiql import page_response

        return page_response(self.ide_html)

    def encode_json(self, data: object) -> bytes:
        """Response bodies with orjson (UTF-8, compact): a household response encodes in
        about a tenth of ``json.dumps``'s time (``bench/http_clients.py``)."""
        return orjson.dumps(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        request_id = _request_id(request)
        _per_request(request)["request_id"] = request_id
        client_id = request.headers.get("x-request-id", "")
        client_id = mask_rrns(client_id) if _REQUEST_ID.match(client_id) else ""
        try:
            with self.observer.request(
                request.headers, request.method, request_id, client_id or None
            ) as seen:
                _per_request(request)["seen"] = seen
                response = await self._respond(request, request_id)
                if client_id:
                    response.headers["X-Client-Request-ID"] = client_id
                seen.status = response.status_code
                await response(scope, receive, send)
        finally:
            _forget(request)

    async def _respond(self, request: Request, request_id: str) -> Response:
        seen: RequestSeen = _per_request(request)["seen"]
        media_type = negotiate(request.headers.get("accept"))
        _per_request(request)["media_type"] = media_type or JSON
        try:
            try:
                if request.method == "POST":
                    await self._read_body(request)
                else:
                    self._check_params(request)
            except GatewayError:
                # Refused before the token is read: counted against the client's address,
                # so malformed requests are limited too (429 once the address is over).
                await self.charge_address(request)
                raise
            if not _wants_graphiql(request):
                principal = await self._authenticate(request)
                await self._before_execution(request, principal)
            if media_type is None and not _wants_graphiql(request):
                # After the token check: a caller without one hears 401 first.
                raise NotAcceptable(
                    f"This endpoint answers with {GRAPHQL_RESPONSE} or {JSON}; "
                    "the Accept header allows neither."
                )
            response = await self._run_direct(request)
            if response is None:
                response = await self.run(request)
        except GatewayError as exc:
            seen.codes.append(exc.code)
            response = error_response(exc, request_id)
        except HTTPException as exc:
            seen.codes.append(BadRequest.code)
            response = error_response(BadRequest(exc.reason), request_id)
            response.status_code = exc.status_code
            if isinstance(exc.__cause__, InvalidOperationTypeError):
                # A mutation sent with GET: the method is wrong, not the document.
                response.status_code = 405
                response.headers["Allow"] = "POST"
            elif exc.status_code == 405:  # HEAD, which the router lets through with GET
                response.headers["Allow"] = "GET, POST"
        _set_media_type(request, response)
        response.headers["X-Request-ID"] = request_id
        return response

    async def _run_direct(self, request: Request) -> Response | None:
        """A POST of one query that will pass, through the direct lane (gateway/direct.py):
        what ``self.run`` does for it, without strawberry's request and extension machinery.
        ``None``, having done nothing, for anything else."""
        if not self.direct or request.method != "POST":
            return None
        body = _per_request(request).get("body")
        if not isinstance(body, dict):
            return None
        headers = request.headers
        if "application/json" not in parse_content_type(headers.get("content-type", ""))[0]:
            return None  # strawberry's 400
        if self._get_stream_transport_from_headers(headers) is not None:
            return None
        schema: GatewaySchema = self.schema  # type: ignore[assignment]
        prepared = direct.prepare(schema, body)
        if prepared is None:
            return None
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, response=sub_response)
        result = await direct.execute(schema, prepared, context)
        response_data = await self.process_result(request=request, result=result)
        return self.create_response(response_data=response_data, sub_response=sub_response)

    async def charge_address(self, request: Request) -> None:
        """Charge a request no principal answers for to the client's address."""
        client = request.client.host if request.client else None
        await self.rate_limiter.admit(address_key(client))

    async def _authenticate(self, request: Request) -> Principal:
        try:
            principal = await self.runtime.authenticate(request.headers.get("authorization"))
        except Unauthenticated:
            # Token guessing is limited by address (and still answered 401 until over).
            await self.charge_address(request)
            raise
        _per_request(request)["principal"] = principal
        _per_request(request)["seen"].principal = principal
        return principal

    async def _before_execution(self, request: Request, principal: Principal) -> None:
        """After authentication, before strawberry parses anything: the principal's rate
        (see ratelimit.py), then documents named by hash (see persisted.py)."""
        mine = _per_request(request)
        body = mine.get("body")
        items = body if isinstance(body, list) else [body]
        key, requests = principal_key(principal.sub), max(1, len(items))
        try:
            await self._resolve_persisted(request, principal, body, items)
        except GatewayError:
            await self.rate_limiter.admit(key, requests=requests)  # refused requests count
            raise
        # The measured cost is charged on arrival, before anything runs: concurrent requests
        # cannot all pass a cost budget that none of them has been charged against yet.
        await self.rate_limiter.admit(key, requests=requests, cost=self._cost(request, items))

    def _cost(self, request: Request, items: list[Any]) -> int:
        if not self.rate_limiter.enabled:
            return 0
        schema: GatewaySchema = self.schema  # type: ignore[assignment]
        if request.method == "GET":
            params = request.query_params
            try:
                variables = json.loads(params.get("variables") or "null")
            except ValueError:
                variables = None
            items = [{**params, "variables": variables}]
        return sum(
            request_cost(
                schema._schema,
                schema.measured,
                item.get("query"),
                item.get("operationName"),
                item.get("variables"),
                schema.limits,
                schema.weights,
            )
            for item in items
            if isinstance(item, dict)
        )

    async def _resolve_persisted(
        self, request: Request, principal: Principal, body: Any, items: list[Any]
    ) -> None:
        if self.persisted is None:
            return
        if request.method == "GET":
            params = dict(request.query_params)
            if "extensions" in params:
                params["extensions"] = load_json(params["extensions"], "extensions")
            text = await self.persisted.resolve(params, principal)
            if text is not None:
                query = dict(request.query_params) | {"query": text}
                request._query_params = QueryParams(query)  # what strawberry reads
            return
        texts = [
            await self.persisted.resolve(item, principal) if isinstance(item, dict) else None
            for item in items
        ]
        if any(text is not None for text in texts):
            for item, text in zip(items, texts, strict=True):
                if text is not None:
                    item["query"] = text
            request._body = json.dumps(body).encode()  # what strawberry reads

    async def close_safety(self) -> None:
        await self.rate_limiter.close()
        if self.persisted is not None:
            await self.persisted.close()

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
        data = load_json(body, "The request body")
        if not isinstance(data, dict | list):
            raise BadRequest("The request body must be a JSON object with a query.")
        if isinstance(data, list) and len(data) > self.limits.max_batch:
            raise BadRequest(f"At most {self.limits.max_batch} operations per batch.")
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                check_document(item.get("query"), self.limits.max_depth)
        _per_request(request)["wants_provenance"] = _wants_provenance(data)
        _per_request(request)["body"] = data

    def _check_params(self, request: Request) -> None:
        """A GET query's parameters, checked as a POST body would be (before strawberry's
        own, recursive, parsers see them)."""
        params = request.query_params
        check_document(params.get("query"), self.limits.max_depth)
        for name in ("variables", "extensions"):
            if name in params:
                load_json(params[name], name)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        assert isinstance(request, Request)
        rt = self.runtime
        assert rt.consents is not None, "lifespan has not run"
        assert rt.audit is not None, "lifespan has not run"
        mine = _per_request(request)
        # Only the GraphiQL page itself gets this far without a token; it executes nothing.
        principal = mine.get("principal") or ANONYMOUS
        context = Context(
            request=request,
            response=response,
            request_id=mine["request_id"],
            agencies=rt.agencies,
            limits=self.limits,
            loaders=Loaders(
                rt.agencies, deadline=time.monotonic() + self.limits.request_timeout_ms / 1000
            ),
            principal=principal,
            access=Access(
                principal,
                rt.policy,
                rt.keys,
                DataLoader(load_fn=rt.consents.for_subjects),
                max_lookups=self.limits.max_batch,
            ),
            keys=rt.keys,
            audit=rt.audit,
            consents=rt.consents,
            provenance=Provenance(wanted=mine.get("wants_provenance", False)),
            statistics=rt.config.statistics,
            audit_enabled=rt.audit_enabled,
            certificates=rt.certificates,
        )
        mine["context"] = context
        return context

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        mine = _per_request(request)
        context: Context = mine["context"]
        await self._record_access(context)
        data: GraphQLHTTPResponse = {"data": result.data}
        errors: list[object] = [format_error(err) for err in result.errors or ()]
        _drop_tracebacks(result.errors or ())  # logged already (GatewaySchema.process_errors)
        for error in errors:
            assert isinstance(error, dict)
            # No RRN in a message, whoever wrote it (graphql-core quotes a value it cannot
            # serialize; an agency's value may be another resident's RRN): wholly masked,
            # as no grant's mask is known here (the birth date is not the caller's to see).
            error["message"] = _RRN_IN_MESSAGE.sub("******-*******", error["message"])
            if not self.limits.introspection:
                error["message"] = without_suggestions(error["message"])
        mine["results"] = mine.get("results", 0) + 1
        if _is_request_error(result):
            mine["request_errors"] = mine.get("request_errors", 0) + 1
            if mine["media_type"] == GRAPHQL_RESPONSE:
                del data["data"]  # execution never started: no data entry at all
        if context.access.audit_failed and result.data:
            errors = _withhold(result.data, context.access.root_keys, errors)
        if errors:
            data["errors"] = errors
        seen: RequestSeen = mine["seen"]
        seen.errors(errors)  # type: ignore[arg-type]
        seen.purposes |= context.access.purposes
        if seen.cost is None:  # refused before executing (QUERY_TOO_COMPLEX): its measure
            seen.cost = context.cost
        extensions = dict(result.extensions or {})
        if context.provenance.entries and not context.access.audit_failed:
            extensions["provenance"] = context.provenance.entries
        if extensions:
            data["extensions"] = extensions
        return data

    async def _record_access(self, context: Context) -> None:
        """Commit the audit records before anything is released (the contract's promise)."""
        access = context.access
        records = access.drain(context.request_id)
        if not records or access.audit_failed or not self.runtime.audit_enabled:
            return
        try:
            await context.audit.record(records)
        except AuditUnavailable:
            access.audit_failed = True


def _withhold(data: dict[str, Any], keys: set[str], errors: list[Any]) -> list[object]:
    """Null every root field that carried resident data and say why."""
    withheld = [key for key in keys if data.get(key) is not None]
    for key in withheld:
        data[key] = None
    kept = [e for e in errors if not e.get("path") or e["path"][0] not in keys]
    return kept + [
        {
            "message": "The access could not be recorded in the audit store, "
            "so nothing was disclosed.",
            "path": [key],
            "extensions": {"code": "AUDIT_UNAVAILABLE"},
        }
        for key in sorted(keys)
    ]


def _is_request_error(result: ExecutionResult) -> bool:
    """The document did not parse or validate, or a variable did not coerce: execution never
    started (field errors always carry a path)."""
    return (
        result.data is None
        and bool(result.errors)
        and all(not error.path for error in result.errors or ())
    )


def _set_media_type(request: Request, response: Any) -> None:
    """application/graphql-response+json, when negotiated, for every JSON answer; and HTTP
    400 when no operation started (a batch: when none did)."""
    mine = _per_request(request)
    if mine["media_type"] != GRAPHQL_RESPONSE:
        return
    if not response.headers.get("content-type", "").startswith(JSON):
        return  # the GraphiQL page
    response.headers["content-type"] = content_type(GRAPHQL_RESPONSE)
    if (
        response.status_code == 200
        and mine.get("results", 0)
        and (mine.get("request_errors", 0) == mine["results"])
    ):
        response.status_code = 400


def _wants_provenance(data: Any) -> bool:
    items = data if isinstance(data, list) else [data]
    return any(
        isinstance(item, dict)
        and isinstance(item.get("extensions"), dict)
        and item["extensions"].get("provenance") is True
        for item in items
    )


def _drop_tracebacks(errors: Sequence[BaseException]) -> None:
    """A field error keeps its exception's traceback, whose frames hold the executor that
    holds the error: a reference cycle with the whole request behind it (see ``_forget``).
    Once the errors are logged and formatted, nothing reads the tracebacks."""
    for error in errors:
        seen: set[int] = set()
        todo: list[BaseException | None] = [error]
        while todo:
            one = todo.pop()
            if one is None or id(one) in seen:
                continue
            seen.add(id(one))
            one.__traceback__ = None
            todo += [getattr(one, "original_error", None), one.__cause__, one.__context__]


def _forget(request: Request) -> None:
    """Drop the request's references to its own objects once it is answered. The context
    holds the request, whose scope holds the context (``_per_request``), and the request's
    ``Access`` keeps its last resident object's resolve info, which holds the context: left
    so, every record, future and field value of the request would be cyclic garbage, kept
    until the collector walks it (BENCHMARKS.md: its time and pauses, before and after)."""
    mine = request.scope.pop("gateway", None)
    context = None if mine is None else mine.get("context")
    if context is not None:
        context.access.forget()


def _per_request(request: Request) -> dict[str, Any]:
    """This request's own values. Not request.state: that is the lifespan state, which
    some ASGI servers and test harnesses share between concurrent requests."""
    mine: dict[str, Any] = request.scope.setdefault("gateway", {})
    return mine


def _wants_graphiql(request: Request) -> bool:
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and "query" not in request.query_params
    )


def _request_id(request: Request) -> str:
    """Ours, always: it goes into the audit trail, so the client must not choose it (nor
    smuggle an RRN into it). The client's own id comes back as X-Client-Request-ID."""
    return uuid.uuid4().hex


#: An RRN in an error message, with or without its hyphen.
_RRN_IN_MESSAGE = re.compile(r"(?<!\d)\d{6}-?\d{7}(?!\d)")


def log_errors(errors: list[GraphQLError]) -> None:
    """Expected errors (coded, or the client's) at debug; anything else with its traceback."""
    for error in errors:
        original = error.original_error
        if original is None or isinstance(original, GatewayError | GraphQLError):
            log.debug("graphql error: %s", mask_rrns(error.message))
        else:
            log.error("unexpected error at %s", error.path, exc_info=original)
