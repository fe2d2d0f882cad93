"""What the server does, in Python types: the gRPC servicer only converts and maps errors.

The engine owns the face model (worker processes, or an embedder in this process; neither in
vector-only mode), the index and its write-ahead log;
at start it loads the newest intact snapshot and replays the log, and it is the one place
that knows how an image becomes index entries.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fsclient.types import (
    BatchResult,
    CompactResult,
    Embedding,
    FaceMatches,
    FloatArray,
    Item,
    QueryResult,
    SaveResult,
    Stats,
)
from fsserver.adding import AddPath
from fsserver.admission import Alive, EmbedQueue, always_alive
from fsserver.config import Config
from fsserver.contract import EmbeddingContract, deepface_threshold
from fsserver.embed_pool import EmbedPool
from fsserver.embedder import DetectedFace, Embedder
from fsserver.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from fsserver.images import decode_image
from fsserver.store.calibration import RecallCalibrator
from fsserver.store.heap import release_free_memory
from fsserver.store.index import FaceIndex
from fsserver.store.recovery import open_store
from fsserver.store.snapshot import save_snapshot
from fsserver.store.wal import RecoveryReport

log = logging.getLogger(__name__)

LOCK_FILE = "LOCK"
# Past this a query walks most of any graph this server could hold; brute force is cheaper.
MAX_EF = 100_000


class Engine(AddPath):
    def __init__(self, config: Config, embedder: Embedder | None = None) -> None:
        self.config = config
        self._embedder = embedder
        self._pool: EmbedPool | None = None  # with no embedder given and --embed-workers > 0
        self._index: FaceIndex | None = None
        self.snapshot = ""
        self.recovery = RecoveryReport()
        self.embed_queue = EmbedQueue(config.max_embed_queue)
        self._saved_version = 0
        self._save_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._checkpointing = threading.Event()
        self._calibrator: RecallCalibrator | None = None

    # ---- start-up --------------------------------------------------------------------

    def load(self) -> None:
        """Load the face model (unless vector-only), the newest snapshot, then the WAL."""
        data_dir = Path(self.config.data_dir)
        self._lock_data_dir(data_dir)
        if not self.config.vector_only and self._embedder is None:
            if self.config.embed_workers > 0:
                # Returns once every worker has loaded: health is SERVING only after that.
                self._pool = EmbedPool(
                    self.config.embed_workers,
                    self.config.model,
                    self.config.detector,
                    self.config.max_image_side,
                    self.config.max_image_pixels,
                )
            else:
                from fsserver.embedder import DeepFaceEmbedder

                self._embedder = DeepFaceEmbedder(self.config.model, self.config.detector)
        contract = self.contract()
        threshold = self.config.threshold
        if threshold is None:
            threshold = deepface_threshold(contract.model, contract.space)
        recovered = open_store(
            data_dir,
            contract,
            m=self.config.m,
            ef_construction=self.config.ef_construction,
            ef=self.config.ef,
            threshold=threshold,
        )
        if not recovered.snapshot:
            log.info("no snapshot in %s: starting from the WAL alone", data_dir)
        self.snapshot, self.recovery = recovered.snapshot, recovered.report
        # Replayed changes are durable in the WAL already; a save is not due for them.
        self._saved_version = recovered.index.version
        self._index = recovered.index
        release_free_memory()  # the snapshot's and the replay's temporary buffers
        if self.config.target_recall:
            self._calibrator = RecallCalibrator(self._index, self.config.target_recall)

    def _lock_data_dir(self, data_dir: Path) -> None:
        """One server per data directory: two appending to one WAL would corrupt it."""
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FailedPrecondition(
                f"another fsserver is using the data directory {data_dir}"
            ) from None
        self._lock_fd = fd

    def _note_change(self) -> None:
        if self._calibrator is not None:
            self._calibrator.note_change()

    def close(self) -> None:
        """Stop the face model's workers, close the WAL and release the data directory
        (the server has stopped)."""
        if self._pool is not None:
            self._pool.close()
        if self._calibrator is not None:
            self._calibrator.close()
        with self._save_lock:  # let a background checkpoint finish first
            if self._index is not None and self._index.wal is not None:
                self._index.wal.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def contract(self) -> EmbeddingContract:
        face_model = self._face_model
        if face_model is not None:
            model, detector, dim = face_model.model, face_model.detector, face_model.dim
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

    @property
    def _face_model(self) -> Embedder | EmbedPool | None:
        return self._embedder if self._embedder is not None else self._pool

    @property
    def embed_pool(self) -> EmbedPool | None:
        """The face model's worker processes, if it runs in them."""
        return self._pool

    def _faces(self, image: bytes) -> list[DetectedFace]:
        if self._pool is not None:
            return self._pool.embed(image)  # decoded and downscaled in the worker too
        if self._embedder is None:
            raise FailedPrecondition(
                f"this server is vector-only (dim {self.config.dim}, no face model): "
                "send vectors, not images"
            )
        decoded = decode_image(image, self.config.max_image_side, self.config.max_image_pixels)
        return self._embedder.embed(decoded)

    def embed(self, image: bytes) -> Embedding:
        with self.embed_queue.admit(wait=False):
            faces = self._faces(image)
        if not faces:
            raise FailedPrecondition("no face was found in the image")
        face_model = self._face_model
        assert face_model is not None  # _faces refused a vector-only server
        return Embedding([f.face for f in faces], face_model.model, face_model.dim)

    # ---- add -------------------------------------------------------------------------

    def check_vector_model(self, vector_model: str) -> None:
        model = self.index.contract.model
        if vector_model and model and vector_model != model:
            raise FailedPrecondition(
                f"the vectors come from model {vector_model!r}; this index holds {model!r} "
                "embeddings, which are not comparable"
            )

    # ---- query -----------------------------------------------------------------------

    def query(
        self,
        *,
        image: bytes | None = None,
        vector: FloatArray | None = None,
        id: int | None = None,
        k: int,
        ef: int | None = None,
        exact: bool = False,
        vector_model: str = "",
        alive: Alive = always_alive,
    ) -> QueryResult:
        index = self.index
        self._check_search(k, ef)
        embed_seconds = 0.0
        faces = None
        if image is not None:
            with self.embed_queue.admit(wait=False):
                started = time.perf_counter()
                detected = self._faces(image)
                embed_seconds = time.perf_counter() - started
            if not alive():
                raise Cancelled("the client cancelled or its deadline passed")
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
        neighbors = index.query(matrix, k, ef, exact)
        search_seconds = time.perf_counter() - started
        results = [
            FaceMatches(face=faces[i] if faces else None, neighbors=n)
            for i, n in enumerate(neighbors)
        ]
        return QueryResult(results, search_seconds=search_seconds, embed_seconds=embed_seconds)

    def query_batch(
        self,
        vectors: FloatArray,
        *,
        k: int,
        ef: int | None = None,
        exact: bool = False,
        with_metadata: bool = False,
        vector_model: str = "",
    ) -> BatchResult:
        """The k nearest of every row of a flat float32 array of rows x dim values."""
        index = self.index
        self._check_search(k, ef)
        self.check_vector_model(vector_model)
        dim = index.contract.dim
        if vectors.size == 0 or vectors.size % dim:
            raise InvalidArgument(
                f"a batch of {vectors.size} values is not whole rows of this index's "
                f"dimension {dim}"
            )
        matrix = index.validate_matrix(vectors.reshape(-1, dim))
        started = time.perf_counter()
        ids, distances = index.search(matrix, k, ef, exact)
        search_seconds = time.perf_counter() - started
        threshold = index.threshold
        matches = distances <= threshold if threshold is not None else np.zeros(ids.shape, bool)
        return BatchResult(
            ids=ids,
            distances=distances,
            labels=index.labels_of(ids),
            matches=matches,
            metadata=index.metadata_of(ids) if with_metadata else None,
            search_seconds=search_seconds,
        )

    def _check_search(self, k: int, ef: int | None) -> None:
        if not 1 <= k <= self.config.max_k:
            raise InvalidArgument(f"k must be between 1 and {self.config.max_k} (--max-k), not {k}")
        if ef is not None and not 1 <= ef <= MAX_EF:
            raise InvalidArgument(f"ef must be between 1 and {MAX_EF}, not {ef}")

    # ---- the rest --------------------------------------------------------------------

    def get(self, id: int) -> Item:
        return self.index.get(id)

    def delete(self, ids: Sequence[int]) -> int:
        if not ids:
            raise InvalidArgument("delete needs at least one id")
        if len(ids) > self.config.max_batch_items:
            raise ResourceExhausted(
                f"a delete names {len(ids)} ids; the limit is {self.config.max_batch_items} "
                "(--max-batch-items)"
            )
        deleted = self.index.delete(ids)
        self._note_change()
        self._maybe_checkpoint()
        return deleted

    def _maybe_checkpoint(self) -> None:
        """Start a background snapshot once the WAL has grown past --checkpoint-wal-mb."""
        limit = self.config.checkpoint_wal_mb * 1024 * 1024
        wal = self._index.wal if self._index else None
        if not limit or wal is None or wal.segment_bytes < limit:
            return
        if self._checkpointing.is_set():
            return
        self._checkpointing.set()
        threading.Thread(target=self._checkpoint, name="checkpoint", daemon=True).start()

    def _checkpoint(self) -> None:
        try:
            log.info(
                "checkpoint: the WAL passed %d MB, saving a snapshot", self.config.checkpoint_wal_mb
            )
            self.save()
        except Exception:
            log.exception("checkpoint failed; the WAL keeps every change")
        finally:
            self._checkpointing.clear()

    @property
    def unsaved_changes(self) -> bool:
        return self._index is not None and self._index.version != self._saved_version

    def save(self) -> SaveResult:
        """Compact first if enough is deleted, then write a snapshot and trim the WAL."""
        with self._save_lock:  # one snapshot at a time; numbering stays sequential
            index = self.index
            stored = index.count + index.deleted_count
            if stored and index.deleted_count / stored >= self.config.compact_deleted_share:
                self.compact()
            version = index.version
            result = save_snapshot(index, Path(self.config.data_dir))
            self.snapshot, self._saved_version = result.snapshot, version
            return result

    def compact(self) -> CompactResult:
        started = time.perf_counter()
        removed = self.index.compact()
        release_free_memory()  # the rebuild's copy of every vector
        self._note_change()
        seconds = time.perf_counter() - started
        if removed:
            log.info("compacted: %d deleted items dropped in %.2fs", removed, seconds)
        return CompactResult(removed=removed, count=self.index.count, seconds=seconds)

    def stats(self) -> Stats:
        index = self.index
        calibrator = self._calibrator
        latest = calibrator.latest if calibrator else None
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
            wal_replayed=self.recovery.replayed,
            wal_dropped=self.recovery.dropped,
            wal_bytes=index.wal.size_bytes if index.wal else 0,
            embed_queue=self.embed_queue.depth,
            target_recall=calibrator.target if calibrator else 0.0,
            estimated_recall=latest.recall if latest else 0.0,
            recall_measured_at=latest.measured_at if latest else 0,
        )
