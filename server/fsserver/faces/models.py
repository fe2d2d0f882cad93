"""The face models of one server: each loaded once per model name, shared by every collection
that uses it (a worker pool costs a model's memory per worker, so two collections of one
model must not start two pools)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from fsserver.admission import EmbedQueue
from fsserver.config import Config
from fsserver.errors import FailedPrecondition
from fsserver.faces.embedder import Embedder, Faces, embed_bytes
from fsserver.faces.pool import EmbedPool


@dataclass
class FaceModel:
    """One loaded model: in worker processes (`pool`) or in this process (`embedder`), and
    the queue that admits image requests to it (shared by every collection using it)."""

    config: Config  # the server's config with this model's name
    queue: EmbedQueue
    embedder: Embedder | None = None
    pool: EmbedPool | None = None

    @property
    def loaded(self) -> Embedder | EmbedPool:
        model = self.pool if self.pool is not None else self.embedder
        assert model is not None, "a FaceModel holds a pool or an embedder"
        return model

    @property
    def name(self) -> str:
        return self.loaded.model

    @property
    def dim(self) -> int:
        return self.loaded.dim

    def faces(self, image: bytes) -> Faces:
        """Decode, detect, align and embed one image (in a worker, with a pool)."""
        if self.pool is not None:
            return self.pool.embed(image)  # decoded and downscaled in the worker too
        assert self.embedder is not None
        config = self.config
        return embed_bytes(self.embedder, image, config.max_image_side, config.max_image_pixels)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class FaceModels:
    """Model name → FaceModel, loaded on first use with the server's detector, alignment
    and worker settings. An embedder handed in (tests, benchmarks) serves its own model."""

    def __init__(self, config: Config, embedder: Embedder | None = None) -> None:
        self._config = config
        self._models: dict[str, FaceModel] = {}
        self._lock = threading.Lock()  # loading a model takes seconds: one at a time
        if embedder is not None:
            self._models[embedder.model] = FaceModel(
                config, EmbedQueue(config.max_embed_queue), embedder=embedder
            )

    def get(self, model: str) -> FaceModel:
        with self._lock:
            face_model = self._models.get(model)
            if face_model is None:
                face_model = self._load(model)
                self._models[model] = face_model
            return face_model

    def _load(self, model: str) -> FaceModel:
        config = replace(self._config, model=model, dim=None)
        try:
            alignment = config.alignment
        except ValueError as error:
            raise FailedPrecondition(str(error)) from None
        queue = EmbedQueue(config.max_embed_queue)
        if config.embed_workers > 0:
            # Returns once every worker has loaded: health is SERVING only after that.
            pool = EmbedPool(
                config.embed_workers,
                model,
                config.detector,
                config.max_image_side,
                config.max_image_pixels,
                alignment=alignment,
            )
            return FaceModel(config, queue, pool=pool)
        from fsserver.faces.embedder import DeepFaceEmbedder

        return FaceModel(
            config, queue, embedder=DeepFaceEmbedder(model, config.detector, alignment)
        )

    @property
    def loaded(self) -> list[FaceModel]:
        with self._lock:
            return list(self._models.values())

    def close(self) -> None:
        with self._lock:
            for face_model in self._models.values():
                face_model.close()
            self._models.clear()
