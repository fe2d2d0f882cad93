"""The embedding contract: what makes two vectors comparable.

Vectors from another model, detector, dimension or space are not comparable, so the index
records the contract it was built under, refuses snapshots made under another one, and
turns distances into the scale that the model's verification threshold is stated in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

SPACES = ("euclidean", "cosine")
STORAGES = ("float32", "e4m3")


@dataclass(frozen=True)
class EmbeddingContract:
    model: str  # DeepFace model name, or the caller's name for raw vectors ("" = unnamed)
    detector: str  # "" in vector-only mode
    dim: int
    space: str  # euclidean | cosine
    storage: str  # float32 | e4m3
    # How vectors are normalised before indexing: cosine space normalises to unit length
    # (Voyager does it on insert); euclidean keeps the model's raw output, which is the
    # scale DeepFace's "euclidean" thresholds are stated in.
    normalization: str

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, not {self.space!r}")
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {self.storage!r}")
        if self.dim < 1:
            raise ValueError(f"dim must be at least 1, not {self.dim}")

    @classmethod
    def build(
        cls, *, model: str, detector: str, dim: int, space: str, storage: str
    ) -> EmbeddingContract:
        normalization = "l2" if space == "cosine" else "none"
        return cls(model, detector, dim, space, storage, normalization)

    def differences(self, other: EmbeddingContract) -> list[tuple[str, object, object]]:
        """(field, ours, theirs) for every field that differs."""
        return [
            (f.name, getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingContract:
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def to_user_distances(self, raw: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Voyager's distances → the distances users (and DeepFace thresholds) expect.

        Voyager's Euclidean space returns squared L2; its cosine space returns 1 - cos,
        which is DeepFace's cosine distance already.
        """
        if self.space == "euclidean":
            return np.sqrt(np.maximum(raw, 0.0, dtype=np.float32))
        return raw.astype(np.float32, copy=False)


def deepface_threshold(model: str, space: str) -> float | None:
    """DeepFace's verification threshold for `model` on this space's distance, if known."""
    try:
        from deepface.config.threshold import thresholds
    except ImportError:  # vector-only servers may run without deepface installed
        return None
    by_metric: dict[str, float] = thresholds.get(model, {})
    value = by_metric.get(space)
    return float(value) if value is not None else None
