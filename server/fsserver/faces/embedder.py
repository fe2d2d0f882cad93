"""DeepFace behind one small interface: decoded pixels → faces with embeddings.

Two alignments (--align; contract.py): "deepface" is DeepFace.represent's own pipeline (the
detector's crop, rotated level on the eyes, resized to the model's input). "dlib", for the
Dlib model only, aligns faces the way that model was trained: boxes, then dlib's 5-point
landmarks and a 150 px chip with 0.25 padding (dlib.get_face_chip), fed to the same dlib
network DeepFace loads. On 1135 LFW photos it lifts leave-one-out top-1 from 0.930 to 0.982,
and detection is faster without DeepFace's black border (README, "Detector").

With --align dlib the boxes of the dlib detector come from dlib's HOG detector called
directly (contract detection "dlib-hog-250k"), scanning as few pixels as the photo allows.
HOG finds faces of 80 px and up at upsample 0 and of 40 px and up at upsample 1 (2x the
pixels each way, 4x the time: 37 against 157 ms at 640 x 480 on this machine's cores), so
the scan is sized so that even a photo with no face at all (a camera's empty doorway, the
most common photo of all) costs at most ~125 ms of scanning:
- a photo of at most 0.25 megapixels (up to ~580 x 430: a crop, a thumbnail, an LFW photo)
  is scanned at upsample 1, so its small faces are found with fine boxes (upsample 0's
  coarse ones cost LFW open-set accepts 0.88 -> 0.85);
- a larger one at upsample 0 and, where that finds nothing, once more enlarged 1.5x
  (faces from ~53 px) rather than at upsample 1.
Other detectors still run through DeepFace's detect_faces.

Each image's result (Faces) carries StageTimes: the seconds spent decoding, detecting,
aligning, embedding and making thumbnails, measured where the image ran (a worker process).

DeepFace is not thread-safe (concurrent calls gave wrong boxes, and the dlib detector
segfaulted), and its models are process-wide singletons, so every call in this process goes
through one lock. Raw-vector requests never touch the embedder and so never wait on it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Protocol

import numpy as np

from fsclient.types import Box, Face
from fsserver.contract import DETECTION_HOG, resolve_alignment, resolve_detection
from fsserver.faces.images import DecodedImage, decode_image, face_thumbnail

log = logging.getLogger(__name__)

_DEEPFACE_LOCK = threading.Lock()

# dlib's face chip, as its ResNet was trained on (dlib.get_face_chip's defaults): 150 px,
# the size compute_face_descriptor cuts, and 0.25 padding, which it is given.
CHIP_PADDING = 0.25
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
SHAPE_PREDICTOR_URL = "https://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2"
# dlib's HOG detector (detection "dlib-hog-400"; see the module's docstring).
SMALL_PHOTO_PIXELS = 250_000  # scanned at upsample 1
RESCAN_SCALE = 1.5  # a larger photo where upsample 0 finds nothing: once more, this much larger


@dataclass(frozen=True)
class DetectedFace:
    face: Face  # box in the coordinates of the image as sent
    thumbnail: bytes


@dataclass(frozen=True)
class StageTimes:
    """Seconds one image spent in each stage, measured in the process that embedded it.

    With --align deepface, DeepFace.represent does detection, alignment and the network in
    one call: all of it is `embed` there."""

    decode: float = 0.0  # bytes → downscaled pixels (0 when the caller passed pixels)
    detect: float = 0.0  # the face boxes, both HOG passes where two ran (and the RGB copy)
    align: float = 0.0  # the 5-point landmarks
    embed: float = 0.0  # the 150 px chips and the network, every face in one batch
    thumbnail: float = 0.0  # the faces' JPEG thumbnails

    @property
    def total(self) -> float:
        return self.decode + self.detect + self.align + self.embed + self.thumbnail


class Faces(list[DetectedFace]):
    """Every face of one image, largest first ([] when there is none), and `stage_times`:
    where the image's time went. A list, so it is used as one; it pickles with its times
    (worker processes send it back as it is)."""

    def __init__(
        self, faces: Iterable[DetectedFace] = (), stage_times: StageTimes | None = None
    ) -> None:
        super().__init__(faces)
        self.stage_times = stage_times if stage_times is not None else StageTimes()


class Embedder(Protocol):
    model: str
    detector: str
    alignment: str  # "dlib" | "deepface"
    detection: str  # contract.DETECTIONS
    dim: int

    def embed(self, image: DecodedImage) -> Faces:
        """Every face in the image, largest first; [] when there is none."""
        ...


def embed_bytes(embedder: Embedder, data: bytes, max_side: int, max_pixels: int) -> Faces:
    """Decode and downscale image bytes (images.decode_image), then embed them: the faces,
    with the decoding in their stage_times."""
    started = time.perf_counter()
    image = decode_image(data, max_side, max_pixels)
    decoded = time.perf_counter() - started
    faces = embedder.embed(image)
    faces.stage_times = replace(faces.stage_times, decode=decoded)
    return faces


@cache
def _hog_detector() -> Any:
    """dlib's frontal-face HOG detector, once per process (loading it takes about 0.5 s)."""
    import dlib

    return dlib.get_frontal_face_detector()


