"""What the server does, in Python types: the gRPC servicer only converts and maps errors.

The engine owns the embedder (None in vector-only mode) and the index, loads the newest
snapshot at start, and is the one place that knows how an image becomes index entries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fsclient.types import (
    AddItem,
    AddResult,
    Embedding,
    FaceMatches,
    FloatArray,
    Item,
    ItemError,
    QueryResult,
    SaveResult,
    Stats,
)
from fsserver.config import Config
from fsserver.contract import EmbeddingContract, deepface_threshold
from fsserver.embedder import DetectedFace, Embedder
from fsserver.errors import (
    FaceSearchError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from fsserver.images import decode_image
from fsserver.store.index import Entry, FaceIndex, Record
from fsserver.store.snapshot import load_snapshot, save_snapshot

log = logging.getLogger(__name__)


def item_error(error: FaceSearchError) -> ItemError:
    return ItemError(error.number, str(error))


class Engine:
    def __init__(self, config: Config, embedder: Embedder | None = None) -> None:
        self.config = config
        self._embedder = embedder
        self._index: FaceIndex | None = None
        self.snapshot = ""
        self._saved_version = 0
        self._save_lock = threading.Lock()

    # ---- start-up --------------------------------------------------------------------

    def load(self) -> None:
        """Load the face model (unless vector-only) and the newest snapshot."""
        if not self.config.vector_only and self._embedder is None:
            from fsserver.embedder import DeepFaceEmbedder

            self._embedder = DeepFaceEmbedder(self.config.model, self.config.detector)
        contract = self.contract()
        threshold = self.config.threshold
        if threshold is None:
            threshold = deepface_threshold(contract.model, contract.space)
        loaded = load_snapshot(
            self.config.data_dir, contract, ef=self.config.ef, threshold=threshold
        )
        if loaded is None:
            self._index = FaceIndex(
                contract,
                m=self.config.m,
                ef_construction=self.config.ef_construction,
                ef=self.config.ef,
                threshold=threshold,
            )
            log.info("no snapshot in %s: starting an empty index", self.config.data_dir)
        else:
            self._index, self.snapshot = loaded

    def contract(self) -> EmbeddingContract:
        if self._embedder is not None:
            model, detector, dim = self._embedder.model, self._embedder.detector, self._embedder.dim
        else:
            assert self.config.dim is not None, "a face server needs its embedder loaded"
            model, detector, dim = self.config.model, "", self.config.dim
        return EmbeddingContract.build(
            model=model,
            detector=detector,
            dim=dim,
            space=self.config.space,
            storage=self.config.storage,
        )

    @property
    def loaded(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> FaceIndex:
        if self._index is None:
            raise Unavailable("the server is still loading its model and index")
        return self._index

    # ---- images ----------------------------------------------------------------------

    def _faces(self, image: bytes) -> list[DetectedFace]:
        if self._embedder is None:
            raise FailedPrecondition(
                f"this server is vector-only (dim {self.config.dim}, no face model): "
                "send vectors, not images"
            )
        decoded = decode_image(image, self.config.max_image_side)
        return self._embedder.embed(decoded)

    def embed(self, image: bytes) -> Embedding:
        faces = self._faces(image)
        if not faces:
            raise FailedPrecondition("no face was found in the image")
        assert self._embedder is not None  # _faces refused a vector-only server
        return Embedding([f.face for f in faces], self._embedder.model, self._embedder.dim)

    # ---- add -------------------------------------------------------------------------

    def check_vector_model(self, vector_model: str) -> None:
        model = self.index.contract.model
        if vector_model and model and vector_model != model:
            raise FailedPrecondition(
                f"the vectors come from model {vector_model!r}; this index holds {model!r} "
                "embeddings, which are not comparable"
            )

    def add(self, items: Sequence[AddItem], vector_model: str = "") -> list[AddResult]:
        """Store a batch; each item gets its id or its own error, never the whole batch's."""
        index = self.index
        self.check_vector_model(vector_model)
        if len(items) > self.config.max_batch_items:
            raise ResourceExhausted(
                f"a batch holds {len(items)} items; the limit is {self.config.max_batch_items} "
                "(--max-batch-items)"
            )
        results: list[AddResult] = []
        entries: list[Entry] = []
        waiting: list[tuple[int, DetectedFace | None, int]] = []  # result slot, face, faces
        for item in items:
            try:
                vector, subject, faces_found = self._item_vector(item)
            except FaceSearchError as error:
                results.append(AddResult(id=None, error=item_error(error)))
                continue
            except Exception as error:  # a model failure on one odd image spares the stream
                log.exception("embedding item %d of a batch failed", len(results))
                failure = FaceSearchError(f"embedding failed: {error}")
                results.append(AddResult(id=None, error=item_error(failure)))
                continue
            thumbnail = subject.thumbnail if subject else b""
            entries.append(Entry(vector, item.id, Record(item.label, item.metadata, thumbnail)))
            waiting.append((len(results), subject, faces_found))
            results.append(AddResult(id=None))  # filled in once the index has stored it
        for (slot, subject, faces_found), outcome in zip(waiting, index.add(entries), strict=True):
            if isinstance(outcome, FaceSearchError):
                results[slot] = AddResult(id=None, error=item_error(outcome))
            else:
                face = subject.face if subject else None
                results[slot] = AddResult(id=outcome, face=face, faces_found=faces_found)
        return results

    def _item_vector(self, item: AddItem) -> tuple[FloatArray, DetectedFace | None, int]:
        """The vector to store, and for images the enrolled face and how many were found."""
        if item.vector is not None:
            return self.index.validate_vector(item.vector), None, 0
        if item.image is None:
            raise InvalidArgument("the item has neither an image nor a vector")
        faces = self._faces(item.image)
        if not faces:
            raise FailedPrecondition("no face was found in the image")
        subject = faces[0]  # the largest face
        return self.index.validate_vector(subject.face.embedding), subject, len(faces)

    # ---- query -----------------------------------------------------------------------

    def query(
        self,
        *,
        image: bytes | None = None,
        vector: FloatArray | None = None,
        id: int | None = None,
        k: int,
        ef: int | None = None,
        vector_model: str = "",
    ) -> QueryResult:
        index = self.index
        if not 1 <= k <= self.config.max_k:
            raise InvalidArgument(f"k must be between 1 and {self.config.max_k}, not {k}")
        if ef is not None and ef < 1:
            raise InvalidArgument(f"ef must be at least 1, not {ef}")
        embed_seconds = 0.0
        faces = None
        if image is not None:
            started = time.perf_counter()
            detected = self._faces(image)
            embed_seconds = time.perf_counter() - started
            if not detected:
                raise FailedPrecondition("no face was found in the query image")
            faces = [d.face for d in detected]
            matrix = np.stack([index.validate_vector(f.embedding) for f in faces])
        elif vector is not None:
            self.check_vector_model(vector_model)
            matrix = index.validate_vector(vector)[None, :]
        elif id is not None:
            matrix = index.get(id).vector[None, :]
        else:
            raise InvalidArgument("a query needs an image, a vector or an id")
        started = time.perf_counter()
        neighbors = index.query(matrix, k, ef)
        search_seconds = time.perf_counter() - started
        results = [
            FaceMatches(face=faces[i] if faces else None, neighbors=n)
            for i, n in enumerate(neighbors)
        ]
        return QueryResult(results, search_seconds=search_seconds, embed_seconds=embed_seconds)

    # ---- the rest --------------------------------------------------------------------

    def get(self, id: int) -> Item:
        return self.index.get(id)

    def delete(self, ids: Sequence[int]) -> int:
        if not ids:
            raise InvalidArgument("delete needs at least one id")
        return self.index.delete(ids)

    @property
    def unsaved_changes(self) -> bool:
        return self._index is not None and self._index.version != self._saved_version

    def save(self) -> SaveResult:
        with self._save_lock:  # one snapshot at a time; numbering stays sequential
            version = self.index.version
            result = save_snapshot(self.index, Path(self.config.data_dir))
            self.snapshot, self._saved_version = result.snapshot, version
            return result

    def stats(self) -> Stats:
        index = self.index
        contract = index.contract
        return Stats(
            count=index.count,
            dim=contract.dim,
            space=contract.space,
            storage=contract.storage,
            model=contract.model,
            detector=contract.detector,
            ef=index.default_ef,
            deleted=index.deleted_count,
            threshold=index.threshold or 0.0,
            normalization=contract.normalization,
            snapshot=self.snapshot,
        )
