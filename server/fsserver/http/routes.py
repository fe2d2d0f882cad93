"""/v1: the gRPC API's operations as JSON routes, one collection each under
/v1/collections/{collection}/… ("default" is the server's default collection).

Bodies are JSON or multipart (bodies.py); answers are the shapes `fsclient --json` prints
(docs/json.md), and errors `{"code", "message"}` with gRPC's code names (errors.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from fsclient.types import AddItem, CollectionSpec, VectorRows
from fsserver.catalog import Catalog
from fsserver.collection.collection import Collection
from fsserver.http import docs
from fsserver.http.answers import JSONAnswer
from fsserver.http.bodies import Body, as_vector, invalid, read_body
from fsserver.http.calls import on_collection


def search_target(body: Body) -> dict[str, Any]:
    """The one thing a query or identify is about: image, vector or (query only) id."""
    given = [name for name in ("image", "vector", "id") if body.has(name)]
    if len(given) != 1:
        raise invalid("send exactly one of image, vector or id")
    if given == ["image"]:
        return {"image": body.image("image")}
    if given == ["vector"]:
        return {"vector": body.vector("vector")}
    return {"id": body.integer("id")}


def _search_options(body: Body) -> dict[str, Any]:
    """What Query and QueryBatch share. k absent or 0 (proto3's "unset"): the collection's
    default, as over gRPC."""
    return {
        "k": body.integer("k", 0) or 0,
        "ef": body.integer("ef", None),
        "exact": body.flag("exact"),
        "vector_model": body.text("vector_model"),
    }


def _add_items(body: Body) -> list[AddItem]:
    """Items from JSON `items` ([{image|vector, label, id, metadata}]) or from a form's
    files (`image`, several allowed) sharing its `label` and `metadata` fields."""
    if body.form:
        label, metadata = body.text("label"), body.text("metadata")
        return [
            AddItem(image=b, label=label, metadata=metadata) for b in body.files.get("image", [])
        ]
    raw = body.fields.get("items", [])
    if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
        raise invalid("items must be an array of objects")
    items = []
    for entry in raw:
        item = Body(fields=entry)
        if item.has("image") == item.has("vector"):
            raise invalid("each item holds exactly one of image or vector")
        items.append(
            AddItem(
                image=item.image("image") if item.has("image") else None,
                vector=item.vector("vector") if item.has("vector") else None,
                label=item.text("label"),
                id=item.integer("id", None),
                metadata=item.text("metadata"),
            )
        )
    return items


def _add_rows(body: Body) -> VectorRows | None:
    raw = body.fields.get("rows")
    if raw is None or body.form:
        return None
    if not isinstance(raw, dict):
        raise invalid("rows must be an object: {vectors, labels, ids, metadata}")
    try:
        vectors = np.asarray(raw.get("vectors"), dtype=np.float32)
    except (TypeError, ValueError):
        raise invalid("rows.vectors must be an array of equally long arrays of numbers") from None
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise invalid("rows.vectors must be a non-empty array of equally long arrays")
    return VectorRows(
        vectors,
        labels=_strings(raw, "labels"),
        ids=_list(raw, "ids", int),
        metadata=_strings(raw, "metadata"),
    )


def _list(raw: dict[str, Any], name: str, kind: type) -> list[Any]:
    value = raw.get(name) or []
    if not isinstance(value, list) or not all(
        isinstance(v, kind) and not isinstance(v, bool) for v in value
    ):
        raise invalid(f"rows.{name} must be an array of {kind.__name__}")
    return value


def _strings(raw: dict[str, Any], name: str) -> list[str]:
    return _list(raw, name, str)


def router(catalog: Catalog) -> APIRouter:
    api = APIRouter(prefix="/v1", default_response_class=JSONAnswer)

    @api.get("/collections", tags=["collections"])
    async def list_collections() -> Any:
        return JSONAnswer({"collections": await run_in_threadpool(catalog.list)})

    @api.post("/collections", tags=["collections"], status_code=201)
    async def create_collection(spec: CollectionSpec) -> Any:
        # FastAPI validates the JSON body into the domain dataclass itself.
        info = await run_in_threadpool(catalog.create, spec)
        return JSONAnswer(info, status_code=201)

    @api.get("/collections/{collection}", tags=["collections"])
    async def get_collection(collection: str) -> Any:
        return JSONAnswer(await on_collection(catalog, collection, Collection.info))

    @api.delete("/collections/{collection}", tags=["collections"])
    async def drop_collection(collection: str) -> Any:
        catalog.get(collection)  # NOT_FOUND before anything else
        return JSONAnswer({"items": await run_in_threadpool(catalog.drop, collection)})

    @api.post(
        "/collections/{collection}/embed", tags=["search"], openapi_extra=docs.body(("image",))
    )
    async def embed(collection: str, request: Request) -> Any:
        image = (await read_body(request)).image("image")
        return JSONAnswer(await on_collection(catalog, collection, lambda c: c.embed(image)))

    @api.post(
        "/collections/{collection}/add",
        tags=["items"],
        openapi_extra=docs.body(
            ("image",),
            items={"type": "array", "items": {"type": "object"}},
            rows={"type": "object"},
            label="str",
            metadata="str",
            vector_model="str",
        ),
    )
    async def add(collection: str, request: Request) -> Any:
        body = await read_body(request)
        items, rows = _add_items(body), _add_rows(body)
        if not items and rows is None:
            raise invalid("nothing to add: send items, rows, or image files")
        vector_model = body.text("vector_model")

        def store(c: Collection) -> Any:
            with c.writing():
                pending = c.adder.begin_add(items, vector_model, rows=rows)
                results, outcomes = c.adder.finish_add(pending)
            answer: dict[str, Any] = {"items": results}
            if outcomes is not None:
                errors = {str(i): e for i, e in outcomes.errors.items()}
                answer["rows"] = {"ids": outcomes.ids, "errors": errors}
            return answer

        return JSONAnswer(await on_collection(catalog, collection, store))

    @api.post(
        "/collections/{collection}/query",
        tags=["search"],
        openapi_extra=docs.body(
            ("image",),
            vector=docs.VECTOR,
            id="int",
            k="int",
            ef="int",
            exact="bool",
            threshold="float",
            vector_model="str",
        ),
    )
    async def query(collection: str, request: Request) -> Any:
        body = await read_body(request)
        target, options = search_target(body), _search_options(body)
        threshold = body.number("threshold")

        def search(c: Collection) -> Any:
            return c.query(**target, **options, threshold=threshold)

        return JSONAnswer(await on_collection(catalog, collection, search))

    @api.post(
        "/collections/{collection}/query-batch",
        tags=["search"],
        openapi_extra=docs.body(
            multipart=False,
            vectors={"type": "array", "items": docs.VECTOR},
            k="int",
            ef="int",
            exact="bool",
            with_metadata="bool",
            vector_model="str",
        ),
    )
    async def query_batch(collection: str, request: Request) -> Any:
        body = await read_body(request)
        rows = body.fields.get("vectors")
        if not isinstance(rows, list) or not rows:
            raise invalid("vectors must be a non-empty array of vectors")
        try:
            matrix = np.stack([as_vector(row, "vectors[]") for row in rows])
        except ValueError:
            raise invalid("vectors must all have the same length") from None
        options, with_metadata = _search_options(body), body.flag("with_metadata")

        def search(c: Collection) -> Any:
            return c.query_batch(matrix, **options, with_metadata=with_metadata)

        return JSONAnswer(await on_collection(catalog, collection, search))

    @api.post("/collections/{collection}/save", tags=["maintenance"])
    async def save(collection: str) -> Any:
        return JSONAnswer(await on_collection(catalog, collection, Collection.save))

    @api.post(
        "/collections/{collection}/compact",
        tags=["maintenance"],
        openapi_extra=docs.body(multipart=False, force="bool"),
    )
    async def compact(collection: str, request: Request) -> Any:
        force = (await read_body(request)).flag("force")
        return JSONAnswer(await on_collection(catalog, collection, lambda c: c.compact(force)))

    @api.get("/collections/{collection}/stats", tags=["maintenance"])
    async def stats(collection: str) -> Any:
        return JSONAnswer(await on_collection(catalog, collection, Collection.stats))

    return api
