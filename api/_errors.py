"""One error shape everywhere: {"error": {"code", "message", "details"}, "message"}.

The top-level `message` repeats `error.message`: the original backend answered errors as
`{"message": ...}`, and its front ends show `response.data.message` to the user."""

from __future__ import annotations

import logging
import math
from typing import Any

import trio
from quart import Quart, Response, has_request_context, jsonify, request
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError, RequestHeadersValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from api._auth import Busy
from router import Refused, RouterError
from store import StoreUnavailable
from telemetry import limit_hit

log = logging.getLogger("api")


class ApiError(Exception):
    """A refusal a client can act on; `retry_after` (seconds) becomes a Retry-After header."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        if status == 429 and retry_after is None:
            # RFC 6585: a 429 may say when to retry; ours always does, or clients guess.
            raise TypeError("a 429 needs retry_after: say when the client may try again")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    response = jsonify(
        {"error": {"code": code, "message": message, "details": details}, "message": message}
    )
    response.status_code = status
    return response


def _validation_details(error: RequestSchemaValidationError) -> Any:
    cause = error.validation_error
    if hasattr(cause, "errors"):
        return [
            {
                "field": ".".join(str(part) for part in item["loc"]),
                "problem": item["msg"],
            }
            for item in cause.errors(include_url=False, include_input=False)
        ]
    return str(cause)


# How long a request waits for an actor's answer before it is told to retry (503).
ASK_SECONDS = 10.0

_FORBIDDEN_REFUSALS = frozenset({"not_your_chat", "not_a_participant"})
_INVALID_REFUSALS = frozenset({"invalid_max_load", "status_not_settable"})


def refusal_status(refusal: Refused) -> int:
    """The HTTP status of a domain refusal: its code decides, 409 when nothing more specific."""
    if refusal.code.endswith("_not_found"):
        return 404
    if refusal.code in _FORBIDDEN_REFUSALS:
        return 403
    if refusal.code in _INVALID_REFUSALS:
        return 400
    return 409


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message, error.details)
        if error.retry_after is not None:
            # Whole seconds (RFC 9110), never 0: a client retrying at once would be refused again.
            response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        return response

    @app.errorhandler(Busy)
    async def _busy(error: Busy) -> Response:
        limit_hit("password_hashing", reason=str(error))
        response = error_response(
            503, "busy", "the server is busy checking passwords; retry in a moment"
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def _invalid_body(error: RequestSchemaValidationError) -> Response:
        part = (
            "query"
            if isinstance(error, QuerystringValidationError)
            else "headers"
            if isinstance(error, RequestHeadersValidationError)
            else "body"
        )
        return error_response(
            400,
            f"invalid_{part}",
            f"the request {part} is not valid; see details for each field",
            _validation_details(error),
        )

    @app.errorhandler(UnicodeDecodeError)
    async def _not_utf8(error: UnicodeDecodeError) -> Response:
        # Raised where Quart decodes a request body as text; nothing else here decodes bytes.
        return error_response(400, "bad_request", "the request body is not valid UTF-8")

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        if status == 400:
            message = "the request body is not valid JSON or not a JSON object"
        elif status == 413:
            # This request's limit: a form with an image may be larger (api/_forms.py).
            limit = request.max_content_length if has_request_context() else None
            limit = limit or app.config["MAX_CONTENT_LENGTH"]
            limit_hit("body_size", max_bytes=limit)
            message = f"the request body is larger than {limit} bytes"
        elif status == 404:
            message = "no such endpoint"
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), message)
        # A 405 names the methods the path does take (RFC 9110).
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Refused)
    async def _refused(error: Refused) -> Response:
        return error_response(refusal_status(error), error.code, error.message)

    @app.errorhandler(RouterError)
    async def _actor_unavailable(error: RouterError) -> Response:
        log.warning("actor unavailable: %s", error)
        return error_response(
            503, "unavailable", "the service is restarting a component; retry in a moment"
        )

    @app.errorhandler(StoreUnavailable)
    async def _store_unavailable(error: StoreUnavailable) -> Response:
        log.warning("store unavailable: %s", error)
        return error_response(
            503, "store_unavailable", "the database cannot be reached right now; retry shortly"
        )

    @app.errorhandler(trio.TooSlowError)
    async def _too_slow(error: trio.TooSlowError) -> Response:
        return error_response(503, "overloaded", "the service is too busy to answer; retry shortly")

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal", "an internal error occurred; it has been logged")
