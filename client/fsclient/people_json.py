"""The JSON shapes of people, listings and decisions, as `fsclient.format.to_json` writes them.

Kept apart from format.py (which merges these converters into its own) so that each stays
short; docs/json.md documents every key. A distance that is infinite (Identify with nobody
enrolled, or the margin when only one person is) becomes null: JSON has no infinity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fsclient.types import (
    Candidate,
    DecisionRule,
    Identification,
    IdentifyResult,
    ItemSummary,
    Person,
    VerifyResult,
)

Converter = Callable[[Any], Any]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def people_converters(nested: Converter) -> dict[type, Converter]:
    """Converters by type; `nested` converts a nested value (a Face, a rule), None to None."""
    return {
        Person: lambda p: {"label": p.label, "count": p.count},
        ItemSummary: lambda i: {"id": i.id, "label": i.label, "metadata": i.metadata},
        DecisionRule: lambda r: {
            "source": r.source,
            "reason": r.reason,
            "threshold": float(r.threshold),
            "margin": float(r.margin),
            "pair_threshold": float(r.pair_threshold),
            "person_threshold": float(r.person_threshold),
            "target_far": float(r.target_far),
            "estimated_far": float(r.estimated_far),
            "estimated_tar": float(r.estimated_tar),
            "people": r.people,
            "items": r.items,
            "seconds": r.seconds,
        },
        Candidate: lambda c: {
            "person": c.person,
            "distance": float(c.distance),
            "similarity": float(c.similarity),
            "near": c.near,
            "id": c.id,
        },
        Identification: lambda i: {
            "face": nested(i.face),
            "known": i.known,
            "person": i.person,
            "distance": _finite(i.distance),
            "similarity": float(i.similarity),
            "margin": _finite(i.margin),
            "candidates": [nested(c) for c in i.candidates],
        },
        IdentifyResult: lambda r: {
            "results": [nested(i) for i in r.results],
            "decision": nested(r.decision),
            "search_seconds": r.search_seconds,
            "embed_seconds": r.embed_seconds,
        },
        VerifyResult: lambda v: {
            "same": v.same,
            "distance": float(v.distance),
            "similarity": float(v.similarity),
            "threshold": float(v.threshold),
            "face": nested(v.face),
            "other_face": nested(v.other_face),
            "other_id": v.other_id,
        },
    }
