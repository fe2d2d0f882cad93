"""OpenAPI descriptions of the bodies the routes read themselves (JSON or multipart)."""

from __future__ import annotations

from typing import Any

IMAGE = {"type": "string", "format": "binary", "description": "an encoded image (JPEG, PNG…)"}
IMAGE_BASE64 = {"type": "string", "format": "byte", "description": "the image's bytes, base64"}
VECTOR = {"type": "array", "items": {"type": "number"}}
TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"}}


def body(images: tuple[str, ...] = (), multipart: bool = True, **fields: Any) -> dict[str, Any]:
    """`openapi_extra` for a route whose body is JSON (images base64) or a multipart form
    (images as files); `fields` maps a name to "int", "float", "bool", "str", or a schema."""
    schema = {
        name: TYPES.get(kind, {"type": "string"}) if isinstance(kind, str) else kind
        for name, kind in fields.items()
    }
    content: dict[str, Any] = {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {**{name: IMAGE_BASE64 for name in images}, **schema},
            }
        }
    }
    if multipart:
        form = {name: value for name, value in schema.items() if value is not VECTOR}
        content["multipart/form-data"] = {
            "schema": {"type": "object", "properties": {**{n: IMAGE for n in images}, **form}}
        }
    return {"requestBody": {"required": bool(images), "content": content}}
