"""CompreFace's detection and verification services: /api/v1/detection/detect and
/api/v1/verification/verify.

CompreFace gives these services keys of their own; here every key picks a collection as
for recognition, and only that collection's face model and decision rule are used (the
images are not stored).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from fsserver.collection.collection import Collection
from fsserver.http.compreface_shapes import (
    Params,
    box,
    images,
    kept,
    pair_similarities,
    timings,
    versions,
)

CollectionOf = Callable[[Request], Awaitable[str]]
Run = Callable[[str, Callable[[Collection], Any]], Awaitable[Any]]


def detection_routes(api: APIRouter, collection_of: CollectionOf, run: Run) -> None:
    @api.post("/detection/detect")
    async def detect(request: Request) -> Response:
        """The faces of the image, largest first."""
        name = await collection_of(request)
        params = Params(request)
        limit, threshold = params.integer("limit", 0), params.probability("det_prob_threshold")
        status = params.flag("status")
        [image] = await images(request, "file")

        def find(c: Collection) -> dict[str, Any]:
            started = time.perf_counter()
            faces = c.embed(image).faces
            seconds = time.perf_counter() - started
            answers = []
            for position in kept(faces, threshold, limit):
                entry: dict[str, Any] = {"box": box(faces[position])}
                if status:
                    entry["execution_time"] = timings(seconds, 0.0)
                answers.append(entry)
            return {"result": answers, **versions(c, status)}

        return JSONResponse(await run(name, find))

    @api.post("/verification/verify")
    async def verify(request: Request) -> Response:
        """How alike each face of `target_image` is to the (largest) face of
        `source_image`, most alike first; 0.5 at the collection's pair threshold."""
        name = await collection_of(request)
        params = Params(request)
        limit, threshold = params.integer("limit", 0), params.probability("det_prob_threshold")
        status = params.flag("status")
        source, target = await images(request, "source_image", "target_image")

        def compare(c: Collection) -> dict[str, Any]:
            started = time.perf_counter()
            sources = c.embed(source).faces
            [first] = kept(sources, threshold, 1)
            face = sources[first]
            targets = c.embed(target).faces
            seconds = time.perf_counter() - started
            chosen = [targets[i] for i in kept(targets, threshold, limit)]
            rows = np.stack([t.embedding for t in chosen])
            similar = pair_similarities(c, face.embedding, rows)
            matches = [
                {"box": box(t), "similarity": s}
                for t, s in sorted(zip(chosen, similar, strict=True), key=lambda pair: -pair[1])
            ]
            entry: dict[str, Any] = {
                "source_image_face": {"box": box(face)},
                "face_matches": matches,
            }
            if status:
                entry["source_image_face"]["execution_time"] = timings(seconds, 0.0)
            return {"result": [entry], **versions(c, status)}

        return JSONResponse(await run(name, compare))