def _hog_faces(hog: Any, rgb: Any, dlib: Any) -> list[tuple[Any, float]]:
    """(rectangle on `rgb`, score) of each face HOG finds, scanning as the module says."""
    if rgb.shape[0] * rgb.shape[1] <= SMALL_PHOTO_PIXELS:
        rectangles, scores, _ = hog.run(rgb, 1)
        return list(zip(rectangles, scores, strict=True))
    rectangles, scores, _ = hog.run(rgb, 0)
    if len(rectangles):
        return list(zip(rectangles, scores, strict=True))
    import cv2

    larger = cv2.resize(rgb, None, fx=RESCAN_SCALE, fy=RESCAN_SCALE, interpolation=cv2.INTER_LINEAR)
    rectangles, scores, _ = hog.run(larger, 0)
    s = RESCAN_SCALE
    return [
        (
            dlib.rectangle(
                round(r.left() / s), round(r.top() / s), round(r.right() / s), round(r.bottom() / s)
            ),
            score,
        )
        for r, score in zip(rectangles, scores, strict=True)
    ]


def _largest_first(detected: DetectedFace) -> tuple[int, int, int]:
    box = detected.face.box
    return (-(box.width * box.height), box.x, box.y) if box else (0, 0, 0)


def _clipped(left: int, top: int, right: int, bottom: int, width: int, height: int) -> Box:
    """A dlib rectangle clipped to the image, as DeepFace's dlib detector reports it."""
    x, y = max(0, left), max(0, top)
    return Box(x=x, y=y, width=min(right, width) - x, height=min(bottom, height) - y)


