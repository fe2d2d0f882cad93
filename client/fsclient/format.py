"""Pure formatters for the `fsclient` CLI: Python types in, text (or JSON-able dicts) out.

Nothing here prints or touches files, so every line the CLI writes can be unit-tested.

`to_json` maps the dataclasses of `fsclient.types` to plain dicts with stable keys (vectors
become lists of floats, bytes become base64 text). docs/json.md documents every shape the
CLI prints, and tests/client/test_cli_json.py checks the CLI's output against it; the one shape
only the Python API produces is BatchResult: ids, distances, labels, matches (rows x k
lists), metadata (or null), search_seconds.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fsclient.people_json import people_converters
from fsclient.types import (
    AddResult,
    BatchResult,
    Box,
    CollectionInfo,
    CompactResult,
    DecisionRule,
    Embedding,
    Face,
    FaceMatches,
    FloatArray,
    Item,
    ItemError,
    Neighbor,
    QueryResult,
    SaveResult,
    Stats,
)

# Enough of a vector to recognise it at a glance; --json has all of it.
VECTOR_PREVIEW = 4


@dataclass(frozen=True)
class AddOutcome:
    """One enrolled item as the user knows it: the file (and row) it came from."""

    source: str
    label: str
    result: AddResult
    # An item already enrolled with this very face (the same photo added again), if any.
    duplicate_of: Neighbor | None = None
    skipped: bool = False  # --skip-existing: not kept; result.id is the enrolled item's


# ---- small pieces ------------------------------------------------------------------------


def format_distance(distance: float) -> str:
    """Always 4 decimals, `0.0000`, `0.3125`, `7.3000`: distances line up and compare at a
    glance, thresholds and margins alike (float32 distances carry about 7 digits)."""
    return f"{distance:.4f}"


def format_ms(seconds: float) -> str:
    ms = seconds * 1000.0
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def format_bytes(size: int) -> str:
    value, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def format_box(box: Box) -> str:
    # The multiplication sign reads as a size, where an x would run into the numbers.
    return f"x={box.x},y={box.y},{box.width}×{box.height}"  # noqa: RUF001


def format_vector(vector: FloatArray) -> str:
    """`128-d [0.0123, -0.0456, 0.0789, 0.0111, …]`."""
    values = ", ".join(f"{v:.4f}" for v in np.asarray(vector).ravel()[:VECTOR_PREVIEW])
    more = ", …" if vector.size > VECTOR_PREVIEW else ""
    return f"{vector.size}-d [{values}{more}]"


def neighbor_name(neighbor: Neighbor) -> str:
    """The label, or `id N` for items enrolled without one."""
    return neighbor.label or f"id {neighbor.id}"


def format_error(error: ItemError) -> str:
    return f"{error.code_name}: {error.message}"


# ---- one formatter per command -----------------------------------------------------------


def format_embedding(embedding: Embedding) -> str:
    count = len(embedding.faces)
    model = embedding.model or "none"
    if count == 0:
        return f"no faces found (model {model}, {embedding.dim}-d)"
    lines = [f"{count} face{'s' if count != 1 else ''} (model {model}, {embedding.dim}-d)"]
    for number, face in enumerate(embedding.faces, start=1):
        where = f" at {format_box(face.box)}" if face.box is not None else ""
        lines.append(
            f"face {number}{where}, confidence {face.confidence:.2f}: "
            f"{format_vector(face.embedding)}"
        )
    return "\n".join(lines)


def _format_table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)


def format_stats(stats: Stats) -> str:
    return _format_table(
        [
            ("collection", stats.collection or "default"),
            ("count", str(stats.count)),
            ("deleted", str(stats.deleted)),
            ("memory", f"~{format_bytes(stats.memory_bytes)}"),
            (
                "server memory",
                format_bytes(stats.process_rss_bytes) if stats.process_rss_bytes else "-",
            ),
            ("dim", str(stats.dim)),
            ("space", stats.space),
            ("storage", stats.storage),
            ("model", stats.model or "(none: vector-only)"),
            ("detector", stats.detector or "(none)"),
            ("alignment", stats.alignment or "(none)"),
            ("normalization", stats.normalization or "(none)"),
            ("threshold", format_distance(stats.threshold) if stats.threshold else "(none)"),
            ("people", str(stats.people)),
            *format_decision(stats.decision),
            ("ef", format_ef(stats)),
            ("snapshot", stats.snapshot or "(none)"),
            ("wal", f"{format_bytes(stats.wal_bytes)}"),
            ("recovered", format_recovery(stats)),
            ("embed queue", str(stats.embed_queue)),
        ]
    )


def format_decision(rule: DecisionRule | None) -> list[tuple[str, str]]:
    """Stats rows of the open-set rule: how it decides, then how well (or why not measured)."""
    if rule is None:
        return [("decision", "(not reported by this server)")]
    head = f"{rule.source}: threshold {format_distance(rule.threshold)}"
    head += f", margin {format_distance(rule.margin)}"
    if rule.source != "calibrated":
        return [("decision", head), ("", f"not calibrated: {rule.reason or 'no reason given'}")]
    measured = (
        f"estimated FAR {rule.estimated_far:.2%} (target {rule.target_far:.2%}), "
        f"TAR {rule.estimated_tar:.1%}, on {rule.people} people, {rule.items} items"
    )
    return [("decision", head), ("", measured)]


def format_ef(stats: Stats) -> str:
    """The default ef and, when it is calibrated, the recall it was measured to give."""
    if not stats.target_recall:
        return f"{stats.ef} (fixed: --target-recall is off)"
    if not stats.recall_measured_at:
        return f"{stats.ef} (not yet calibrated to recall@10 {stats.target_recall:.3g})"
    return (
        f"{stats.ef} (recall@10 {stats.estimated_recall:.3f} measured over "
        f"{stats.recall_measured_at} items; target {stats.target_recall:.3g})"
    )


def format_recovery(stats: Stats) -> str:
    """What start-up replayed from the write-ahead log, and whether a torn tail was cut."""
    said = f"{stats.wal_replayed} WAL record(s) replayed at start-up"
    if stats.wal_dropped:
        said += f"; {stats.wal_dropped} torn or corrupt record(s) dropped (see the server log)"
    return said


def format_item(item: Item) -> str:
    thumbnail = f"{format_bytes(len(item.thumbnail))} JPEG" if item.thumbnail else "(none)"
    return _format_table(
        [
            ("id", str(item.id)),
            ("label", item.label or "(none)"),
            ("metadata", item.metadata or "(none)"),
            ("vector", format_vector(item.vector)),
            ("thumbnail", thumbnail),
        ]
    )


def format_save(result: SaveResult) -> str:
    return (
        f"saved {result.count} items to snapshot {result.snapshot} "
        f"({format_bytes(result.bytes)}) in {result.seconds:.2f} s"
    )


def format_compact(result: CompactResult) -> str:
    if result.running:
        return (
            f"compaction still running after {result.seconds:.1f} s; it goes on in the "
            "background (see `stats`: deleted falls to 0 when it is done)"
        )
    if result.skipped:
        return f"not compacted: {result.skipped}"
    if not result.removed:
        return f"nothing to compact: {result.count} items, none deleted"
    return (
        f"compacted: {result.removed} deleted items dropped, {result.count} kept, "
        f"in {result.seconds:.2f} s"
    )


def format_delete(deleted: int) -> str:
    return f"deleted {deleted}"


# ---- JSON --------------------------------------------------------------------------------


def _vector(vector: FloatArray) -> list[float]:
    return [float(v) for v in np.asarray(vector, dtype=np.float32).ravel().tolist()]


def _optional(value: Any) -> Any:
    return None if value is None else to_json(value)


def _add_result(result: AddResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "ok": result.ok,
        "error": _optional(result.error),
        "face": _optional(result.face),
        "faces_found": result.faces_found,
    }


_CONVERTERS: dict[type, Callable[[Any], Any]] = {
    Box: lambda b: {"x": b.x, "y": b.y, "width": b.width, "height": b.height},
    Face: lambda f: {
        "box": _optional(f.box),
        "confidence": float(f.confidence),
        "embedding": _vector(f.embedding),
    },
    Embedding: lambda e: {
        "model": e.model,
        "dim": e.dim,
        "faces": [to_json(f) for f in e.faces],
    },
    Neighbor: lambda n: {
        "id": n.id,
        "label": n.label,
        "metadata": n.metadata,
        "distance": float(n.distance),
        "match": n.match,
    },
    FaceMatches: lambda m: {
        "face": _optional(m.face),
        "neighbors": [to_json(n) for n in m.neighbors],
    },
    QueryResult: lambda r: {
        "results": [to_json(m) for m in r.results],
        "search_seconds": r.search_seconds,
        "embed_seconds": r.embed_seconds,
        "threshold": r.threshold,
    },
    ItemError: lambda e: {"code": e.code, "code_name": e.code_name, "message": e.message},
    AddResult: _add_result,
    AddOutcome: lambda o: {
        "source": o.source,
        "label": o.label,
        **_add_result(o.result),
        "duplicate_of": o.duplicate_of.id if o.duplicate_of is not None else None,
        "skipped": o.skipped,
    },
    Item: lambda i: {
        "id": i.id,
        "label": i.label,
        "metadata": i.metadata,
        "vector": _vector(i.vector),
        "thumbnail_base64": base64.b64encode(i.thumbnail).decode("ascii"),
    },
    SaveResult: asdict,
    # Every field by name: a new Stats field needs no edit here (but a row in docs/json.md).
    Stats: lambda s: {
        f.name: _optional(getattr(s, f.name)) if f.name == "decision" else getattr(s, f.name)
        for f in fields(s)
    },
    CollectionInfo: asdict,
    BatchResult: lambda b: {
        "ids": b.ids.tolist(),
        "distances": b.distances.tolist(),
        "labels": b.labels,
        "matches": b.matches.tolist(),
        "metadata": b.metadata,
        "search_seconds": b.search_seconds,
    },
    CompactResult: asdict,
    **people_converters(_optional),
}


def to_json(obj: Any) -> Any:
    """A JSON-able value (dicts, lists, str, numbers, bool, None) for a facesearch type.

    Only the known types are accepted, so the output keys stay the documented ones.
    """
    converter = _CONVERTERS.get(type(obj))
    if converter is not None:
        return converter(obj)
    if isinstance(obj, np.ndarray):
        return _vector(obj)
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"to_json does not know {type(obj).__name__}")


def add_report_json(
    outcomes: Sequence[AddOutcome], error: ItemError | None = None
) -> dict[str, Any]:
    """What `fsclient add --json` prints: the counts and every item's outcome in order.

    `error` is why the stream broke before every item was sent, if it did: then `items`
    holds only the items the server answered, and a script can tell "some items failed"
    from "the rest never went".
    """
    failed = sum(1 for o in outcomes if not o.result.ok)
    skipped = sum(1 for o in outcomes if o.skipped)
    return {
        "added": len(outcomes) - failed - skipped,
        "failed": failed,
        "skipped": skipped,
        "items": [to_json(o) for o in outcomes],
        "error": _optional(error),
    }


def short_float(value: float) -> float | None:
    """A float that came from float32 (a distance, a vector component) as the shortest
    decimal that reads back as the same float32: 0.6, not 0.6000000238418579, whose last
    digits are noise the float32 never held. Other floats (times) are left as they are;
    infinity and NaN become None (JSON has neither)."""
    if not math.isfinite(value):
        return None
    single = np.float32(value)
    if not np.isfinite(single) or float(single) != value:
        return value
    return float(str(single))


def tidy_floats(value: Any) -> Any:
    """A JSON-able value with every float at the precision it carries (short_float)."""
    if isinstance(value, float):
        return short_float(value)
    if isinstance(value, dict):
        return {key: tidy_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [tidy_floats(item) for item in value]
    return value


def dumps(obj: Any) -> str:
    """One line of JSON: easy to pipe into jq, and vectors don't sprawl over 128 lines.
    Every field prints, zeros included: id 0 and distance 0 are answers."""
    return json.dumps(tidy_floats(to_json(obj)), ensure_ascii=False)
