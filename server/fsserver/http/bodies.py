"""Request bodies: JSON objects or multipart forms, read the same way by every route.

A route asks for a field by name and type and gets it from either kind of body: a JSON
value, or a multipart text field parsed as the type asks. Images come as multipart files
or as base64 strings in JSON (as proto3's JSON mapping carries bytes); URLs are never
fetched. The size limit is applied while the body arrives, so a huge one is refused
without being held in memory.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from fsclient.types import FloatArray
from fsserver.http.errors import HttpError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_FORM_FILES = 64
COMPREFACE_PREFIX = "/api/v1/"


def invalid(message: str) -> HttpError:
    return HttpError(400, "INVALID_ARGUMENT", message)


@dataclass
class Body:
    """A request's fields (JSON values, or form text) and uploaded files, by name."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, list[bytes]] = field(default_factory=dict)
    form: bool = False  # the fields are text from a form, to be parsed by type

    def text(self, name: str, default: str = "") -> str:
        value = self.fields.get(name, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise invalid(f"{name} must be a string")
        return value

    def integer(self, name: str, default: int | None = 0) -> int | None:
        value = self.fields.get(name)
        if value is None or value == "":
            return default
        if self.form and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise invalid(f"{name} must be an integer, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"{name} must be an integer")
        return value

    def number(self, name: str) -> float | None:
        value = self.fields.get(name)
        if value is None or value == "":
            return None
        if self.form and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise invalid(f"{name} must be a number, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(f"{name} must be a number")
        return float(value)

    def flag(self, name: str) -> bool:
        value = self.fields.get(name)
        if value is None or value == "":
            return False
        if self.form and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise invalid(f"{name} must be true or false, not {value!r}")
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise invalid(f"{name} must be true or false")
        return value

    def has(self, name: str) -> bool:
        return name in self.files or self.fields.get(name) not in (None, "")

    def image(self, name: str) -> bytes:
        """The image `name`: an uploaded file, or a base64 string."""
        if name in self.files:
            return self.files[name][0]
        value = self.fields.get(name)
        if value is None or value == "":
            raise invalid(f"no {name}: send it as a multipart file or as base64 in JSON")
        if not isinstance(value, str):
            raise invalid(f"{name} must be a base64 string")
        return decode_base64(value, name)

    def vector(self, name: str) -> FloatArray:
        value = self.fields.get(name)
        if self.form and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise invalid(f"{name} must be a JSON array of numbers") from None
        return as_vector(value, name)


def decode_base64(text: str, name: str) -> bytes:
    if text.startswith(("http://", "https://")):
        raise invalid(f"{name} is a URL: this server does not fetch URLs; send the image's bytes")
    if text.startswith("data:") and "," in text:  # a data URL, as browsers make them
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{name} is not valid base64") from None


def as_vector(value: Any, name: str) -> FloatArray:
    if not isinstance(value, list) or not value:
        raise invalid(f"{name} must be a non-empty array of numbers")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise invalid(f"{name} must hold numbers only")
    return np.asarray(value, dtype=np.float32)


async def read_body(request: Request) -> Body:
    """The request's body as a Body; an empty body is an empty one."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in JSON_TYPES:
        raw = await request.body()
        if not raw.strip():
            return Body()
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise invalid(f"the body is not valid JSON: {error}") from None
        if not isinstance(value, dict):
            raise invalid("the JSON body must be an object")
        return Body(fields=value)
    if kind in FORM_TYPES:
        try:
            form = await request.form(max_files=MAX_FORM_FILES, max_fields=1000)
        except HttpError:
            raise
        except Exception as error:  # python-multipart's parse errors, starlette's limits
            raise invalid(f"the form cannot be read: {getattr(error, 'detail', error)}") from None
        body = Body(form=True)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                body.files.setdefault(key, []).append(await value.read())
            else:
                body.fields.setdefault(key, value)
        await form.close()
        return body
    if not kind and not await request.body():
        return Body()
    raise HttpError(
        415,
        "INVALID_ARGUMENT",
        f"content type {kind or '(none)'!r} is not one this route reads: "
        "send application/json or multipart/form-data",
    )


class BodyLimit:
    """Refuses a body over `max_bytes` (413), by its Content-Length or as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                compreface = str(scope.get("path", "")).startswith(COMPREFACE_PREFIX)
                await _too_large(send, self.max_bytes, compreface)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HttpError(413, "RESOURCE_EXHAUSTED", _too_large_text(self.max_bytes))
            return message

        await self.app(scope, counted, send)


def _too_large_text(max_bytes: int) -> str:
    return f"the body is over the limit of {max_bytes} bytes (--max-message-mb)"


async def _too_large(send: Send, max_bytes: int, compreface: bool) -> None:
    # The error shape of the route's API: CompreFace's clients read {"message", "code": int}.
    message = _too_large_text(max_bytes)
    shape = (
        {"message": message, "code": 0}
        if compreface
        else {"code": "RESOURCE_EXHAUSTED", "message": message}
    )
    payload = json.dumps(shape).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
