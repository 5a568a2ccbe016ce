"""The one place errors become HTTP responses: every body is an ``ErrorResponse``.

The error story: every error a client of the predict API can receive is an
``HflambdaError`` carrying its ``status`` and ``code``, defined in ``hflambda.errors`` (its
docstring says which subpackage errors stay out of it and why); this module maps them, and
FastAPI's own (validation, 404/405) and the body guard's (413/415), to the one body.
``responses(*codes)`` documents a route's errors with that body.

Logging goes through the shared Powertools logger (``hflambda.telemetry.logger``), so these
lines carry the Lambda context and the request id like every other line.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.predict.schemas import ErrorDetail, ErrorResponse
from hflambda.errors import AuthError, HflambdaError, ModelNotReady
from hflambda.telemetry import logger

__all__ = [
    "ERROR_DESCRIPTIONS",
    "error_body",
    "error_response",
    "install",
    "request_id",
    "responses",
    "without_default_422",
]

# What each documented status means on this API (the codes in backticks are ``error.type``).
# 500 (``internal_error``, a bug) can answer any route and is not listed per route.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "A request the caller can fix (`bad_request`, `context_length_exceeded`); `param` names the field.",
    401: "Missing or invalid bearer token (`invalid_token`, `auth_not_configured`); see the WWW-Authenticate header.",
    404: "The model is not in the registry for this task (`model_not_found`, listing the known aliases; "
    "/v1/search: the registry has no embedding model).",
    413: "The request body is over HFLAMBDA_MAX_BODY_BYTES, or a batch or document is over a documented limit (`payload_too_large`).",
    415: "The request body is not JSON (`unsupported_media_type`).",
    422: "The request does not match its schema (`invalid_request`); `details.problems` lists every problem.",
    502: "A dependency failed: the vector store, or every model of the fallback chain (`upstream_error`, `fallback_exhausted`).",
    503: "Not ready, retry later: a model not warmed (`model_not_ready`, Retry-After), the signing keys unreachable "
    "(`auth_unavailable`), or a dependency not configured (`queue_not_configured`, `vector_store_not_configured`), "
    "or every model of the fallback chain temporarily unavailable (`fallback_exhausted`).",
    504: "The fallback chain ran out of its time budget (`fallback_exhausted`).",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for a route's error statuses, each documented with the ``ErrorResponse`` body.

    List exactly what the route can answer: 401/503 where it depends on ``Caller``, 413/415
    where it takes a body (the body guard), 422 where it validates a body or parameters.
    """
    unknown = sorted(set(codes) - set(ERROR_DESCRIPTIONS))
    if unknown:
        raise ValueError(f"no description for status {unknown}: add it to ERROR_DESCRIPTIONS")
    return {
        code: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[code]} for code in sorted(set(codes))
    }


def request_id(request: Request) -> str:
    """API Gateway's request id when behind it, else a fresh correlation id."""
    event = request.scope.get("aws.event") or {}
    rid = (event.get("requestContext") or {}).get("requestId")
    if not rid:
        rid = (
            request.headers.get("x-request-id")
            or getattr(request.state, "request_id", None)
            or uuid.uuid4().hex
        )
    request.state.request_id = rid
    return str(rid)


def _body(
    status: int,
    code: str,
    message: str,
    rid: str,
    *,
    param: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return ErrorResponse(
        error=ErrorDetail(
            type=code, code=code, message=message, param=param, details=details or {}, request_id=rid
        )
    ).model_dump()


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build the one error shape."""
    return JSONResponse(
        _body(status, code, message, request_id(request), param=param, details=details),
        status_code=status,
        headers=headers,
    )


def error_body(exc: Exception, rid: str) -> tuple[int, dict[str, Any]]:
    """Status and body for an error raised after a stream started (it becomes an SSE event).

    Anything but a deliberate ``HflambdaError`` is logged and answered without its text.
    """
    if isinstance(exc, HflambdaError):
        details = {k: v for k, v in exc.details.items() if k != "field" and v is not None}
        return exc.status, _body(
            exc.status, exc.code, exc.message, rid, param=getattr(exc, "field", None), details=details
        )
    logger.exception("unhandled error", extra={"request_id": rid})
    return 500, _body(
        500, "internal_error", f"Internal error; quote request id {rid} when reporting it.", rid
    )


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


DEFAULT_422 = "#/components/schemas/HTTPValidationError"


def without_default_422(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without FastAPI's automatic 422 ``HTTPValidationError`` responses.

    FastAPI adds one to every route with parameters, but this API never sends that body: its
    422s are ``ErrorResponse`` (``_validation`` below), listed by ``responses`` where a
    request can fail validation. Idempotent.
    """
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            answer = operation.get("responses", {}).get("422", {})
            if (
                answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                == DEFAULT_422
            ):
                del operation["responses"]["422"]
    schemas = schema.get("components", {}).get("schemas", {})
    if DEFAULT_422 not in json.dumps(schema.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return schema


def install(app: FastAPI) -> None:
    """Register the handlers that map every error to its status and body, and document them truly."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return without_default_422(default_openapi())

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(HflambdaError)
    async def _hflambda(request: Request, exc: HflambdaError) -> JSONResponse:
        headers: dict[str, str] = {}
        if isinstance(exc, ModelNotReady):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, AuthError):
            desc = exc.description.replace('"', "'")
            # RFC 6750: a request without credentials gets a bare challenge, no error code
            missing = request.headers.get("authorization") is None and "aws.event" not in request.scope
            headers["WWW-Authenticate"] = (
                "Bearer" if missing else f'Bearer error="invalid_token", error_description="{desc}"'
            )
            if exc.status == 503:
                headers["Retry-After"] = "5"
        details = {k: v for k, v in exc.details.items() if k != "field" and v is not None}
        if exc.status >= 500 and not isinstance(exc, ModelNotReady):
            logger.warning(
                "request failed",
                extra={"code": exc.code, "error": exc.message, "request_id": request_id(request)},
            )
        return error_response(
            request,
            exc.status,
            exc.code,
            exc.message,
            param=getattr(exc, "field", None),
            details=details,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        param = _loc(tuple(first.get("loc", ())))
        message = f"{param}: {first.get('msg')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s), see details)"
        problems = [{"param": _loc(tuple(e.get("loc", ()))), "message": str(e.get("msg"))} for e in errors]
        return error_response(
            request, 422, "invalid_request", message, param=param, details={"problems": problems}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            415: "unsupported_media_type",
        }.get(exc.status_code, "http_error")
        return error_response(
            request, exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        logger.exception("unhandled error", extra={"request_id": rid})
        return error_response(
            request, 500, "internal_error", f"Internal error; quote request id {rid} when reporting it."
        )
