"""DeepFace behind one small interface: decoded pixels → faces with embeddings.

Two alignments (--align; contract.py): "deepface" is DeepFace.represent's own pipeline (the
detector's crop, rotated level on the eyes, resized to the model's input). "dlib", for the
Dlib model only, aligns faces the way that model was trained: the DeepFace detector's boxes,
then dlib's 5-point landmarks and a 150 px chip with 0.25 padding (dlib.get_face_chip), fed
to the same dlib network DeepFace loads. On 1135 LFW photos it lifts leave-one-out top-1
from 0.930 to 0.982, and detection is faster without DeepFace's black border (README,
"Detector").

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
from fsserver.contract import resolve_alignment
from fsserver.images import DecodedImage, face_thumbnail

log = logging.getLogger(__name__)

_DEEPFACE_LOCK = threading.Lock()

# dlib's face chip, as its ResNet was trained on (dlib.get_face_chip's defaults).
CHIP_SIZE = 150
CHIP_PADDING = 0.25
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
SHAPE_PREDICTOR_URL = "https://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2"


@dataclass(frozen=True)
class DetectedFace:
    face: Face  # box in the coordinates of the image as sent
    thumbnail: bytes


class Embedder(Protocol):
    model: str
    detector: str
    alignment: str  # "dlib" | "deepface"
    dim: int

    def embed(self, image: DecodedImage) -> list[DetectedFace]:
        """Every face in the image, largest first; [] when there is none."""
        ...


class DeepFaceEmbedder:
    """One DeepFace model and detector, loaded once at construction, and an alignment:
    "dlib", "deepface" or "auto" (dlib for the Dlib model, deepface for others)."""

    def __init__(self, model: str, detector: str, alignment: str = "auto") -> None:
        # ValueError for "dlib" with another model, before anything loads.
        self.alignment = resolve_alignment(alignment, model)
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
            self._detector: Any = None
            if detector != "skip":
                self._detector = DeepFace.build_model(detector, task="face_detector")
            if self.alignment == "dlib":
                self._load_dlib(recognizer)
        self.dim = int(recognizer.output_shape)
        log.info(
            "loaded DeepFace model %s (dim %d), detector %s and %s alignment in %.1fs",
            model,
            self.dim,
            detector,
            self.alignment,
            time.perf_counter() - started,
        )

    def _load_dlib(self, recognizer: Any) -> None:
        import dlib
        from deepface.commons import weight_utils

        # Where DeepFace's dlib detector finds it (fsserver.weights links it offline).
        landmarks = weight_utils.download_weights_if_necessary(
            file_name=SHAPE_PREDICTOR_FILE, source_url=SHAPE_PREDICTOR_URL, compress_type="bz2"
        )
        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(str(landmarks))
        # The very network DeepFace's "Dlib" model wraps (a dlib.face_recognition_model_v1).
        self._face_net = recognizer.model.model

    def embed(self, image: DecodedImage) -> list[DetectedFace]:
        dlib_chip = self.alignment == "dlib"
        faces = self._embed_dlib(image) if dlib_chip else self._embed_deepface(image)
        faces.sort(key=lambda f: -(f.face.box.width * f.face.box.height if f.face.box else 0))
        return faces

    def _embed_dlib(self, image: DecodedImage) -> list[DetectedFace]:
        pixels = image.pixels
        height, width = pixels.shape[:2]
        dlib = self._dlib
        with _DEEPFACE_LOCK:
            if self._detector is None:  # "skip": the whole image is the face's box
                found = [(Box(x=0, y=0, width=width, height=height), 0.0)]
            else:
                # The detector alone, on the image as decoded: no black border around it,
                # and no crop or rotation of DeepFace's (the chip below does the aligning).
                found = [
                    (
                        Box(x=int(area.x), y=int(area.y), width=int(area.w), height=int(area.h)),
                        float(area.confidence or 0.0),
                    )
                    for area in self._detector.detect_faces(pixels)
                ]
            found = [(box, score) for box, score in found if box.width > 0 and box.height > 0]
            if not found:
                return []
            rgb = np.ascontiguousarray(pixels[:, :, ::-1])  # dlib wants RGB; ours is BGR
            shapes = dlib.full_object_detections()
            for box, _ in found:
                rectangle = dlib.rectangle(box.x, box.y, box.x + box.width, box.y + box.height)
                shapes.append(self._shape_predictor(rgb, rectangle))
            chips = dlib.get_face_chips(rgb, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
            # Every face of the image through the network in one batch.
            descriptors = self._face_net.compute_face_descriptor(chips)
        return [
            DetectedFace(
                face=Face(
                    box=image.to_original(box),
                    confidence=score,
                    embedding=np.asarray(descriptor, dtype=np.float32),
                ),
                thumbnail=face_thumbnail(pixels, box),
            )
            for (box, score), descriptor in zip(found, descriptors, strict=True)
        ]

    def _embed_deepface(self, image: DecodedImage) -> list[DetectedFace]:
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
        return [self._to_face(image, r) for r in found]

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
