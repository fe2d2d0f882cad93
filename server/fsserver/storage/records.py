"""Labels, metadata and thumbnails by id, at a few bytes per item.

A million labelled vectors must cost little beside Voyager's own ~740 bytes per vector
(128-d float32, M=12): a dict of per-item objects cost ~200 bytes each. So labels are
interned (each distinct label stored once) and an id holds a 4-byte code in a numpy array
indexed by id. Ids are the server's dense counter unless a client picks its own; ids far
beyond the items held (e.g. hashes) fall back to a dict, so a stray huge id cannot make
the array huge. Metadata and thumbnails are rarer and larger: dicts holding only the items
that have them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Record:
    label: str = ""
    metadata: str = ""
    thumbnail: bytes = b""


NO_RECORD = Record()  # every item without label, metadata or thumbnail

# The dense array may cover ids up to this many times (items labelled + slack): enough for
# any counter-assigned ids, while an adversary's sparse ids cost at most ~16 bytes per item.
_DENSE_FACTOR, _DENSE_SLACK = 4, 1 << 20


class RecordTable:
    def __init__(self) -> None:
        self._names: list[str] = [""]  # code 0: no label
        self._codes_by_name: dict[str, int] = {"": 0}
        self._dense: npt.NDArray[np.int32] = np.zeros(0, np.int32)
        self._sparse: dict[int, int] = {}  # label codes of ids beyond the dense array
        self._labelled = 0
        self._metadata: dict[int, str] = {}
        self._thumbnails: dict[int, bytes] = {}

    @property
    def memory_bytes(self) -> int:
        """About what the table holds: label codes, names, metadata and thumbnails."""
        held = sum(map(len, self._metadata.values())) + sum(map(len, self._thumbnails.values()))
        names = sum(map(len, self._names))
        return self._dense.nbytes + 16 * len(self._sparse) + names + held

    # ---- writes ----------------------------------------------------------------------

    def set(self, id: int, record: Record) -> None:
        self._set_label(id, self._code(record.label))
        _put(self._metadata, id, record.metadata)
        _put(self._thumbnails, id, record.thumbnail)

    def discard(self, id: int) -> None:
        self.set(id, NO_RECORD)

    def set_labels(self, ids: Sequence[int], labels: Sequence[str]) -> None:
        """Bulk label writes (the hot path of a big Add); ids must be distinct."""
        codes = np.fromiter((self._code(label) for label in labels), np.int32, len(labels))
        self._assign(np.asarray(ids, dtype=np.uint64), codes)

    def _assign(self, ids: npt.NDArray[np.uint64], codes: npt.NDArray[np.int32]) -> None:
        """Set label codes of distinct ids: one numpy store when all are dense."""
        if len(ids):
            self._grow_for(int(ids.max()), extra=len(ids))
        if (ids < len(self._dense)).all():
            rows = ids.astype(np.intp)
            before = int(np.count_nonzero(self._dense[rows]))
            self._dense[rows] = codes
            self._labelled += int(np.count_nonzero(codes)) - before
            return
        for id, code in zip(ids.tolist(), codes.tolist(), strict=True):
            self._set_label(id, code)

    def relabel(self, old: str, new: str) -> int:
        """Give every item labelled `old` the label `new` (merging into it when some items
        have it already); how many items were relabelled.

        When no code is interned for `new`, old's interned name is simply renamed: no item
        is touched. Otherwise the codes move (one numpy pass over the dense array). Each
        item's code is replaced by one store, so a reader sees either label, never a third.
        """
        old_code = self._codes_by_name.get(old)
        if not old_code or old == new:
            return self.count_of(old) if old_code else 0
        moved = self.count_of(old)
        new_code = self._codes_by_name.get(new)
        if new_code is None:
            del self._codes_by_name[old]
            self._codes_by_name[new] = old_code
            self._names[old_code] = new
            return moved
        self._dense[self._dense == old_code] = new_code
        for id in [i for i, code in self._sparse.items() if code == old_code]:
            if new_code:
                self._sparse[id] = new_code
            else:
                del self._sparse[id]
        if not new_code:  # relabelled as "": no longer labelled
            self._labelled -= moved
        return moved

    def _code(self, label: str) -> int:
        code = self._codes_by_name.get(label)
        if code is None:
            code = self._codes_by_name[label] = len(self._names)
            self._names.append(label)
        return code

    def _set_label(self, id: int, code: int) -> None:
        if code:
            self._grow_for(id)
        if id < len(self._dense):
            self._labelled += bool(code) - bool(self._dense[id])
            self._dense[id] = code
        elif code:
            self._labelled += id not in self._sparse
            self._sparse[id] = code
        elif self._sparse.pop(id, 0):
            self._labelled -= 1

    def _grow_for(self, id: int, extra: int = 1) -> None:
        """Extend the dense array to cover id, if id is not far beyond the items held."""
        size = len(self._dense)
        if id < size or id >= _DENSE_FACTOR * (self._labelled + extra + _DENSE_SLACK):
            return
        grown = np.zeros(max(id + 1, 2 * size), np.int32)
        grown[:size] = self._dense
        self._dense = grown
        for moved in [i for i in self._sparse if i < len(grown)]:
            grown[moved] = self._sparse.pop(moved)

    # ---- reads -----------------------------------------------------------------------

    def get(self, id: int) -> Record:
        code = self._label_code(id)
        metadata = self._metadata.get(id, "")
        thumbnail = self._thumbnails.get(id, b"")
        if not (code or metadata or thumbnail):
            return NO_RECORD
        return Record(self._names[code], metadata, thumbnail)

    def _label_code(self, id: int) -> int:
        if 0 <= id < len(self._dense):
            return int(self._dense[id])
        return self._sparse.get(id, 0)

    def labels_of(self, ids: npt.NDArray[np.uint64]) -> list[list[str]]:
        """Labels of a rows x k table of ids, as the table's rows (vectorised for dense ids)."""
        flat = ids.ravel()
        codes = self.codes_of(flat)
        names = self._names
        labels = [names[code] for code in codes.tolist()]
        rows, width = ids.shape if ids.ndim == 2 else (1, len(flat))
        return [labels[row * width : (row + 1) * width] for row in range(rows)]

    def codes_of(self, ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
        """The label code of each of ids (0: unlabelled), vectorised for dense ids."""
        inside = ids < len(self._dense)
        codes = np.zeros(len(ids), np.int32)
        codes[inside] = self._dense[ids[inside].astype(np.intp)]
        for position in np.flatnonzero(~inside).tolist():
            codes[position] = self._sparse.get(int(ids[position]), 0)
        return codes

    def label_counts(self) -> dict[str, int]:
        """How many items carry each label that some item carries ("" not included)."""
        return label_counts(*self.code_counts())

    def code_counts(self) -> tuple[npt.NDArray[np.int64], list[str]]:
        """Items per label code, and the label of each code: the quick part of
        label_counts, for a caller that holds a lock meanwhile."""
        return self._code_counts(), list(self._names)

    def count_of(self, label: str) -> int:
        code = self._codes_by_name.get(label)
        if not code:
            return 0
        dense = int(np.count_nonzero(self._dense == code))
        return dense + sum(1 for c in self._sparse.values() if c == code)

    def _code_counts(self) -> npt.NDArray[np.int64]:
        counts = np.bincount(self._dense, minlength=len(self._names))
        if self._sparse:
            sparse = np.fromiter(self._sparse.values(), np.int32, len(self._sparse))
            counts += np.bincount(sparse, minlength=len(self._names))
        return counts

    def ids_labelled(self, labels: Iterable[str]) -> npt.NDArray[np.uint64]:
        """Ids of the items that carry any of `labels` (not ""), ascending."""
        codes = [c for c in (self._codes_by_name.get(label) for label in labels) if c]
        if not codes:
            return np.zeros(0, np.uint64)
        if len(codes) == 1:
            dense = np.flatnonzero(self._dense == codes[0])
        else:
            dense = np.flatnonzero(np.isin(self._dense, codes))
        wanted = set(codes)
        # Sparse ids all lie beyond the dense array, so they sort after its ids.
        sparse = sorted(id for id, code in self._sparse.items() if code in wanted)
        return np.concatenate([dense.astype(np.uint64), np.array(sparse, np.uint64)])

    def metadata_of(self, ids: npt.NDArray[np.uint64]) -> list[list[str]]:
        if not self._metadata:  # the common case: skip the per-id lookups
            return [[""] * ids.shape[1] for _ in range(ids.shape[0])]
        get = self._metadata.get
        return [[get(id, "") for id in row] for row in ids.tolist()]

    # ---- snapshots -------------------------------------------------------------------

    def label_columns(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32], list[str]]:
        """(ids, label codes, label names) of every labelled item, for a snapshot.

        Names no live item uses any more (their items deleted or relabelled) are dropped
        and the codes renumbered, so a restart sheds them.
        """
        dense_ids = np.flatnonzero(self._dense).astype(np.uint64)
        sparse_ids = np.fromiter(self._sparse, np.uint64, len(self._sparse))
        ids = np.concatenate([dense_ids, sparse_ids])
        codes = np.concatenate(
            [
                self._dense[dense_ids.astype(np.intp)],
                np.fromiter(self._sparse.values(), np.int32, len(self._sparse)),
            ]
        )
        used, renumbered = np.unique(codes, return_inverse=True)
        return ids, renumbered.astype(np.int32), [self._names[c] for c in used.tolist()]

    def extras(self) -> Iterator[tuple[int, str, bytes]]:
        """(id, metadata, thumbnail) of every item that has either."""
        for id in dict.fromkeys((*self._metadata, *self._thumbnails)):
            yield id, self._metadata.get(id, ""), self._thumbnails.get(id, b"")

    @classmethod
    def from_columns(
        cls, ids: npt.NDArray[np.uint64], codes: npt.NDArray[np.int32], names: Sequence[str]
    ) -> RecordTable:
        """The table label_columns() described (extras are set after, with set_extras)."""
        table = cls()
        ours = np.array([table._code(name) for name in names] or [0], np.int32)
        table._assign(ids, ours[codes] if len(codes) else codes)
        return table

    @property
    def has_any_extras(self) -> bool:
        return bool(self._metadata or self._thumbnails)

    def has_extras(self, id: int) -> bool:
        return id in self._metadata or id in self._thumbnails

    def set_extras(self, id: int, metadata: str, thumbnail: bytes) -> None:
        _put(self._metadata, id, metadata)
        _put(self._thumbnails, id, thumbnail)


def _put(table: dict[int, str] | dict[int, bytes], id: int, value: str | bytes) -> None:
    if value:
        table[id] = value  # type: ignore[assignment]
    else:
        table.pop(id, None)


def label_counts(counts: npt.NDArray[np.int64], names: Sequence[str]) -> dict[str, int]:
    """{label: count} of the labels with items (code 0, "", left out)."""
    return {names[code]: int(counts[code]) for code in (np.flatnonzero(counts[1:]) + 1).tolist()}


def choose_labels(labels: Iterable[str], max_people: int, seed: int) -> list[str]:
    """At most `max_people` of `labels`, sorted: all of them when there are no more, else a
    sample drawn with `seed` (the same labels and seed always draw the same people, in the
    single store and across shards alike)."""
    ordered = sorted(set(labels))
    if max_people < 1:
        return []
    if len(ordered) <= max_people:
        return ordered
    picked = np.random.default_rng(seed).choice(len(ordered), size=max_people, replace=False)
    return [ordered[i] for i in sorted(picked.tolist())]
