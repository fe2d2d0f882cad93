"""Rows: the one shape of a batch to store, from an Add request to the WAL.

A row is a validated vector with its id (None: the index assigns one), label, metadata and
thumbnail. Add batches of images and of packed vectors become Rows (collection/adding.py);
backends store them (local, or split by shard for Ray); the WAL logs them as an AddRecord,
which is Rows with every id assigned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from fsclient.types import FloatArray


@dataclass(frozen=True)
class Rows:
    vectors: FloatArray  # (n, dim) float32, validated
    ids: Sequence[int | None]
    labels: Sequence[str]
    metadata: Sequence[str]
    thumbnails: Sequence[bytes]

    @classmethod
    def of(
        cls,
        vectors: FloatArray,
        *,
        ids: Sequence[int | None] | None = None,
        labels: Sequence[str] | None = None,
        metadata: Sequence[str] | None = None,
        thumbnails: Sequence[bytes] | None = None,
    ) -> Rows:
        """Rows with the columns not given left empty (no id, label, metadata, thumbnail)."""
        n = len(vectors)
        return cls(
            vectors,
            ids if ids is not None else [None] * n,
            labels if labels is not None else [""] * n,
            metadata if metadata is not None else [""] * n,
            thumbnails if thumbnails is not None else [b""] * n,
        )

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, positions: Sequence[int]) -> Rows:
        """These rows, in this order."""
        if len(positions) == len(self) and list(positions) == list(range(len(self))):
            return self
        return Rows(
            self.vectors[list(positions)],
            [self.ids[p] for p in positions],
            [self.labels[p] for p in positions],
            [self.metadata[p] for p in positions],
            [self.thumbnails[p] for p in positions],
        )

    def with_ids(self, ids: Sequence[int]) -> Rows:
        return replace(self, ids=ids)
