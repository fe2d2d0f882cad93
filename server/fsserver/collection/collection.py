"""One collection, in Python types: the gRPC edge (fsserver/api) only converts and maps errors.

A collection uses a face model shared through the catalog (worker processes or an embedder
in this process; none for raw vectors) and owns an index backend (storage/backend.py): by
default one LocalStore in its folder, which at start loads the newest intact snapshot and
replays the WAL; with --backend ray, Ray shard actors that each do so (fsserver/shards/). It
is the one place that knows how an image becomes index entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fsclient.types import (
    BatchResult,
    CollectionInfo,
    CompactResult,
    Embedding,
    Face,
    FaceMatches,
    FloatArray,
    Item,
    Neighbor,
    QueryResult,
    SaveResult,
    Stats,
)
from fsserver.admission import Alive, EmbedQueue, always_alive
from fsserver.collection.adding import Adder
from fsserver.collection.decisions import Rule
from fsserver.collection.lease import Leases
from fsserver.collection.people import People, check_threshold
from fsserver.config import Config
from fsserver.contract import EmbeddingContract, deepface_threshold
from fsserver.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from fsserver.faces.embedder import Embedder, Faces
from fsserver.faces.models import FaceModel
from fsserver.faces.pool import EmbedPool
from fsserver.storage import validation
from fsserver.storage.backend import Hits, IndexBackend, StoreOptions
from fsserver.storage.heap import process_rss_bytes
from fsserver.storage.local import LocalStore
from fsserver.storage.sharding import check_not_sharded

log = logging.getLogger(__name__)

# Past this a query walks most of any graph this server could hold; brute force is cheaper.
MAX_EF = 100_000
# k when a request sets none (proto3's 0): what the Python client and fsclient ask for.
DEFAULT_K = 5


class Collection:
    """One named index: its store (local Voyager or Ray shards) in its own folder, its
    recall calibration and open-set rule, and the face model it shares with other
    collections of that model (None: raw vectors only).

    Calls hold a lease (`leased`, lease.py) while they use it, so a drop waits for them."""

    def __init__(self, name: str, config: Config, face: FaceModel | None = None) -> None:
        self.name = name
        self.config = config
        self.face = face
        self.embed_queue = face.queue if face is not None else EmbedQueue(config.max_embed_queue)
        self._pool = face.pool if face is not None else None
        self._store: IndexBackend | None = None
        self._people: People | None = None
        self.adder = Adder(self)  # the Add path (adding.py)
        self.leases = Leases(name)

    # ---- start-up --------------------------------------------------------------------

    def open(self) -> None:
        """Open the index backend: load the newest snapshot and replay the WAL."""
        data_dir = Path(self.config.data_dir)
        contract = self.contract()
        threshold = self.config.threshold
        if threshold is None:
            threshold = deepface_threshold(contract.model, contract.space)
        options = StoreOptions(
            m=self.config.m,
            ef_construction=self.config.ef_construction,
            ef=self.config.ef,
            target_recall=self.config.target_recall,
            compact_deleted_share=self.config.compact_deleted_share,
            checkpoint_wal_mb=self.config.checkpoint_wal_mb,
        )
        if self.config.backend == "ray":
            # Imported only here: the default server never imports Ray.
            from fsserver.shards.router import RayShards

            self._store = RayShards.open(data_dir, contract, options, self.config)
        else:
            check_not_sharded(data_dir)
            # The catalog holds the data directory's lock for every collection in it.
            self._store = LocalStore(data_dir, contract, options, lock=False)
        self._people = People(self, threshold)

    def close(self) -> None:
        """Stop the calibrators and close the index backend (the face model is the
        catalog's: other collections may share it)."""
        if self._people is not None:
            self._people.close()
        if self._store is not None:
            self._store.close()

    # ---- leases ----------------------------------------------------------------------

    @contextmanager
    def leased(self) -> Iterator[Collection]:
        """This collection, held for one call (NOT_FOUND once dropped)."""
        with self.leases.held():
            yield self

    def retire(self) -> None:
        """Refuse new calls, wait for those running, then close (a drop)."""
        self.leases.retire()
        self.close()

    def contract(self) -> EmbeddingContract:
        face_model = self._face_model
        if face_model is not None:
            model, detector, dim = face_model.model, face_model.detector, face_model.dim
            alignment = face_model.alignment  # "auto" already resolved by the face model
            detection = face_model.detection
        else:
            assert self.config.dim is not None, "a face server needs its embedder loaded"
            model, detector, dim, alignment = self.config.model, "", self.config.dim, ""
            detection = ""
        return EmbeddingContract.build(
            model=model,
            detector=detector,
            dim=dim,
            space=self.config.space,
            storage=self.config.storage,
            alignment=alignment,
            detection=detection,
        )

    @property
    def loaded(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> IndexBackend:
        if self._store is None:
            raise Unavailable("the server is still loading its model and index")
        return self._store

    def validate_vector(self, vector: FloatArray) -> FloatArray:
        """See validation.validate_vector."""
        return validation.validate_vector(self.store.contract, vector)

    def validate_matrix(self, matrix: FloatArray) -> FloatArray:
        """See validation.validate_matrix."""
        return validation.validate_matrix(self.store.contract, matrix)

    # ---- images ----------------------------------------------------------------------

    @property
    def _face_model(self) -> Embedder | EmbedPool | None:
        return self.face.loaded if self.face is not None else None

    @property
    def embed_pool(self) -> EmbedPool | None:
        """The face model's worker processes, if it runs in them."""
        return self._pool

    def faces_of(self, image: bytes) -> Faces:
        if self.face is None:
            raise FailedPrecondition(
                f"collection {self.name!r} holds raw vectors (dim {self.config.dim}, no face "
                "model): send vectors, not images"
            )
        return self.face.faces(image)

    def embed(self, image: bytes) -> Embedding:
        with self.embed_queue.admit(wait=False):
            faces = self.faces_of(image)
        if not faces:
            raise FailedPrecondition("no face was found in the image")
        face_model = self._face_model
        assert face_model is not None  # _faces refused a vector-only server
        return Embedding([f.face for f in faces], face_model.model, face_model.dim)

    # ---- add -------------------------------------------------------------------------

    def check_vector_model(self, vector_model: str) -> None:
        model = self.store.contract.model
        if vector_model and model and vector_model != model:
            raise FailedPrecondition(
                f"the vectors come from model {vector_model!r}; this index holds {model!r} "
                "embeddings, which are not comparable"
            )

    # ---- query -----------------------------------------------------------------------

    def query_rows(
        self,
        image: bytes | None,
        vector: FloatArray | None,
        id: int | None,
        vector_model: str,
        alive: Alive,
    ) -> tuple[FloatArray, list[Face] | None, float]:
        """The query rows (one per face of an image), the faces, and the embedding time."""
        if image is not None:
            with self.embed_queue.admit(wait=False):
                started = time.perf_counter()
                detected = self.faces_of(image)
                embed_seconds = time.perf_counter() - started
            if not alive():
                raise Cancelled("the client cancelled or its deadline passed")
            if not detected:
                raise FailedPrecondition("no face was found in the query image")
            faces = [d.face for d in detected]
            matrix = np.stack([self.validate_vector(f.embedding) for f in faces])
            return matrix, faces, embed_seconds
        if vector is not None:
            self.check_vector_model(vector_model)
            return self.validate_vector(vector)[None, :], None, 0.0
        if id is not None:
            return self.store.get(id).vector[None, :], None, 0.0
        raise InvalidArgument("a query needs an image, a vector or an id")

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
        threshold: float | None = None,
        alive: Alive = always_alive,
    ) -> QueryResult:
        store = self.store
        k = self._check_search(k, ef)
        limit = self._match_threshold(threshold)
        matrix, faces, embed_seconds = self.query_rows(image, vector, id, vector_model, alive)
        started = time.perf_counter()
        hits = store.search(matrix, k, ef, exact, with_metadata=True)
        search_seconds = time.perf_counter() - started
        results = [
            FaceMatches(face=faces[row] if faces else None, neighbors=_neighbors(hits, row, limit))
            for row in range(len(matrix))
        ]
        return QueryResult(
            results, search_seconds=search_seconds, embed_seconds=embed_seconds, threshold=limit
        )

    def _match_threshold(self, override: float | None) -> float | None:
        """Query's `match`: the override, else the open-set rule's distance threshold."""
        if override is not None:
            check_threshold(override)
            return override
        return self.decision_rule.threshold

    @property
    def people(self) -> People:
        """Identify, Verify and the people RPCs."""
        if self._people is None:
            raise Unavailable("the server is still loading its model and index")
        return self._people

    @property
    def decision_rule(self) -> Rule:
        return self.people.rule

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
        store = self.store
        k = self._check_search(k, ef)
        self.check_vector_model(vector_model)
        dim = store.contract.dim
        if vectors.size == 0 or vectors.size % dim:
            raise InvalidArgument(
                f"a batch of {vectors.size} values is not whole rows of this index's "
                f"dimension {dim}"
            )
        matrix = self.validate_matrix(vectors.reshape(-1, dim))
        started = time.perf_counter()
        hits = store.search(matrix, k, ef, exact, with_metadata)
        search_seconds = time.perf_counter() - started
        threshold = self.decision_rule.threshold
        distances = hits.distances
        matches = (
            distances <= threshold if threshold is not None else np.zeros(hits.ids.shape, bool)
        )
        return BatchResult(
            ids=hits.ids,
            distances=distances,
            labels=hits.labels,
            matches=matches,
            metadata=hits.metadata,
            search_seconds=search_seconds,
        )

    def _check_search(self, k: int, ef: int | None) -> int:
        """The k to search for (0: DEFAULT_K), or InvalidArgument."""
        k = k or DEFAULT_K
        if not 1 <= k <= self.config.max_k:
            raise InvalidArgument(f"k must be between 1 and {self.config.max_k} (--max-k), not {k}")
        if ef is not None and not 1 <= ef <= MAX_EF:
            raise InvalidArgument(f"ef must be between 1 and {MAX_EF}, not {ef}")
        return k

    # ---- the rest --------------------------------------------------------------------

    def get(self, id: int) -> Item:
        return self.store.get(id)

    def delete(self, ids: Sequence[int]) -> int:
        if not ids:
            raise InvalidArgument("delete needs at least one id")
        if len(ids) > self.config.max_batch_items:
            raise ResourceExhausted(
                f"a delete names {len(ids)} ids; the limit is {self.config.max_batch_items} "
                "(--max-batch-items)"
            )
        deleted = self.store.delete(ids)
        self.people.gallery_changed()
        return deleted

    @property
    def unsaved_changes(self) -> bool:
        return self._store is not None and self._store.unsaved_changes

    def save(self) -> SaveResult:
        """Write a snapshot and trim the WAL (in every shard, with the Ray backend); past
        the deleted share, a compaction starts in the background too."""
        return self.store.save()

    def compact(self, force: bool = False, wait: float | None = None) -> CompactResult:
        return self.store.compact(force, wait)

    def writing(self) -> AbstractContextManager[None]:
        """Held while an Add stream writes here: recall is not measured under its batches."""
        return self.store.writing()

    def info(self) -> CollectionInfo:
        """What ListCollections shows of it: its contract and size (read from stats)."""
        stats = self.stats()
        return CollectionInfo(
            name=self.name,
            model=stats.model,
            detector=stats.detector,
            alignment=stats.alignment,
            dim=stats.dim,
            space=stats.space,
            storage=stats.storage,
            m=self.config.m,
            ef_construction=self.config.ef_construction,
            count=stats.count,
            people=stats.people,
            memory_bytes=stats.memory_bytes,
        )

    def stats(self) -> Stats:
        store = self.store
        contract = store.contract
        rule = self.decision_rule
        return Stats(
            **asdict(store.stats()),  # count, deleted, ef, recall, WAL, memory: by name
            process_rss_bytes=process_rss_bytes(),
            collection=self.name,
            dim=contract.dim,
            space=contract.space,
            storage=contract.storage,
            model=contract.model,
            detector=contract.detector,
            alignment=contract.alignment,
            normalization=contract.normalization,
            threshold=rule.threshold or 0.0,
            decision=rule.public,
            embed_queue=self.embed_queue.depth,
            people=len(store.people()),
        )


def _neighbors(hits: Hits, row: int, threshold: float | None) -> list[Neighbor]:
    metadata = hits.metadata[row] if hits.metadata is not None else [""] * len(hits.ids[row])
    return [
        Neighbor(id, label, meta, distance, threshold is not None and distance <= threshold)
        for id, label, meta, distance in zip(
            hits.ids[row].tolist(),
            hits.labels[row],
            metadata,
            hits.distances[row].tolist(),
            strict=True,
        )
    ]
