"""Every error answers ``{"error": {"type", "message", "problems"}}``; nothing internal leaks.

Named twinkit errors keep their message (it says what to do); integrity failures and
unexpected exceptions answer a generic message and are logged in full with the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from twinkit.core.errors import (
    AlreadyExistsError,
    ForecastInputError,
    InvalidTwinError,
    MissingExtraError,
    NotFoundError,
    PromotionError,
    QuotaExceededError,
    TooLargeError,
    TwinkitError,
    ValidationError,
)
from twinkit.service.logs import LOGGER_NAME, request_id_var

log = logging.getLogger(LOGGER_NAME)

_STATUS: tuple[tuple[type[TwinkitError], int], ...] = (
    (NotFoundError, 404),
    (AlreadyExistsError, 409),
    (PromotionError, 409),
    (TooLargeError, 413),
    (ValidationError, 422),
    (InvalidTwinError, 422),
    (ForecastInputError, 422),
    (QuotaExceededError, 429),
    # a model this server's install cannot run (a slim install without torch)
    (MissingExtraError, 501),
)
_HTTP_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
}


class ApiError(HTTPException):
    """An error the service answers itself (auth, limits, a twin that is not yours)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=headers)
        self.kind = kind


def not_found(what: str) -> ApiError:
    """The one answer for "does not exist" and "is not yours": the two must not differ."""
    return ApiError(404, "NotFoundError", f"no {what}")


def error_body(
    kind: str, message: str, problems: Sequence[dict[str, Any]] = (), **extra: Any
) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "problems": list(problems), **extra}}


def status_of(exc: TwinkitError) -> int:
    if exc.exit_code == 2:
        return 503  # integrity or schema: the store, not the request, is at fault
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)


def _twinkit_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TwinkitError)
    status = status_of(exc)
    if status == 503:
        log.error("integrity failure: %s", exc, extra={"error_type": type(exc).__name__})
        body = error_body(
            type(exc).__name__,
            "stored data or a model artifact failed its integrity check; an administrator "
            f"can run the ledger verification (request id {request_id_var.get()})",
        )
        return JSONResponse(body, status_code=503)
    if isinstance(exc, ValidationError):
        problems = [
            {"message": p.message, "row": p.row, "column": p.column, "field": None}
            for p in exc.problems
        ]
        message = f"{exc.source}: batch rejected, nothing was stored ({len(problems)} problem(s))"
        return JSONResponse(error_body("ValidationError", message, problems), status_code=422)
    headers = (
        {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QuotaExceededError) else None
    )
    return JSONResponse(
        error_body(type(exc).__name__, str(exc)), status_code=status, headers=headers
    )


def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "message": str(e.get("msg", "invalid")),
            "row": None,
            "column": None,
            "field": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
        }
        for e in exc.errors()
    ]
    body = error_body("RequestValidationError", "the request is malformed", problems)
    return JSONResponse(body, status_code=422)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = exc.kind if isinstance(exc, ApiError) else _HTTP_TYPES.get(exc.status_code, "HTTPError")
    return JSONResponse(
        error_body(kind, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def internal_error_body() -> dict[str, Any]:
    """What an unexpected exception answers: no traceback, no SQL, the request id to quote."""
    request_id = request_id_var.get()
    return error_body(
        "InternalError",
        f"internal error; the server log has the details under request id {request_id}",
        request_id=request_id,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TwinkitError, _twinkit_error)
    app.add_exception_handler(RequestValidationError, _request_error)
    app.add_exception_handler(HTTPException, _http_error)
