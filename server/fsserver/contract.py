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
# How a face is cropped and aligned before the model sees it (--align): "dlib" is dlib's
# 5-point landmarks and a 150 px chip with 0.25 padding (dlib.get_face_chip), the way the
# Dlib model was trained; "deepface" is DeepFace's own crop, rotated level on the eyes.
ALIGNMENTS = ("dlib", "deepface")
ALIGN_CHOICES = ("auto", *ALIGNMENTS)
DLIB_MODEL = "Dlib"  # the only model the "dlib" alignment is made for


def resolve_alignment(align: str, model: str) -> str:
    """--align as given → the alignment used: "auto" is "dlib" for the Dlib model and
    "deepface" for every other one. ValueError for "dlib" with another model."""
    if align == "auto":
        return "dlib" if model == DLIB_MODEL else "deepface"
    if align not in ALIGNMENTS:
        raise ValueError(f"align must be one of {ALIGN_CHOICES}, not {align!r}")
    if align == "dlib" and model != DLIB_MODEL:
        raise ValueError(
            f"--align dlib is the {DLIB_MODEL} model's own alignment and does not fit model "
            f"{model!r}: use --align deepface (or auto)"
        )
    return align


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
    # How faces were aligned before embedding: "dlib" | "deepface"; "" for raw vectors
    # (vector-only servers). Contracts written before this field existed read as
    # "deepface" (from_dict), the only pipeline there was then.
    alignment: str = ""

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, not {self.space!r}")
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {self.storage!r}")
        if self.dim < 1:
            raise ValueError(f"dim must be at least 1, not {self.dim}")
        if self.alignment not in ("", *ALIGNMENTS):
            raise ValueError(f"alignment must be one of {ALIGNMENTS} or '', not {self.alignment!r}")

    @classmethod
    def build(
        cls,
        *,
        model: str,
        detector: str,
        dim: int,
        space: str,
        storage: str,
        alignment: str = "",
    ) -> EmbeddingContract:
        normalization = "l2" if space == "cosine" else "none"
        return cls(model, detector, dim, space, storage, normalization, alignment)

    def differences(self, other: EmbeddingContract) -> list[tuple[str, object, object]]:
        """(field, ours, theirs) for every field that differs."""
        return [
            (f.name, getattr(self, f.name), getattr(other, f.name))
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.alignment:
            # Vector-only: no alignment, and the same manifest and WAL header as before it.
            del data["alignment"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingContract:
        values = {f.name: data[f.name] for f in fields(cls) if f.name != "alignment"}
        # Snapshots and WAL segments of releases before --align have no alignment: their
        # face vectors came from DeepFace's pipeline (a vector-only one has no detector).
        values["alignment"] = data.get("alignment", "deepface" if data["detector"] else "")
        return cls(**values)

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
