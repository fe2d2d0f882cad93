"""What the CompreFace routes read and write: query parameters, bodies, images, boxes,
similarities, and the stored items that image ids name.

CompreFace takes its options as query parameters (`limit`, `det_prob_threshold`, ...) on
every route, and the image as a multipart `file` or as base64 in a JSON body. Its boxes are
corners (`x_min`...`y_max`) with the detector's `probability`, and it rounds similarities
and probabilities to 5 decimals.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from starlette.requests import Request

from fsclient.types import Face, FloatArray, Identification, Item, ItemError
from fsserver.collection.collection import Collection
from fsserver.collection.identify import distance_function
from fsserver.errors import FailedPrecondition, NotFound
from fsserver.http.bodies import Body, read_body
from fsserver.http.compreface_errors import (
    IMAGE_NOT_FOUND,
    MISSING_REQUEST_PART,
    UNDEFINED,
    VALIDATION_CONSTRAINT_VIOLATION,
    CompreFaceError,
    incorrect,
    no_face,
)

DECIMALS = 5
GRPC_INVALID_ARGUMENT, GRPC_RESOURCE_EXHAUSTED = 3, 8  # ItemError.code
ITEM_ID = re.compile(r"[0-9]{1,20}")
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


class Params:
    """A request's query parameters, read with CompreFace's defaults."""

    def __init__(self, request: Request) -> None:
        self._query = request.query_params

    def text(self, name: str) -> str:
        return self._query.get(name, "")

    def integer(self, name: str, default: int, low: int = 0) -> int:
        raw = self._query.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise incorrect(f"{name} must be an integer, not {raw[:40]!r}") from None
        if value < low:
            raise incorrect(f"{name} must be at least {low}, not {value}")
        return value

    def probability(self, name: str) -> float | None:
        raw = self._query.get(name, "").strip()
        if not raw:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise incorrect(f"{name} must be a number between 0.0 and 1.0, not {raw[:40]!r}")
        return value

    def faces(self) -> tuple[int, float | None, bool]:
        """The options every face route takes: `limit`, `det_prob_threshold`, `status`."""
        return (
            self.integer("limit", 0),
            self.probability("det_prob_threshold"),
            self.flag("status"),
        )

    def flag(self, name: str) -> bool:
        raw = self._query.get(name, "").strip().lower()
        if raw not in TRUE + FALSE:
            raise incorrect(f"{name} must be true or false, not {raw[:40]!r}")
        return raw in TRUE


async def images(request: Request, *names: str) -> list[bytes]:
    """The images `names` of the body: multipart files, or base64 strings in JSON."""
    body: Body = await read_body(request)
    for name in names:
        if not body.has(name):
            raise CompreFaceError(
                400, MISSING_REQUEST_PART, f"Required request part '{name}' is not present"
            )
    return [body.image(name) for name in names]


def rounded(value: float) -> float:
    return round(float(value), DECIMALS)


def box(face: Face | None) -> dict[str, float | int]:
    """CompreFace's box: the corners in pixels of the image as sent, and the detector's
    score (dlib's HOG margin clamped to [0, 1]: most clear faces score 1.0)."""
    probability = rounded(face.confidence) if face is not None else 0.0
    if face is None or face.box is None:
        return {"probability": probability, "x_min": 0, "y_min": 0, "x_max": 0, "y_max": 0}
    b = face.box
    return {
        "probability": probability,
        "x_min": b.x,
        "y_min": b.y,
        "x_max": b.x + b.width,
        "y_max": b.y + b.height,
    }


def kept(faces: list[Face], det_prob_threshold: float | None, limit: int) -> list[int]:
    """Positions of the faces to answer (largest first): those the detector is sure enough
    of, at most `limit` (0: all); none left is CompreFace's "no face" error."""
    chosen = [
        i
        for i, face in enumerate(faces)
        if det_prob_threshold is None or face.confidence >= det_prob_threshold
    ]
    if limit:
        chosen = chosen[:limit]
    if not chosen:
        raise no_face()
    return chosen


def found_faces(
    collection: Collection, image: bytes, det_prob_threshold: float | None, limit: int
) -> tuple[list[Face], float]:
    """The image's faces the caller keeps (kept), largest first, and the seconds taken to
    find and embed them."""
    started = time.perf_counter()
    faces = collection.embed(image).faces
    seconds = time.perf_counter() - started
    return [faces[i] for i in kept(faces, det_prob_threshold, limit)], seconds


def subjects(identification: Identification, count: int) -> list[dict[str, object]]:
    """The `count` nearest people as CompreFace's subjects, most similar first.

    The nearest person's similarity also weighs how much nearer they are than the next
    (decisions.md); the others' weigh their distance only, so a close runner-up could
    score above a nearest person the rule found ambiguous. Capping each at the one before
    keeps the nearest first and nobody above 0.5 that the rule did not accept."""
    answers: list[dict[str, object]] = []
    ceiling = 1.0
    for candidate in identification.candidates[:count]:
        ceiling = min(ceiling, candidate.similarity)
        answers.append({"subject": candidate.person, "similarity": rounded(ceiling)})
    return answers


def pair_similarities(
    collection: Collection, vector: FloatArray, others: FloatArray
) -> list[float]:
    """How alike `vector` is to each row of `others`, photo against photo: 0.5 at the
    collection's pair threshold, as /v1's verify of two images."""
    rule = collection.people.rule
    if rule.public.source == "none":
        raise FailedPrecondition("this server has no threshold to verify with (--threshold)")
    limit = rule.public.pair_threshold
    distances = distance_function(collection.store.contract.space)(vector[None, :], others)
    return [rounded(rule.similarity(float(d) - limit)) for d in distances]


def versions(collection: Collection, status: bool) -> dict[str, Any]:
    """CompreFace's `plugins_versions` (with status=true): the model and detector."""
    if not status:
        return {}
    info = collection.info()
    return {"plugins_versions": {"detector": info.detector, "calculator": info.model}}


def timings(embed_seconds: float, search_seconds: float) -> dict[str, float]:
    """CompreFace's `execution_time` in ms: facesearch times detection and embedding
    together ("detector"), and the index search apart ("search")."""
    return {
        "detector": round(embed_seconds * 1000, 1),
        "search": round(search_seconds * 1000, 1),
    }


async def subject_field(request: Request, required: bool = True) -> str:
    """The `subject` of a JSON body `{"subject": NAME}`."""
    body = await read_body(request)
    subject = body.text("subject")
    if required and not subject.strip():
        raise CompreFaceError(400, VALIDATION_CONSTRAINT_VIOLATION, "subject cannot be empty")
    return subject


async def id_list(request: Request) -> list[str]:
    """The body of POST /faces/delete: a JSON array of image ids."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise CompreFaceError(
            415, UNDEFINED, f"content type {kind or '(none)'!r}: send a JSON array of image ids"
        )
    try:
        value = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise incorrect("the body is not valid JSON") from None
    if not isinstance(value, list) or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
    ):
        raise incorrect("the body must be a JSON array of image ids")
    return [str(v) for v in value]


def image_not_found(image_id: str) -> CompreFaceError:
    return CompreFaceError(404, IMAGE_NOT_FOUND, f"Image with ID {image_id[:80]!r} not found")


def item_id(image_id: str) -> int:
    """The item an image_id names: facesearch's ids are decimal numbers below 2**64, so any
    other string (a CompreFace UUID, say) names no image here."""
    if not ITEM_ID.fullmatch(image_id) or int(image_id) >= 2**64:
        raise image_not_found(image_id)
    return int(image_id)


def stored(collection: Collection, image_id: str) -> Item:
    try:
        return collection.get(item_id(image_id))
    except NotFound:
        raise image_not_found(image_id) from None


def add_failure(error: ItemError) -> CompreFaceError:
    if "no face" in error.message:
        return no_face()
    if error.code == GRPC_INVALID_ARGUMENT:
        return incorrect(error.message)
    status = 429 if error.code == GRPC_RESOURCE_EXHAUSTED else 400
    return CompreFaceError(status, UNDEFINED, error.message)
