"""/v1 routes about people and stored items: identify, verify, listings, forget, rename,
delete, and the thumbnails the web page shows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fsclient.types import Item
from fsserver.catalog import Catalog
from fsserver.collection.collection import Collection
from fsserver.errors import NotFound
from fsserver.http import docs
from fsserver.http.answers import JSONAnswer
from fsserver.http.bodies import invalid, read_body
from fsserver.http.calls import on_collection
from fsserver.http.routes import search_target

THUMBNAIL_CACHE = "private, max-age=60"


def _thumbnail(item: Item) -> Response:
    if not item.thumbnail:
        raise NotFound(f"item {item.id} has no thumbnail (a vector, or --no-thumbnails)")
    return Response(
        item.thumbnail, media_type="image/jpeg", headers={"cache-control": THUMBNAIL_CACHE}
    )


def router(catalog: Catalog) -> APIRouter:
    api = APIRouter(prefix="/v1/collections/{collection}", default_response_class=JSONAnswer)

    @api.post(
        "/identify",
        tags=["people"],
        openapi_extra=docs.body(
            ("image",), vector=docs.VECTOR, candidates="int", threshold="float", vector_model="str"
        ),
    )
    async def identify(collection: str, request: Request) -> Any:
        body = await read_body(request)
        target = search_target(body)
        if "id" in target:
            raise invalid("identify takes an image or a vector")
        candidates, threshold = body.integer("candidates", 0) or 0, body.number("threshold")
        model = body.text("vector_model")

        def decide(c: Collection) -> Any:
            return c.people.identify(
                **target, candidates=candidates, threshold=threshold, vector_model=model
            )

        return JSONAnswer(await on_collection(catalog, collection, decide))

    @api.post(
        "/verify",
        tags=["people"],
        openapi_extra=docs.body(("image", "other_image"), person="str", threshold="float"),
    )
    async def verify(collection: str, request: Request) -> Any:
        body = await read_body(request)
        image = body.image("image")
        if body.has("other_image") == body.has("person"):
            raise invalid("verify compares image with exactly one of other_image or person")
        other = body.image("other_image") if body.has("other_image") else None
        person = body.text("person") or None
        threshold = body.number("threshold")

        def compare(c: Collection) -> Any:
            return c.people.verify(image, other_image=other, person=person, threshold=threshold)

        return JSONAnswer(await on_collection(catalog, collection, compare))

    @api.get("/people", tags=["people"])
    async def list_people(collection: str, page_size: int = 0, page_token: str = "") -> Any:
        page, token = await on_collection(
            catalog, collection, lambda c: c.people.list_people(page_size, page_token)
        )
        return JSONAnswer({"people": page.entries, "total": page.total, "next_page_token": token})

    @api.delete("/people/{label:path}", tags=["people"])
    async def forget(collection: str, label: str) -> Any:
        deleted = await on_collection(catalog, collection, lambda c: c.people.forget(label))
        return JSONAnswer({"deleted": deleted})

    @api.post(
        "/people/{label:path}/rename",
        tags=["people"],
        openapi_extra=docs.body(multipart=False, new_label="str"),
    )
    async def rename(collection: str, label: str, request: Request) -> Any:
        new = (await read_body(request)).text("new_label")
        renamed, merged = await on_collection(
            catalog, collection, lambda c: c.people.rename(label, new)
        )
        return JSONAnswer({"renamed": renamed, "merged": merged})

    @api.get("/people/{label:path}/thumbnail", tags=["people"], response_class=Response)
    async def person_thumbnail(collection: str, label: str) -> Response:
        """The thumbnail of the person's first enrolled face that has one."""

        def first(c: Collection) -> Item:
            page, _ = c.people.list_items(label, 16, "")
            for summary in page.entries:
                item = c.get(summary.id)
                if item.thumbnail:
                    return item
            raise NotFound(f"no thumbnail of {label!r}")

        return _thumbnail(await on_collection(catalog, collection, first))

    @api.get("/items", tags=["items"])
    async def list_items(
        collection: str, label: str | None = None, page_size: int = 0, page_token: str = ""
    ) -> Any:
        page, token = await on_collection(
            catalog, collection, lambda c: c.people.list_items(label, page_size, page_token)
        )
        return JSONAnswer({"items": page.entries, "total": page.total, "next_page_token": token})

    @api.get("/items/{id}", tags=["items"])
    async def get_item(collection: str, id: int) -> Any:
        return JSONAnswer(await on_collection(catalog, collection, lambda c: c.get(id)))

    @api.get("/items/{id}/thumbnail", tags=["items"], response_class=Response)
    async def item_thumbnail(collection: str, id: int) -> Response:
        return _thumbnail(await on_collection(catalog, collection, lambda c: c.get(id)))

    @api.delete("/items/{id}", tags=["items"])
    async def delete_item(collection: str, id: int) -> Any:
        deleted = await on_collection(catalog, collection, lambda c: c.delete([id]))
        return JSONAnswer({"deleted": deleted})

    @api.post(
        "/delete",
        tags=["items"],
        openapi_extra=docs.body(
            multipart=False, ids={"type": "array", "items": {"type": "integer"}}
        ),
    )
    async def delete(collection: str, request: Request) -> Any:
        ids = (await read_body(request)).fields.get("ids")
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids
        ):
            raise invalid("ids must be an array of item ids (integers >= 0)")
        deleted = await on_collection(catalog, collection, lambda c: c.delete(ids))
        return JSONAnswer({"deleted": deleted})

    return api
