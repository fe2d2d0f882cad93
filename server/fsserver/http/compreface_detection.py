"""CompreFace's detection and verification services: /api/v1/detection/detect and
/api/v1/verification/verify.

CompreFace gives these services keys of their own; here every key picks a collection as
for recognition, and only that collection's face model and decision rule are used (the
images are not stored).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from fsserver.collection.collection import Collection
from fsserver.http.compreface_shapes import (
    Params,
    box,
    found_faces,
    images,
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
        limit, threshold, status = Params(request).faces()
        [image] = await images(request, "file")

        def find(c: Collection) -> dict[str, Any]:
            faces, seconds = found_faces(c, image, threshold, limit)
            answers = []
            for face in faces:
                entry: dict[str, Any] = {"box": box(face)}
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
        limit, threshold, status = Params(request).faces()
        source, target = await images(request, "source_image", "target_image")

        def compare(c: Collection) -> dict[str, Any]:
            [face], source_seconds = found_faces(c, source, threshold, 1)
            chosen, target_seconds = found_faces(c, target, threshold, limit)
            seconds = source_seconds + target_seconds
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
