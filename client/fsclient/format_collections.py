"""Text for `fsclient collections`: pure functions of the client's types, no printing."""

from __future__ import annotations

from collections.abc import Sequence

from fsclient.format import format_bytes
from fsclient.format_people import columns
from fsclient.types import CollectionInfo


def kind(info: CollectionInfo) -> str:
    """What a collection holds: "faces (Dlib, dlib)" or "vectors"."""
    if info.model:
        return f"faces ({info.model}, {info.alignment or info.detector or 'aligned'})"
    return "vectors"


def format_collections(infos: Sequence[CollectionInfo]) -> str:
    header = ("NAME", "HOLDS", "DIM", "SPACE", "STORAGE", "ITEMS", "PEOPLE", "MEMORY")
    rows = [
        (
            i.name,
            kind(i),
            str(i.dim),
            i.space,
            i.storage,
            str(i.count),
            str(i.people),
            f"~{format_bytes(i.memory_bytes)}",
        )
        for i in infos
    ]
    right = (False, False, True, False, False, True, True, True)
    return "\n".join(columns([header, *rows], right))


def format_created(info: CollectionInfo) -> str:
    return (
        f"created collection {info.name!r}: {kind(info)}, dim {info.dim}, "
        f"{info.space}/{info.storage}, M {info.m}, ef_construction {info.ef_construction}"
    )


def format_dropped(name: str, items: int) -> str:
    return f"dropped collection {name!r} and its {items} item{'s' if items != 1 else ''}"
