"""/api/v1: a CompreFace 1.x-compatible subset, so its clients (Double Take, the
compreface-sdk, Home Assistant integrations) can use facesearch in its place.

A request's `x-api-key` picks a collection (api_keys.py), created as a face collection
with the server's defaults on its first use. Recognition answers CompreFace's shapes with
facesearch's calibrated similarity: 0.5 at the open-set decision boundary, so a client's
"similarity above 0.5" means what facesearch's Identify means by known. Item ids stand in
for CompreFace's image UUIDs, as strings. Errors are CompreFace's `{"message", "code"}`
(compreface_errors.py). docs/compreface.md lists the routes and what differs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from fsclient.types import AddItem, AddResult, CollectionSpec, Item
from fsserver.catalog import Catalog
from fsserver.collection.collection import Collection
from fsserver.collection.people import MAX_CANDIDATES, MAX_PAGE
from fsserver.config import Config
from fsserver.errors import AlreadyExists, NotFound
from fsserver.http.api_keys import HEADER, ApiKeys, from_config
from fsserver.http.calls import on_collection
from fsserver.http.compreface_detection import detection_routes
from fsserver.http.compreface_errors import (
    IMAGE_NOT_FOUND,
    MISSING_REQUEST_PARAMETER,
    UNDEFINED,
    VALIDATION_CONSTRAINT_VIOLATION,
    CompreFaceError,
    CompreFaceRoute,
    no_face,
)
from fsserver.http.compreface_shapes import (
    Params,
    add_failure,
    box,
    found_faces,
    id_list,
    images,
    kept,
    pair_similarities,
    stored,
    subject_field,
    subjects,
    timings,
    versions,
)
from fsserver.http.compreface_subjects import Subjects, forget_faces

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20  # CompreFace's
CACHED = {"cache-control": "private, max-age=60"}  # thumbnails
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def compreface_router(catalog: Catalog, config: Config) -> APIRouter:
    """The routes, with the key table read now: a bad --api-keys file stops start-up."""
    keys: ApiKeys = from_config(config)
    people = Subjects()
    api = APIRouter(prefix="/api/v1", route_class=CompreFaceRoute, tags=["compreface"])

    def create(name: str) -> None:
        try:
            catalog.create(CollectionSpec(name=name, model=config.model))
            log.info("created collection %r for its CompreFace API key", name)
        except AlreadyExists:
            pass  # another request's create won the race: the collection is there

    async def collection_of(request: Request, key: str | None = None) -> str:
        """The collection of the request's key (401 without a good one), created if new."""
        name = keys.collection(request.headers.get(HEADER) if key is None else key)
        try:
            catalog.get(name)
        except NotFound:
            await run_in_threadpool(create, name)
        return name

    async def run(name: str, work: Any) -> Any:
        return await on_collection(catalog, name, work)

    @api.post("/recognition/recognize")
    async def recognize(request: Request) -> Response:
        """Who each face is: the `prediction_count` nearest subjects, most similar first."""
        name = await collection_of(request)
        params = Params(request)
        limit, threshold, status = params.faces()
        count = min(params.integer("prediction_count", 1), MAX_CANDIDATES) or 1
        [image] = await images(request, "file")

        def identify(c: Collection) -> Any:
            return c.people.identify(image=image, candidates=count), versions(c, status)

        result, plugins = await run(name, identify)
        faces = [r.face for r in result.results]
        answers = []
        for position in kept(faces, threshold, limit):
            found = result.results[position]
            entry: dict[str, Any] = {"box": box(found.face), "subjects": subjects(found, count)}
            if status:
                entry["execution_time"] = timings(result.embed_seconds, result.search_seconds)
            answers.append(entry)
        return JSONResponse({"result": answers, **plugins})

    @api.post("/recognition/faces")
    async def add_face(request: Request) -> Response:
        """Enroll the image's (largest) face as `subject`."""
        name = await collection_of(request)
        params = Params(request)
        if "subject" not in request.query_params:
            raise CompreFaceError(
                400, MISSING_REQUEST_PARAMETER, "Required request parameter 'subject' is missing"
            )
        subject = params.text("subject")
        if not subject.strip():
            raise CompreFaceError(400, VALIDATION_CONSTRAINT_VIOLATION, "subject cannot be empty")
        threshold = params.probability("det_prob_threshold")
        [image] = await images(request, "file")

        def enroll(c: Collection) -> AddResult:
            with c.writing():
                pending = c.adder.begin_add([AddItem(image=image, label=subject)])
                [added], _ = c.adder.finish_add(pending)
            face = added.face
            if added.id is not None and face is not None and face.confidence < (threshold or 0):
                c.delete([added.id])  # below the client's bar: as if never found
                raise no_face()
            if added.ok:
                people.forget(c, subject)  # a subject with a face needs no declaring
            return added

        added = await run(name, enroll)
        if added.error is not None:
            raise add_failure(added.error)
        return JSONResponse({"image_id": str(added.id), "subject": subject})

    @api.get("/recognition/faces")
    async def list_faces(request: Request) -> Response:
        """The saved faces, `size` a page, of one `subject` or of all."""
        name = await collection_of(request)
        params = Params(request)
        page = params.integer("page", 0)
        size = params.integer("size", DEFAULT_PAGE_SIZE, low=1)
        subject = params.text("subject") or None
        listed, _ = await run(name, lambda c: c.people.list_items(subject, size, str(page * size)))
        return JSONResponse(
            {
                "faces": [{"image_id": str(i.id), "subject": i.label} for i in listed.entries],
                "page_number": page,
                "page_size": size,
                "total_pages": math.ceil(listed.total / size),
                "total_elements": listed.total,
            }
        )

    @api.delete("/recognition/faces")
    async def delete_faces(request: Request) -> Response:
        """Delete the faces of `subject`, or every face; the subjects stay, as in
        CompreFace."""
        name = await collection_of(request)
        subject = Params(request).text("subject")

        def delete(c: Collection) -> int:
            if subject:
                deleted = forget_faces(c, subject)
                if deleted:  # a name that had no faces does not become a subject
                    people.declare(c, [subject])
                return deleted
            return delete_everything(c)

        return JSONResponse({"deleted": await run(name, delete)})

    def delete_everything(c: Collection) -> int:
        deleted = 0
        chunk = min(MAX_PAGE, c.config.max_batch_items)
        while True:
            page, _ = c.people.list_items(None, chunk, "")
            if not page.entries:
                return deleted
            people.declare(c, {item.label for item in page.entries})
            removed = c.delete([item.id for item in page.entries])
            if not removed:  # gone meanwhile yet still listed: never loop on it
                return deleted
            deleted += removed

    @api.post("/recognition/faces/delete")
    async def delete_many(request: Request) -> Response:
        """Delete the faces of a JSON list of image ids; ids not found are skipped."""
        name = await collection_of(request)
        wanted = await id_list(request)

        def delete(c: Collection) -> list[dict[str, str]]:
            found: list[Item] = []
            for image_id in dict.fromkeys(wanted):
                try:
                    found.append(stored(c, image_id))
                except CompreFaceError:
                    continue
            if found:
                c.delete([item.id for item in found])
                people.declare(c, {item.label for item in found})
            return [{"image_id": str(item.id), "subject": item.label} for item in found]

        return JSONResponse(await run(name, delete))

    @api.delete("/recognition/faces/{image_id}")
    async def delete_face(image_id: str, request: Request) -> Response:
        name = await collection_of(request)

        def delete(c: Collection) -> Item:
            item = stored(c, image_id)
            c.delete([item.id])
            people.declare(c, [item.label])
            return item

        item = await run(name, delete)
        return JSONResponse({"image_id": str(item.id), "subject": item.label})

    @api.get("/recognition/faces/{image_id}/img", response_class=Response)
    async def face_image(image_id: str, request: Request) -> Response:
        """The saved face: facesearch keeps a small crop of it, not the whole photo."""
        name = await collection_of(request)
        item = await run(name, lambda c: stored(c, image_id))
        if not item.thumbnail:
            raise CompreFaceError(
                404, IMAGE_NOT_FOUND, f"no image kept for {image_id!r} (--no-thumbnails)"
            )
        return Response(item.thumbnail, media_type="image/jpeg", headers=CACHED)

    @api.get("/static/{api_key}/images/{image_id}", response_class=Response)
    async def direct_image(api_key: str, image_id: str, request: Request) -> Response:
        """As .../img, with the key in the path for <img> tags; empty when not found."""
        name = await collection_of(request, key=api_key)
        try:
            item = await run(name, lambda c: stored(c, image_id))
        except CompreFaceError:
            return Response(b"", media_type="image/jpeg")
        return Response(item.thumbnail, media_type="image/jpeg", headers=CACHED)

    @api.post("/recognition/faces/{image_id}/verify")
    async def verify_face(image_id: str, request: Request) -> Response:
        """How alike each face of the image is to the saved face `image_id`."""
        name = await collection_of(request)
        limit, threshold, status = Params(request).faces()
        [image] = await images(request, "file")

        def verify(c: Collection) -> dict[str, Any]:
            item = stored(c, image_id)
            chosen, seconds = found_faces(c, image, threshold, limit)
            rows = np.stack([face.embedding for face in chosen])
            similar = pair_similarities(c, item.vector, rows)
            answers = []
            for face, similarity in zip(chosen, similar, strict=True):
                entry: dict[str, Any] = {
                    "box": box(face),
                    "similarity": similarity,
                    "subject": item.label,
                }
                if status:
                    entry["execution_time"] = timings(seconds, 0.0)
                answers.append(entry)
            return {"result": answers, **versions(c, status)}

        return JSONResponse(await run(name, verify))

    @api.get("/recognition/subjects")
    async def list_subjects(request: Request) -> Response:
        name = await collection_of(request)
        return JSONResponse({"subjects": await run(name, people.listing)})

    @api.post("/recognition/subjects")
    async def add_subject(request: Request) -> Response:
        """Declare a subject before it has faces (kept in memory: see compreface_subjects)."""
        name = await collection_of(request)
        subject = await subject_field(request)
        await run(name, lambda c: people.create(c, subject))
        return JSONResponse({"subject": subject})

    @api.put("/recognition/subjects/{subject}")
    async def rename_subject(subject: str, request: Request) -> Response:
        """Rename; into an existing subject, the faces merge into it."""
        name = await collection_of(request)
        new = await subject_field(request, required=False)
        if not new or new == subject:
            return JSONResponse({"updated": False})  # CompreFace's answer to a no-op
        await run(name, lambda c: people.rename(c, subject, new))
        return JSONResponse({"updated": True})

    @api.delete("/recognition/subjects/{subject}")
    async def delete_subject(subject: str, request: Request) -> Response:
        name = await collection_of(request)
        await run(name, lambda c: people.delete(c, subject))
        return JSONResponse({"subject": subject})

    @api.delete("/recognition/subjects")
    async def delete_subjects(request: Request) -> Response:
        name = await collection_of(request)
        return JSONResponse({"deleted": await run(name, people.delete_all)})

    detection_routes(api, collection_of, run)

    @api.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    async def elsewhere(path: str) -> Response:
        """Last: a route CompreFace has and this subset lacks, in CompreFace's shape."""
        raise CompreFaceError(404, UNDEFINED, f"/api/v1/{path[:200]} is not served here")

    return api
