"""Errors over HTTP: `{"code": "NOT_FOUND", "message": ...}` with the matching status.

The codes are gRPC's names, so a client sees the same error on either edge; the HTTP
statuses follow Google's mapping of those codes (google/rpc/code.proto).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from fsserver.errors import ServiceError

log = logging.getLogger(__name__)

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# An HTTP status the framework raised (405, 413, 415...) → the gRPC code it is closest to.
_CODE_OF_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    503: "UNAVAILABLE",
}


class HttpError(Exception):
    """An error with its own HTTP status (413 for a body too large, 415 for a content type)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def install_handlers(app: FastAPI) -> None:
    """Every error this app answers is the one JSON shape."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return error_response(HTTP_STATUS.get(error.code, 500), error.code, str(error))

    @app.exception_handler(HttpError)
    async def http_error(request: Request, error: HttpError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "INVALID_ARGUMENT", _describe(error))

    @app.exception_handler(StarletteHTTPException)
    async def framework(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _CODE_OF_STATUS.get(error.status_code, "INVALID_ARGUMENT")
        return error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "INTERNAL", f"{request.url.path} failed on the server")


def _describe(error: RequestValidationError) -> str:
    """One line per problem: where it is (`body.k`) and what is wrong with it."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"
