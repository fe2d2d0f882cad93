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
# How faces are found (the contract's `detection`; not a flag: it follows from --align and
# --detector, and names the pipeline so that an index built by an earlier one is refused).
# "deepface": the --detector through DeepFace (DeepFace.represent with --align deepface;
# its detect_faces with --align dlib: for the dlib detector that is HOG at upsample 1).
# "dlib-hog-250k": --align dlib with --detector dlib, dlib's HOG detector called directly on
# the decoded image: at upsample 1 for a photo of at most 0.25 megapixels, else at upsample
# 0 and, where that finds no face, once more on the photo enlarged 1.5x (embedder.py: why).
DETECTION_DEEPFACE = "deepface"
DETECTION_HOG = "dlib-hog-250k"
DETECTIONS = (DETECTION_DEEPFACE, DETECTION_HOG)


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


def resolve_detection(alignment: str, detector: str) -> str:
    """The `detection` a face pipeline of this alignment and detector runs; "" for raw
    vectors (no detector)."""
    if not detector:
        return ""
    if alignment == "dlib" and detector == "dlib":
        return DETECTION_HOG
    return DETECTION_DEEPFACE


def _legacy_detection(detector: str) -> str:
    """What a contract without `detection` (written before it existed) ran: DeepFace's
    detector wrapper for faces, nothing for raw vectors."""
    return DETECTION_DEEPFACE if detector else ""


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
    # How faces were found: DETECTIONS above; "" for raw vectors. A contract without the
    # field (written before it existed) read as "deepface" (from_dict): the only detection
    # there was then. So an `alignment: dlib` index from before is refused by today's
    # --align dlib --detector dlib ("detection 'deepface' vs 'dlib-hog-250k'"), and every
    # other one (--align deepface, other detectors, raw vectors) opens as before.
    detection: str = ""

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, not {self.space!r}")
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {self.storage!r}")
        if self.dim < 1:
            raise ValueError(f"dim must be at least 1, not {self.dim}")
        if self.alignment not in ("", *ALIGNMENTS):
            raise ValueError(f"alignment must be one of {ALIGNMENTS} or '', not {self.alignment!r}")
        if self.detection not in ("", *DETECTIONS):
            raise ValueError(f"detection must be one of {DETECTIONS} or '', not {self.detection!r}")

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
        detection: str | None = None,
    ) -> EmbeddingContract:
        """`detection` None: the one this alignment and detector run (resolve_detection)."""
        normalization = "l2" if space == "cosine" else "none"
        if detection is None:
            detection = resolve_detection(alignment, detector)
        return cls(model, detector, dim, space, storage, normalization, alignment, detection)

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
        if self.detection == _legacy_detection(self.detector):
            # The detection every contract without the field means (from_dict): such
            # manifests and WAL headers stay as earlier releases wrote and read them.
            del data["detection"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingContract:
        optional = ("alignment", "detection")
        values = {f.name: data[f.name] for f in fields(cls) if f.name not in optional}
        # Snapshots and WAL segments of releases before --align have no alignment: their
        # face vectors came from DeepFace's pipeline (a vector-only one has no detector).
        values["alignment"] = data.get("alignment", "deepface" if data["detector"] else "")
        # Nor, before the direct HOG detector, a detection: DeepFace's detector found faces.
        values["detection"] = data.get("detection", _legacy_detection(data["detector"]))
        return cls(**values)

    def mismatch_advice(self) -> str:
        """What to do about an index built under this contract that the server's flags
        refuse: start with the flags it was built with, or, where this release no longer
        has them (an earlier detection), re-enroll its photos."""
        earlier_dlib = (self.alignment, self.detector, self.detection) == (
            "dlib",
            "dlib",
            DETECTION_DEEPFACE,
        )
        if earlier_dlib:  # no flags run DeepFace's dlib detector under --align dlib now
            return (
                f"its faces were found by an earlier pipeline (detection {self.detection!r}: "
                "DeepFace's dlib detector at upsample 1) that this release no longer runs; "
                "re-enroll the photos into a new --data-dir (fsclient add --labels-csv "
                "people.csv, or fsclient add photos/ --label-from-dir)"
            )
        return "start with matching flags or another --data-dir"

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
