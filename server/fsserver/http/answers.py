"""Answers as JSON: the shapes `fsclient --json` prints (docs/json.md), at their precision.

A float that came from float32 (a distance, a vector component) is written as the shortest
decimal that reads back as the same float32: 0.6, not 0.6000000238418579. Fields print
even when zero: id 0 and distance 0 are answers. JSON has no infinity: null instead.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from starlette.responses import Response

from fsclient.format import to_json


def short_float(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    single = np.float32(value)
    if float(single) != value:
        return value  # a float64 value: it carries its own precision
    return float(str(single))


def tidy(value: Any) -> Any:
    """`value` (JSON-able) with every float at its precision."""
    if isinstance(value, float):
        return short_float(value)
    if isinstance(value, dict):
        return {key: tidy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [tidy(item) for item in value]
    return value


def json_bytes(value: Any) -> bytes:
    return json.dumps(tidy(value), ensure_ascii=False, allow_nan=False).encode("utf-8")


class JSONAnswer(Response):
    """A facesearch type (or a JSON-able value of them) as this module writes it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(to_json(content))
