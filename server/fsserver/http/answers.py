"""Answers as JSON: the shapes `fsclient --json` prints (docs/json.md), at their precision.

The same writer as the CLI's (fsclient.format): a float that came from float32 (a
distance, a vector component) is the shortest decimal that reads back as the same float32
(0.6, not 0.6000000238418579); every field prints, zero or not (id 0 and distance 0 are
answers); JSON has no infinity, so an infinite distance is null.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from fsclient.format import tidy_floats, to_json


def json_bytes(value: Any) -> bytes:
    """`value` (JSON-able) as UTF-8 JSON, floats at their precision."""
    return json.dumps(tidy_floats(value), ensure_ascii=False, allow_nan=False).encode("utf-8")


class JSONAnswer(Response):
    """A facesearch type (or a JSON-able value of them) as this module writes it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(to_json(content))
