"""One error shape for every failure: `{"error": {"code": ..., "message": ..., "field": ...}}` with a 4xx/5xx status.

FastAPI's own failures (validation, unparseable bodies, unknown paths, the body-size limit) are rewritten into that
shape by the handlers installed with `install_error_handlers`, so a client never has to parse two formats.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from vlfuse.serve.batcher import QueueFull

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "malformed_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable error code, e.g. unsupported_image")
    message: str = Field(description="what is wrong (naming the field) and what was expected")
    field: str | None = Field(None, description="the request field at fault, when there is one")


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES = {status: {"model": ErrorResponse} for status in (400, 413, 415, 422, 503)}  # for route declarations


class ApiError(Exception):
    """A request the server refuses, with the HTTP status, a stable machine-readable code and a message that names
    the field at fault and what was expected.

    Args:
        status: HTTP status (4xx for client errors).
        code: short snake_case identifier, e.g. "unsupported_image".
        message: what is wrong and what was expected.
        field: the request field at fault, when there is one.
    """

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def _field_of(loc: tuple | list) -> str | None:
    """('body', 'text') → 'text'; ('query', 'k') → 'k'; ('body',) → None."""
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header", "form") else list(loc)
    return ".".join(parts) or None


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """A readable message (and the first field at fault) from pydantic/FastAPI validation errors."""
    parts, first_field = [], None
    for err in errors:
        field = _field_of(err.get("loc", ()))
        first_field = first_field or field
        msg = err.get("msg", "invalid value")
        if err.get("type") == "missing":
            msg = "is required"
        elif "Expected UploadFile" in msg:
            msg = "expected a file (a multipart part with a filename), got a plain form value"
        parts.append(f"field '{field}': {msg}" if field else msg)
    return "; ".join(parts) or "the request is invalid", first_field


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    body_missing = errors and all(
        e.get("type") == "missing" and tuple(e.get("loc", ()))[:1] == ("body",) for e in errors
    )
    if body_missing and content_type and not content_type.startswith(FORM_TYPES):
        fields = ", ".join(f"'{_field_of(e['loc'])}'" for e in errors)
        message = f"the body is {content_type}; expected multipart/form-data with the field(s) {fields}"
        return JSONResponse(error_body("unsupported_media_type", message), status_code=415)
    message, field = validation_message(errors)
    too_long = [e for e in errors if e.get("type") == "string_too_long"]
    if too_long and len(too_long) == len(errors):  # the same code as a text over the form parser's size limit
        limit = too_long[0].get("ctx", {}).get("max_length")
        message = f"field '{field}' is too long; expected a text of at most {limit:,} characters"
        return JSONResponse(error_body("text_too_long", message, field), status_code=422)
    return JSONResponse(error_body("invalid_field", message, field), status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error" if exc.status_code < 500 else "internal_error")
    detail = str(exc.detail)
    if exc.status_code == 400 and "exceeded maximum size" in detail:  # the form parser's per-field limit
        ctx = getattr(request.app.state, "context", None)
        chars = f"{ctx.limits.max_text_chars:,} characters" if ctx is not None else "the text limit"
        message = f"a form field is too long ({detail}); expected a text of at most {chars}"
        return JSONResponse(error_body("text_too_long", message), status_code=422)
    if exc.status_code == 400:
        message = (
            f"the request body could not be parsed ({detail}); expected multipart/form-data with the fields of "
            f"{request.url.path} (see /openapi.json)"
        )
    elif exc.status_code == 413:
        message = f"{detail}; send a smaller file"
    elif exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}; see /openapi.json for the API"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /openapi.json for the API"
    else:
        message = detail
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _queue_full(_: Request, exc: QueueFull) -> JSONResponse:
    body = error_body("overloaded", f"the server is busy: {exc}")
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", f"internal error ({type(exc).__name__})"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure through the one JSON error shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
