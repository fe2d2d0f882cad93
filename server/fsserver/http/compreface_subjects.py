"""Subjects as CompreFace keeps them, over facesearch's people.

In facesearch a person exists while some item carries their label; CompreFace also has
subjects without faces: created by POST /subjects, or left behind when their faces are
deleted. This module keeps those empty subjects in memory, per collection, so the listing
CompreFace clients read back holds them until they are deleted, renamed or get a face. They
are not saved: after a restart only subjects with faces are listed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from fsserver.collection.collection import Collection
from fsserver.collection.people import MAX_PAGE
from fsserver.errors import NotFound
from fsserver.http.compreface_errors import (
    SUBJECT_ALREADY_EXISTS,
    SUBJECT_NOT_FOUND,
    CompreFaceError,
)


def has_faces(collection: Collection, subject: str) -> bool:
    page, _ = collection.people.list_items(subject, 1, "")
    return page.total > 0


def people(collection: Collection) -> list[str]:
    """Every label with live items, a page at a time."""
    labels: list[str] = []
    token = ""
    while True:
        page, token = collection.people.list_people(MAX_PAGE, token)
        labels += [person.label for person in page.entries]
        if not token:
            return labels


def forget_faces(collection: Collection, subject: str) -> int:
    """Delete the subject's faces; how many (0 where facesearch says NotFound)."""
    try:
        return collection.people.forget(subject)
    except NotFound:
        return 0


def not_found(subject: str) -> CompreFaceError:
    return CompreFaceError(404, SUBJECT_NOT_FOUND, f"Subject {subject!r} not found")


class Subjects:
    """The subjects of each collection: its people, and the empty ones declared here."""

    def __init__(self) -> None:
        self._empty: dict[str, set[str]] = {}
        self._lock = threading.Lock()  # the routes' worker threads share the sets

    def _declared(self, collection: Collection) -> set[str]:
        return self._empty.setdefault(collection.name, set())

    def declare(self, collection: Collection, names: Iterable[str]) -> None:
        """Keep `names` listed although they may have no face (any more)."""
        with self._lock:
            self._declared(collection).update(n for n in names if n)

    def forget(self, collection: Collection, name: str) -> bool:
        """Stop listing an empty subject; whether it was declared."""
        with self._lock:
            declared = self._declared(collection)
            found = name in declared
            declared.discard(name)
            return found

    def listing(self, collection: Collection) -> list[str]:
        with self._lock:
            declared = set(self._declared(collection))
        return sorted(declared.union(people(collection)))

    def create(self, collection: Collection, name: str) -> None:
        with self._lock:
            declared = self._declared(collection)
            if name in declared or has_faces(collection, name):
                raise CompreFaceError(
                    400, SUBJECT_ALREADY_EXISTS, f"Subject {name!r} already exists"
                )
            declared.add(name)

    def rename(self, collection: Collection, old: str, new: str) -> None:
        """Rename `old` to `new`, merging into `new` if it exists (as CompreFace does)."""
        if has_faces(collection, old):
            collection.people.rename(old, new)
            self.forget(collection, old)
        elif self.forget(collection, old):
            if not has_faces(collection, new):
                self.declare(collection, [new])
        else:
            raise not_found(old)

    def delete(self, collection: Collection, name: str) -> None:
        """Delete the subject and its faces."""
        declared = self.forget(collection, name)
        if not forget_faces(collection, name) and not declared:
            raise not_found(name)

    def delete_all(self, collection: Collection) -> int:
        """Delete every subject and its faces; how many subjects there were."""
        names = self.listing(collection)
        for name in names:
            self.forget(collection, name)
            forget_faces(collection, name)
        return len(names)
