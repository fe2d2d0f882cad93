"""People: the person-level layer over a collection's index.

The label of an item is the person. This part lists, forgets and renames people, and
answers Identify ("who is this, or nobody we know?") and Verify by the open-set rule
(decisions.py) that it keeps calibrated on the labelled gallery in the background. The
collection owns the index and the face model; this part only asks them.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from fsclient.types import (
    Face,
    FloatArray,
    IdentifyResult,
    ItemSummary,
    Page,
    Person,
    VerifyResult,
)
from fsserver.admission import Alive, always_alive
from fsserver.collection import identify
from fsserver.collection.decisions import (
    MAX_PEOPLE,
    DecisionCalibrator,
    Distances,
    Rule,
    calibrate,
    fallback,
)
from fsserver.collection.identify import distance_function
from fsserver.errors import FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from fsserver.collection.collection import Collection

# Calibrating the open-set rule searches a gallery this small by brute force.
EXACT_GALLERY = 50_000
DEFAULT_CANDIDATES, MAX_CANDIDATES = 3, 100
DEFAULT_PAGE, MAX_PAGE = 100, 10_000
MAX_PERSON_ITEMS = 10_000  # Verify against a person compares with this many of their items


class People:
    def __init__(self, collection: Collection, pair_threshold: float | None) -> None:
        """Start keeping the decision rule: fixed by --threshold, else calibrated on the
        gallery (--target-far), the model's pair threshold standing in until then."""
        self._collection = collection
        self._decisions = self._start(pair_threshold)

    @property
    def rule(self) -> Rule:
        return self._decisions.rule

    def close(self) -> None:
        self._decisions.close()

    def _start(self, pair_threshold: float | None) -> DecisionCalibrator:
        """The open-set rule: fixed by --threshold, else calibrated on the gallery
        (--target-far), falling back to the model's pair threshold."""
        target = self._collection.config.target_far
        if self._collection.config.threshold is not None or not target:
            reason = (
                "--threshold is set"
                if self._collection.config.threshold is not None
                else "--target-far 0"
            )
            return DecisionCalibrator(None, fallback(pair_threshold, reason, target))
        store = self._collection.store
        distances = distance_function(store.contract.space)

        def search(rows: FloatArray, k: int) -> tuple[list[list[str]], FloatArray]:
            k = min(k, store.count)
            # Brute force while it is cheap: the rule should not inherit HNSW's misses.
            hits = store.search(rows, k, ef=max(k, 2 * k), exact=store.count <= EXACT_GALLERY)
            return hits.labels, hits.distances

        def measure() -> Rule:
            everybody = store.people()
            labels, vectors = store.gallery(MAX_PEOPLE)
            rule = calibrate(labels, vectors, search, distances, target, pair_threshold)
            # The gallery it stands for, not the sample it was measured on.
            items = sum(p.count for p in everybody)
            return replace(rule, public=replace(rule.public, people=len(everybody), items=items))

        initial = fallback(pair_threshold, "not measured yet", target)
        return DecisionCalibrator(measure, initial)

    def identify(
        self,
        *,
        image: bytes | None = None,
        vector: FloatArray | None = None,
        candidates: int = 3,
        threshold: float | None = None,
        vector_model: str = "",
        alive: Alive = always_alive,
    ) -> IdentifyResult:
        """Who each face (or the vector) is: the nearest person if the rule accepts them."""
        store = self._collection.store
        if not 0 <= candidates <= MAX_CANDIDATES:
            raise InvalidArgument(f"candidates must be between 0 and {MAX_CANDIDATES}")
        if threshold is not None:
            check_threshold(threshold)
        rule = self.rule
        matrix, faces, embed_seconds = self._collection.query_rows(
            image, vector, None, vector_model, alive
        )
        count = store.count
        k = min(identify.NEIGHBOURS, count)
        started = time.perf_counter()
        if k:
            hits = store.search(matrix, k, ef=None, exact=False)
            ids, labels, distances = hits.ids, hits.labels, hits.distances
        else:
            ids = np.zeros((len(matrix), 0), np.uint64)
            labels, distances = [[] for _ in matrix], np.zeros((len(matrix), 0), np.float32)
        search_seconds = time.perf_counter() - started
        results = [
            identify.identification(
                rule,
                ids[row],
                labels[row],
                distances[row],
                face=faces[row] if faces else None,
                candidates=candidates or DEFAULT_CANDIDATES,
                threshold=threshold,
                exhausted=k == count,
            )
            for row in range(len(matrix))
        ]
        return IdentifyResult(results, rule.public, search_seconds, embed_seconds)

    def verify(
        self,
        image: bytes,
        *,
        other_image: bytes | None = None,
        person: str | None = None,
        threshold: float | None = None,
    ) -> VerifyResult:
        """Is the largest face of `image` the same person as that of `other_image`, or as
        the enrolled `person` (their nearest item)?"""
        if threshold is not None:
            check_threshold(threshold)
        rule = self.rule
        distances = distance_function(self._collection.store.contract.space)
        face = self._largest_face(image, "the image")
        if other_image is not None:
            other = self._largest_face(other_image, "the other image")
            distance = float(distances(face.embedding[None, :], other.embedding[None, :])[0])
            limit = rule.public.pair_threshold if threshold is None else threshold
            other_id = None
        elif person is not None:
            other = None
            other_id, distance = self._nearest_item_of(person, face.embedding, distances)
            limit = rule.public.person_threshold if threshold is None else threshold
        else:
            raise InvalidArgument("verify needs a second image or an enrolled person")
        if rule.public.source == "none" and threshold is None:
            raise FailedPrecondition("this server has no threshold to verify with (--threshold)")
        return VerifyResult(
            same=distance <= limit,
            distance=distance,
            similarity=rule.similarity(distance - limit),
            threshold=limit,
            face=face,
            other_face=other,
            other_id=other_id,
        )

    def _largest_face(self, image: bytes, what: str) -> Face:
        try:
            face = self._collection.embed(image).faces[0]  # largest first
        except FailedPrecondition as error:
            if "no face" not in str(error):
                raise
            raise FailedPrecondition(f"no face was found in {what}") from None
        self._collection.validate_vector(face.embedding)
        return face

    def _nearest_item_of(
        self, person: str, vector: FloatArray, distances: Distances
    ) -> tuple[int, float]:
        _check_label(person)
        store = self._collection.store
        listed = store.items(person, 0, MAX_PERSON_ITEMS)
        if not listed.entries:
            raise NotFound(f"no enrolled person is labelled {person!r}")
        ids = [item.id for item in listed.entries]
        stored = np.stack([store.get(id).vector for id in ids])
        measured = distances(vector[None, :], stored)
        best = int(np.argmin(measured))
        return ids[best], float(measured[best])

    def list_people(self, page_size: int, page_token: str) -> tuple[Page[Person], str]:
        people = self._collection.store.people()
        offset, size = _page(page_size, page_token)
        return Page(people[offset : offset + size], len(people)), _next(offset, size, len(people))

    def list_items(
        self, label: str | None, page_size: int, page_token: str
    ) -> tuple[Page[ItemSummary], str]:
        offset, size = _page(page_size, page_token)
        page = self._collection.store.items(label, offset, size)
        return page, _next(offset, size, page.total)

    def forget(self, label: str) -> int:
        _check_label(label)
        deleted = self._collection.store.forget(label)
        self.gallery_changed()
        return deleted

    def rename(self, old: str, new: str) -> tuple[int, bool]:
        """(items relabelled, whether `new` had items already and so absorbed `old`)."""
        _check_label(old)
        _check_label(new)
        if len(new.encode()) > self._collection.config.max_label_bytes:
            raise InvalidArgument(
                f"a label is at most {self._collection.config.max_label_bytes} bytes"
            )
        if old == new:
            raise InvalidArgument(f"{old!r} is already called {new!r}")
        merged = any(p.label == new for p in self._collection.store.people())
        renamed = self._collection.store.rename(old, new)
        self.gallery_changed()
        return renamed, merged

    def gallery_changed(self) -> None:
        """After any write that may change who is enrolled (add, delete, forget, rename)."""
        self._decisions.note_change()


def _check_label(label: str) -> None:
    if not label:
        raise InvalidArgument("a person's label must not be empty")


def _page(page_size: int, page_token: str) -> tuple[int, int]:
    """(offset, size) of a page; tokens are the offset in decimal."""
    if page_size > MAX_PAGE:
        raise InvalidArgument(f"page_size must be at most {MAX_PAGE}, not {page_size}")
    try:
        offset = int(page_token) if page_token else 0
    except ValueError:
        offset = -1
    if offset < 0:
        raise InvalidArgument(f"{page_token!r} is not a page token this server gave out")
    return offset, page_size or DEFAULT_PAGE


def _next(offset: int, size: int, total: int) -> str:
    return str(offset + size) if offset + size < total else ""


def check_threshold(threshold: float) -> None:
    if not math.isfinite(threshold) or threshold < 0:
        raise InvalidArgument(f"a threshold must be a finite distance >= 0, not {threshold}")
