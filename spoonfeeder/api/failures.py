"""Every failure of a route as the seed's error envelope, with a stable code and the
right HTTP status: the one exception tree, FastAPI's own validation, unknown routes,
and — without its text — anything unexpected."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from spoonfeeder import errors
from spoonfeeder.api.envelope import Failure

log = logging.getLogger(__name__)


class Unauthorized(errors.SpoonFeederError):
    """No credentials, or wrong ones, on a route that needs them."""


# Most specific first: the first class an error is an instance of gives its status and code.
CODES: list[tuple[type[Exception], int, str]] = [
    (Unauthorized, 401, "UNAUTHORIZED"),
    (errors.Forbidden, 403, "FORBIDDEN"),
    (errors.ValidationError, 422, "VALIDATION_ERROR"),
    (errors.NotFoundError, 404, "NOT_FOUND"),
    (errors.ComfyUIPromptRejected, 422, "PROMPT_REJECTED"),
    (errors.ProviderRateLimited, 429, "RATE_LIMITED"),
    (errors.ProviderAuthError, 502, "AUTH_REJECTED"),
    (errors.ProviderUnavailable, 503, "PROVIDER_UNAVAILABLE"),
    (errors.ProviderRequestError, 422, "PROVIDER_REJECTED"),
    (errors.ProviderServerError, 502, "PROVIDER_ERROR"),
    (errors.ProviderError, 502, "PROVIDER_ERROR"),
    (errors.SecretError, 500, "SECRET_UNREADABLE"),
    (errors.ConfigError, 500, "CONFIG_ERROR"),
    (errors.TaskError, 500, "TASK_ERROR"),
    (errors.SpoonFeederError, 400, "BAD_REQUEST"),
]
HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
UNEXPECTED = "Something went wrong on the server; the details are in its log."


def status_and_code(exc: errors.SpoonFeederError) -> tuple[int, str]:
    for kind, status, code in CODES:
        if isinstance(exc, kind):
            return status, code
    return 400, "BAD_REQUEST"  # pragma: no cover  (SpoonFeederError is the last row)


def failure(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return JSONResponse(
        {"success": False, "error": message, "code": code}, status_code=status, headers=headers
    )


def error_response(exc: errors.SpoonFeederError) -> JSONResponse:
    status, code = status_and_code(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Basic realm="Spoon Feeder"'
    retry_after = getattr(exc, "retry_after", None)
    if status == 429 and retry_after:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    return failure(status, code, exc.message, headers or None)


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's list of problems as one sentence naming each field."""
    parts = []
    for problem in exc.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p not in ("body", "query"))
        text = str(problem.get("msg", "is invalid"))
        parts.append(f"{where}: {text}" if where else text)
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def install(app: FastAPI) -> None:
    """Make every error of `app` an envelope."""

    @app.exception_handler(errors.SpoonFeederError)
    async def known(request: Request, exc: errors.SpoonFeederError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return failure(422, "VALIDATION_ERROR", validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        message = exc.detail if isinstance(exc.detail, str) else "The request was refused."
        if exc.status_code == 404 and message == "Not Found":
            message = f"There is no {request.url.path} here."
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        return failure(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unexpected error in %s %s", request.method, request.url.path)
        return failure(500, "INTERNAL_ERROR", UNEXPECTED)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Failure, "description": description}
    for status, description in {
        401: "No or wrong credentials (when authentication is on)",
        404: "No such record",
        422: "A value was refused: `error` names it",
    }.items()
}
