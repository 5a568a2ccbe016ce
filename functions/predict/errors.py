"""The one place errors become HTTP responses: every body is an ``ErrorResponse``."""

from __future__ import annotations

import uuid
from typing import Any

from aws_lambda_powertools import Logger
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from functions.predict.schemas import ErrorDetail, ErrorResponse
from hflambda.errors import AuthError, HflambdaError, ModelNotReady

logger = Logger(service="predict")


def request_id(request: Request) -> str:
    """API Gateway's request id when behind it, else a fresh correlation id."""
    event = request.scope.get("aws.event") or {}
    rid = (event.get("requestContext") or {}).get("requestId")
    if not rid:
        rid = request.headers.get("x-request-id") or getattr(request.state, "request_id", None) or uuid.uuid4().hex
    request.state.request_id = rid
    return str(rid)


def _body(status: int, code: str, message: str, rid: str, *, param: str | None = None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return ErrorResponse(error=ErrorDetail(type=code, code=code, message=message, param=param, details=details or {}, request_id=rid)).model_dump()


def error_response(request: Request, status: int, code: str, message: str, *, param: str | None = None, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """Build the one error shape."""
    return JSONResponse(_body(status, code, message, request_id(request), param=param, details=details), status_code=status, headers=headers)


def error_body(exc: Exception, rid: str) -> tuple[int, dict[str, Any]]:
    """Status and body for an error raised after a stream started (it becomes an SSE event).

    Anything but a deliberate ``HflambdaError`` is logged and answered without its text.
    """
    if isinstance(exc, HflambdaError):
        details = {k: v for k, v in exc.details.items() if k != "field" and v is not None}
        return exc.status, _body(exc.status, exc.code, exc.message, rid, param=getattr(exc, "field", None), details=details)
    logger.exception("unhandled error", extra={"request_id": rid})
    return 500, _body(500, "internal_error", f"Internal error; quote request id {rid} when reporting it.", rid)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that map every error to its status and body."""

    @app.exception_handler(HflambdaError)
    async def _hflambda(request: Request, exc: HflambdaError) -> JSONResponse:
        headers: dict[str, str] = {}
        if isinstance(exc, ModelNotReady):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, AuthError):
            desc = exc.description.replace('"', "'")
            # RFC 6750: a request without credentials gets a bare challenge, no error code
            missing = request.headers.get("authorization") is None and "aws.event" not in request.scope
            headers["WWW-Authenticate"] = "Bearer" if missing else f'Bearer error="invalid_token", error_description="{desc}"'
            if exc.status == 503:
                headers["Retry-After"] = "5"
        details = {k: v for k, v in exc.details.items() if k != "field" and v is not None}
        if exc.status >= 500 and not isinstance(exc, ModelNotReady):
            logger.warning("request failed", extra={"code": exc.code, "error": exc.message, "request_id": request_id(request)})
        return error_response(request, exc.status, exc.code, exc.message, param=getattr(exc, "field", None), details=details, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        param = _loc(tuple(first.get("loc", ())))
        message = f"{param}: {first.get('msg')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s), see details)"
        problems = [{"param": _loc(tuple(e.get("loc", ()))), "message": str(e.get("msg"))} for e in errors]
        return error_response(request, 422, "invalid_request", message, param=param, details={"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        logger.exception("unhandled error", extra={"request_id": rid})
        return error_response(request, 500, "internal_error", f"Internal error; quote request id {rid} when reporting it.")
