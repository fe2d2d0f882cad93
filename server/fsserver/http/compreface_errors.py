"""Errors of the CompreFace routes in CompreFace's own shape: `{"message", "code"}`.

CompreFace clients read `code` (Double Take treats code 28, no face, as "nobody here"
rather than a failure), so these routes answer CompreFace's numeric codes instead of the
`{"code": "NOT_FOUND"}` of the /v1 routes. A route class catches whatever a route raises,
framework errors included, so no error from /api/v1 leaves in the /v1 shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fsserver.errors import FailedPrecondition, InvalidArgument, NotFound, ServiceError
from fsserver.http.api_keys import KeyRefused
from fsserver.http.errors import HTTP_STATUS, HttpError

log = logging.getLogger(__name__)

# CompreFace's codes (its CommonExceptionCode), for the errors these routes can meet.
UNDEFINED = 0
MODEL_NOT_FOUND = 10  # CompreFace: no service has this API key
IMAGE_NOT_FOUND = 11
MISSING_REQUEST_HEADER = 20
VALIDATION_CONSTRAINT_VIOLATION = 26
NO_FACES_FOUND = 28
MISSING_REQUEST_PARAMETER = 33
MISSING_REQUEST_PART = 34
INCORRECT_ARGUMENT = 36
SUBJECT_NOT_FOUND = 42
SUBJECT_ALREADY_EXISTS = 43

NO_FACE_MESSAGE = "No face is found in the given image"


class CompreFaceError(Exception):
    """An error these routes answer as is: HTTP status, CompreFace code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def no_face() -> CompreFaceError:
    return CompreFaceError(400, NO_FACES_FOUND, NO_FACE_MESSAGE)


def incorrect(message: str) -> CompreFaceError:
    return CompreFaceError(400, INCORRECT_ARGUMENT, message)


def answer(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "code": code}, status_code=status)


def error_answer(error: Exception, request: Request) -> Response:
    """Any exception a route raised, as CompreFace would answer it."""
    if isinstance(error, CompreFaceError):
        return answer(error.status, error.code, error.message)
    if isinstance(error, KeyRefused):
        code = MISSING_REQUEST_HEADER if error.missing else MODEL_NOT_FOUND
        return answer(401, code, str(error))
    if isinstance(error, FailedPrecondition) and "no face" in str(error):
        return answer(400, NO_FACES_FOUND, NO_FACE_MESSAGE)
    if isinstance(error, InvalidArgument):
        return answer(400, INCORRECT_ARGUMENT, str(error))
    if isinstance(error, NotFound):
        return answer(404, UNDEFINED, str(error))
    if isinstance(error, ServiceError):
        return answer(HTTP_STATUS.get(error.code, 500), UNDEFINED, str(error))
    if isinstance(error, HttpError):
        code = INCORRECT_ARGUMENT if error.status == 400 else UNDEFINED
        return answer(error.status, code, error.message)
    if isinstance(error, RequestValidationError):
        return answer(400, INCORRECT_ARGUMENT, "the request is not valid")
    if isinstance(error, StarletteHTTPException):
        return answer(error.status_code, UNDEFINED, str(error.detail))
    log.exception("%s %s failed", request.method, request.url.path)
    return answer(500, UNDEFINED, f"{request.url.path} failed on the server")


class CompreFaceRoute(APIRoute):
    """A route whose every failure is answered by error_answer."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:  # every error, in CompreFace's shape
                return error_answer(error, request)

        return guarded
