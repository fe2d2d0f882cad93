"""People and items, read from an index's records: who is in it, their items page by page,
and the gallery (labelled vectors) the decision rule is calibrated on. Reads only; writes
(forget, rename) are the index's, logged in its WAL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fsclient.types import FloatArray, ItemSummary, Page, Person
from fsserver.errors import InvalidArgument
from fsserver.storage.records import label_counts

if TYPE_CHECKING:
    from fsserver.storage.index import FaceIndex, IdArray

# Vectors read per lock hold by gallery reads: writers wait for one chunk at most.
_CHUNK = 16_384


class GalleryReader:
    def __init__(self, index: FaceIndex) -> None:
        self._index = index

    def people(self) -> list[Person]:
        """Every label some live item carries, with its live item count, by label."""
        with self._index.reading():
            per_code, names = self._index.records.code_counts()
        counts = label_counts(per_code, names)  # the slow part (a dict), without the locks
        return [Person(label, counts[label]) for label in sorted(counts)]

    def item_ids(self, label: str | None, upto: int | None = None) -> tuple[IdArray, int]:
        """The first `upto` (all when None) ids of live items, ascending, labelled `label`
        when given ("": unlabelled items); and how many match in all."""
        with self._index.reading():
            ids = self._matching_ids(label)
        return (ids if upto is None else ids[:upto]), len(ids)

    def _matching_ids(self, label: str | None) -> IdArray:
        """Ascending ids of live items labelled `label`; the caller holds the read and
        labels locks. Records hold labels of live items only (a delete discards them)."""
        if label:
            return self._index.records.ids_labelled([label])
        ids = np.sort(self._index.live_ids())
        if label == "":
            ids = ids[self._index.records.codes_of(ids) == 0]
        return ids

    def items(self, label: str | None, offset: int, limit: int) -> Page[ItemSummary]:
        """Live items in ascending id order (labelled `label` when given), from `offset`,
        at most `limit`; `total` is how many match."""
        if offset < 0 or limit < 0:
            raise InvalidArgument(f"offset and limit must not be negative: {offset}, {limit}")
        with self._index.reading():
            ids = self._matching_ids(label)
            entries = self._summaries(ids[offset : offset + limit])
        return Page(entries, len(ids))

    def summaries(self, ids: Sequence[int]) -> list[ItemSummary]:
        """Id, label and metadata of those of ids that are live, in the order given."""
        with self._index.reading():
            return self._summaries(np.array([i for i in ids if i in self._index], np.uint64))

    def _summaries(self, ids: IdArray) -> list[ItemSummary]:
        if not len(ids):
            return []
        row = ids[None, :]
        labels, metadata = (
            self._index.records.labels_of(row)[0],
            self._index.records.metadata_of(row)[0],
        )
        return [
            ItemSummary(id, label, meta)
            for id, label, meta in zip(ids.tolist(), labels, metadata, strict=True)
        ]

    def gallery_rows(self, labels: Sequence[str]) -> tuple[IdArray, list[str], FloatArray]:
        """Ids (ascending), labels and stored vectors of the live items labelled any of
        `labels`. Ids are found in one short lock hold and vectors read a chunk per hold
        (as live_chunks does), so a big gallery never holds writers, and so queries, off
        for long; a change made meanwhile may or may not be seen."""
        with self._index.reading() as index:  # a compaction may swap another in; this one stays
            deleted = self._index.deleted  # this graph's, read with it
            ids = self._index.records.ids_labelled(labels)
        read = list(self._index.read_chunks(index, deleted, ids, _CHUNK))
        kept = np.concatenate([np.zeros(0, np.uint64), *(chunk for chunk, _ in read)])
        vectors = np.concatenate(
            [np.zeros((0, self._index.contract.dim), np.float32), *(v for _, v in read)]
        )
        names = self._index.records.labels_of(kept[None, :])[0] if len(kept) else []
        return kept, names, vectors
