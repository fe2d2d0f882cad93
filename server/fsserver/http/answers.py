"""Answers as JSON: the shapes `fsclient --json` prints (docs/json.md), with the numbers a
gRPC client gets.

The proto carries every float as float32 but times (`*seconds`, doubles); a threshold or a
similarity the server computed in float64 is rounded here as the wire rounds it, so both
edges answer the same numbers (tests/http/test_congruence.py). Each float32 is written as
the shortest decimal that reads back as the same float32 (0.6, not 0.6000000238418579).
Every field prints, zero or not (id 0 and distance 0 are answers); JSON has no infinity,
so an infinite distance is null.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from starlette.responses import Response

from fsclient.format import short_float, to_json


def as_on_the_wire(value: Any, key: str = "") -> Any:
    """`value` (JSON-able) with each float as the proto field carrying it would hold it."""
    if isinstance(value, float):
        return short_float(value if key.endswith("seconds") else float(np.float32(value)))
    if isinstance(value, dict):
        return {k: as_on_the_wire(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [as_on_the_wire(item, key) for item in value]
    return value


def json_bytes(value: Any) -> bytes:
    """`value` (JSON-able) as UTF-8 JSON, floats as on the wire."""
    return json.dumps(as_on_the_wire(value), ensure_ascii=False, allow_nan=False).encode()


class JSONAnswer(Response):
    """A facesearch type (or a JSON-able value of them) as this module writes it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(to_json(content))