class DeepFaceEmbedder:
    """One DeepFace model and detector, loaded once at construction, and an alignment:
    "dlib", "deepface" or "auto" (dlib for the Dlib model, deepface for others)."""

    def __init__(self, model: str, detector: str, alignment: str = "auto") -> None:
        # ValueError for "dlib" with another model, before anything loads.
        self.alignment = resolve_alignment(alignment, model)
        self.detection = resolve_detection(self.alignment, detector)
        # Quiet TensorFlow-based models' start-up noise; harmless for Dlib.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from fsserver.faces.weights import link_packaged_weights

        link_packaged_weights()
        from deepface import DeepFace

        self._deepface = DeepFace
        self.model = model
        self.detector = detector
        started = time.perf_counter()
        with _DEEPFACE_LOCK:
            recognizer = DeepFace.build_model(model, task="facial_recognition")
            self._detector: Any = None
            self._hog: Any = None
            if self.detection == DETECTION_HOG:
                self._hog = _hog_detector()  # dlib's own, without DeepFace's wrapper
            elif detector != "skip":
                self._detector = DeepFace.build_model(detector, task="face_detector")
            if self.alignment == "dlib":
                self._load_dlib(recognizer)
        self.dim = int(recognizer.output_shape)
        log.info(
            "loaded DeepFace model %s (dim %d), detector %s (%s) and %s alignment in %.1fs",
            model,
            self.dim,
            detector,
            self.detection,
            self.alignment,
            time.perf_counter() - started,
        )

    def _load_dlib(self, recognizer: Any) -> None:
        import dlib
        from deepface.commons import weight_utils

        # Where DeepFace's dlib detector finds it (fsserver.faces.weights links it offline).
        landmarks = weight_utils.download_weights_if_necessary(
            file_name=SHAPE_PREDICTOR_FILE, source_url=SHAPE_PREDICTOR_URL, compress_type="bz2"
        )
        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(str(landmarks))
        # The very network DeepFace's "Dlib" model wraps (a dlib.face_recognition_model_v1).
        self._face_net = recognizer.model.model

    def embed(self, image: DecodedImage) -> Faces:
        dlib_chip = self.alignment == "dlib"
        faces = self._embed_dlib(image) if dlib_chip else self._embed_deepface(image)
        # Largest first; faces of one size (HOG's boxes come in steps) left to right.
        faces.sort(key=_largest_first)
        return faces

    def _find(self, pixels: Any, rgb: Any) -> list[tuple[Any, Box, float]]:
        """(the rectangle for the landmarks, the box clipped to the image, confidence) of
        every face. Called under the lock."""
        dlib = self._dlib
        height, width = pixels.shape[:2]
        found: list[tuple[Any, Box, float]] = []
        if self._hog is not None:
            for rectangle, score in _hog_faces(self._hog, rgb, dlib):
                box = _clipped(
                    rectangle.left(),
                    rectangle.top(),
                    rectangle.right(),
                    rectangle.bottom(),
                    width,
                    height,
                )
                # HOG scores are above 0 and not bounded; DeepFace clamps them to [0, 1].
                found.append((rectangle, box, min(max(0.0, float(score)), 1.0)))
        elif self._detector is None:  # "skip": the whole image is the face's box
            box = Box(x=0, y=0, width=width, height=height)
            found.append((dlib.rectangle(0, 0, width, height), box, 0.0))
        else:
            # The detector alone, on the image as decoded: no black border around it,
            # and no crop or rotation of DeepFace's (the chip does the aligning).
            for area in self._detector.detect_faces(pixels):
                box = Box(x=int(area.x), y=int(area.y), width=int(area.w), height=int(area.h))
                rectangle = dlib.rectangle(box.x, box.y, box.x + box.width, box.y + box.height)
                found.append((rectangle, box, float(area.confidence or 0.0)))
        return [(r, box, score) for r, box, score in found if box.width > 0 and box.height > 0]

    def _embed_dlib(self, image: DecodedImage) -> Faces:
        pixels = image.pixels
        dlib = self._dlib
        clock = time.perf_counter
        with _DEEPFACE_LOCK:
            started = clock()
            rgb = np.ascontiguousarray(pixels[:, :, ::-1])  # dlib wants RGB; ours is BGR
            found = self._find(pixels, rgb)
            detected = clock()
            if not found:
                return Faces([], StageTimes(detect=detected - started))
            shapes = dlib.full_object_detections()
            for rectangle, _, _ in found:
                shapes.append(self._shape_predictor(rgb, rectangle))
            aligned = clock()
            # dlib.get_face_chips' 150 px chips with 0.25 padding, cut inside dlib and fed
            # to the network in one batch: the very descriptors of get_face_chips followed
            # by compute_face_descriptor(chips), without copying the chips out and back.
            descriptors = self._face_net.compute_face_descriptor(rgb, shapes, 0, CHIP_PADDING)
            embedded = clock()
        faces = [
            DetectedFace(
                face=Face(
                    box=image.to_original(box),
                    confidence=score,
                    embedding=np.asarray(descriptor, dtype=np.float32),
                ),
                thumbnail=face_thumbnail(pixels, box),
            )
            for (_, box, score), descriptor in zip(found, descriptors, strict=True)
        ]
        times = StageTimes(
            detect=detected - started,
            align=aligned - detected,
            embed=embedded - aligned,
            thumbnail=clock() - embedded,
        )
        return Faces(faces, times)

    def _embed_deepface(self, image: DecodedImage) -> Faces:
        with _DEEPFACE_LOCK:
            started = time.perf_counter()
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
                    return Faces([], StageTimes(embed=time.perf_counter() - started))
                raise
            represented = time.perf_counter()
        faces = [self._to_face(image, r) for r in found]
        times = StageTimes(embed=represented - started, thumbnail=time.perf_counter() - represented)
        return Faces(faces, times)

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
