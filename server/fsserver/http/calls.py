"""Running collection calls off the event loop, each holding its collection (a drop waits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from fsserver.catalog import Catalog
from fsserver.collection.collection import Collection

T = TypeVar("T")


async def on_collection(catalog: Catalog, name: str, work: Callable[[Collection], T]) -> T:
    """`work(collection)` in a worker thread: searches, locks and the face model block."""

    def leased() -> T:
        with catalog.leased(name) as collection:
            return work(collection)

    return await run_in_threadpool(leased)
