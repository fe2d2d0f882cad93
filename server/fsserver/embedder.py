"""DeepFace behind one small interface: decoded pixels → faces with embeddings.

DeepFace is not thread-safe (concurrent calls gave wrong boxes, and the dlib detector
segfaulted), and its models are process-wide singletons, so every call in this process goes
through one lock. Raw-vector requests never touch the embedder and so never wait on it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fsclient.types import Box, Face
from fsserver.images import DecodedImage, face_thumbnail

log = logging.getLogger(__name__)

_DEEPFACE_LOCK = threading.Lock()


@dataclass(frozen=True)
class DetectedFace:
    face: Face  # box in the coordinates of the image as sent
    thumbnail: bytes


class Embedder(Protocol):
    model: str
    detector: str
    dim: int

    def embed(self, image: DecodedImage) -> list[DetectedFace]:
        """Every face in the image, largest first; [] when there is none."""
        ...


class DeepFaceEmbedder:
    """One DeepFace model and detector, loaded once at construction."""

    def __init__(self, model: str, detector: str) -> None:
        # Quiet TensorFlow-based models' start-up noise; harmless for Dlib.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from fsserver.weights import link_packaged_weights

        link_packaged_weights()
        from deepface import DeepFace

        self._deepface = DeepFace
        self.model = model
        self.detector = detector
        started = time.perf_counter()
        with _DEEPFACE_LOCK:
            recognizer = DeepFace.build_model(model, task="facial_recognition")
            if detector != "skip":
                DeepFace.build_model(detector, task="face_detector")
        self.dim = int(recognizer.output_shape)
        log.info(
            "loaded DeepFace model %s (dim %d) and detector %s in %.1fs",
            model,
            self.dim,
            detector,
            time.perf_counter() - started,
        )

    def embed(self, image: DecodedImage) -> list[DetectedFace]:
        with _DEEPFACE_LOCK:
            try:
                found: list[dict[str, Any]] = self._deepface.represent(
                    image.pixels,
                    model_name=self.model,
                    detector_backend=self.detector,
                    enforce_detection=True,
                    align=True,
                )
            except ValueError as error:
                # enforce_detection=True signals "no face" with a ValueError.
                if "face could not be detected" in str(error).lower():
                    return []
                raise
        faces = [self._to_face(image, r) for r in found]
        faces.sort(key=lambda f: -(f.face.box.width * f.face.box.height if f.face.box else 0))
        return faces

    def _to_face(self, image: DecodedImage, represented: dict[str, Any]) -> DetectedFace:
        area = represented["facial_area"]
        box_on_pixels = Box(
            x=int(area["x"]), y=int(area["y"]), width=int(area["w"]), height=int(area["h"])
        )
        face = Face(
            box=image.to_original(box_on_pixels),
            confidence=float(represented.get("face_confidence") or 0.0),
            embedding=np.asarray(represented["embedding"], dtype=np.float32),
        )
        return DetectedFace(face=face, thumbnail=face_thumbnail(image.pixels, box_on_pixels))
