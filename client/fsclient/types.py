"""The Python types of facesearch, shared by the client and the server.

Plain dataclasses and numpy arrays: nothing here knows about protobuf. `convert.py` is the
one module that maps these to and from the wire messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
T = TypeVar("T")


@dataclass(frozen=True)
class Box:
    """A face's box in pixels of the image as sent."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Face:
    box: Box | None
    confidence: float
    embedding: FloatArray


@dataclass(frozen=True)
class Embedding:
    """What Embed returns: every face in an image, largest first."""

    faces: list[Face]
    model: str
    dim: int


@dataclass(frozen=True)
class Neighbor:
    id: int
    label: str
    metadata: str
    distance: float
    match: bool


@dataclass(frozen=True)
class FaceMatches:
    """The neighbours of one query face (or of the one query vector)."""

    face: Face | None
    neighbors: list[Neighbor]


@dataclass(frozen=True)
class QueryResult:
    results: list[FaceMatches]
    search_seconds: float = 0.0
    embed_seconds: float = 0.0
    # What each Neighbor.match was decided by; None when nothing decides (a vector-only
    # server without --threshold), and then no match means anything.
    threshold: float | None = None


@dataclass(frozen=True)
class BatchResult:
    """The neighbours of many query vectors as arrays: [r, j] is neighbour j of row r.

    Every row has the same width `k`, which is less than asked only when the index holds
    fewer items. Distances and matches mean what they mean in `Neighbor`.
    """

    ids: npt.NDArray[np.uint64]  # rows x k
    distances: FloatArray  # rows x k, nearest first
    labels: list[list[str]]
    matches: npt.NDArray[np.bool_]  # rows x k
    metadata: list[list[str]] | None = None  # only when asked for
    search_seconds: float = 0.0

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def neighbors(self, row: int) -> list[Neighbor]:
        """Row `row` as Neighbor objects, as Query would return them."""
        metadata = self.metadata[row] if self.metadata is not None else [""] * self.k
        return [
            Neighbor(int(i), label, meta, float(d), bool(m))
            for i, label, meta, d, m in zip(
                self.ids[row],
                self.labels[row],
                metadata,
                self.distances[row],
                self.matches[row],
                strict=True,
            )
        ]


@dataclass(frozen=True)
class ItemError:
    code: int  # a grpc.StatusCode value number, e.g. 3 for INVALID_ARGUMENT
    message: str

    @property
    def code_name(self) -> str:
        import grpc

        for status in grpc.StatusCode:
            if status.value[0] == self.code:
                return str(status.name)
        return str(self.code)


@dataclass(frozen=True)
class RowOutcomes:
    """What became of a batch's packed rows, compactly: the id each was stored under (0
    when refused) and each refused row's error by its position (AddResponse.row_ids)."""

    ids: list[int]
    errors: dict[int, ItemError]

    def results(self) -> list[AddResult]:
        """One AddResult per row, as the unpacked answer gives them."""
        errors = self.errors
        return [
            AddResult(id=None, error=errors[i]) if i in errors else AddResult(id=id)
            for i, id in enumerate(self.ids)
        ]


@dataclass(frozen=True)
class AddResult:
    """The outcome of one enrolled item: its id, or its error."""

    id: int | None
    error: ItemError | None = None
    face: Face | None = None
    faces_found: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AddItem:
    """One item to enroll: exactly one of image (encoded bytes) or vector."""

    image: bytes | None = None
    vector: FloatArray | None = None
    label: str = ""
    id: int | None = None
    metadata: str = ""


@dataclass(frozen=True)
class VectorRows:
    """Raw vectors to enroll, packed one per row: the bulk path of Add.

    `labels`, `ids` and `metadata` are each empty or hold one entry per row; without ids
    the server assigns them.
    """

    vectors: FloatArray  # rows x dim
    labels: Sequence[str] = ()
    ids: Sequence[int] = ()
    metadata: Sequence[str] = ()


@dataclass(frozen=True)
class Item:
    id: int
    label: str
    metadata: str
    vector: FloatArray
    thumbnail: bytes = b""


@dataclass(frozen=True)
class SaveResult:
    snapshot: str
    count: int
    bytes: int
    seconds: float
    joined: bool = False  # one snapshot shared with Save calls that arrived together


@dataclass(frozen=True)
class Stats:
    count: int
    dim: int
    space: str
    storage: str
    model: str
    detector: str
    ef: int
    deleted: int = 0
    threshold: float = 0.0
    normalization: str = ""
    snapshot: str = ""
    wal_replayed: int = 0  # WAL records applied on top of the snapshot at start-up
    wal_dropped: int = 0  # records cut off a torn or corrupt WAL tail at start-up
    wal_bytes: int = 0
    embed_queue: int = 0  # image requests waiting for or using the face model
    target_recall: float = 0.0  # what the default ef is calibrated for; 0: calibration off
    estimated_recall: float = 0.0  # recall@10 measured at `ef`; 0 until measured
    recall_measured_at: int = 0  # the index's count when recall was last measured
    decision: DecisionRule | None = None  # the open-set rule in force
    people: int = 0  # distinct labels among the live items
    alignment: str = ""  # "dlib" | "deepface" | "" (vector-only)
    collection: str = ""  # which collection these are of
    memory_bytes: int = 0  # an estimate of the collection's index in memory
    process_rss_bytes: int = 0  # the server process's resident memory (all of it)


@dataclass(frozen=True)
class CompactResult:
    removed: int  # deleted items dropped from the graph
    count: int  # live items after
    seconds: float
    skipped: str = ""  # why nothing was rebuilt (too few deleted to pay off); "" if rebuilt
    joined: bool = False  # waited for a compaction already running and shares its result
    hold_seconds: float = 0.0  # the longest writers (and queries) waited on the swap
    running: bool = False  # still rebuilding at the caller's deadline; it goes on regardless


# ---- people ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A label (the person) and how many live items carry it."""

    label: str
    count: int


@dataclass(frozen=True)
class ItemSummary:
    """One stored item as listed: no vector, no thumbnail."""

    id: int
    label: str
    metadata: str


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the total it was cut from."""

    entries: list[T]
    total: int


# ---- decisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionRule:
    """How the server decides who a face is (see the proto's DecisionRule)."""

    source: str  # "calibrated" | "pair-threshold" | "none"
    reason: str = ""
    threshold: float = 0.0  # on the distance to the nearest person's nearest item
    margin: float = 0.0  # the next person must be at least this much farther
    pair_threshold: float = 0.0  # Verify: photo against photo
    person_threshold: float = 0.0  # Verify: photo against an enrolled person
    target_far: float = 0.0
    estimated_far: float = 0.0
    estimated_tar: float = 0.0
    people: int = 0  # the gallery it was measured on
    items: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Candidate:
    person: str
    distance: float  # to this person's nearest item
    similarity: float  # 0.5 at the decision threshold
    near: int  # this person's items within the threshold
    id: int  # this person's nearest item


@dataclass(frozen=True)
class Identification:
    """Who one face (or the query vector) is: a person, or unknown."""

    face: Face | None
    known: bool
    person: str  # "" when unknown
    distance: float  # to the nearest person (known or not); inf with nobody enrolled
    similarity: float  # > 0.5 exactly when known
    margin: float  # the next person's distance less the nearest's
    candidates: list[Candidate]


@dataclass(frozen=True)
class IdentifyResult:
    results: list[Identification]
    decision: DecisionRule
    search_seconds: float = 0.0
    embed_seconds: float = 0.0


@dataclass(frozen=True)
class VerifyResult:
    same: bool
    distance: float
    similarity: float
    threshold: float
    face: Face | None = None
    other_face: Face | None = None
    other_id: int | None = None  # the named person's nearest item


# ---- collections ---------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionSpec:
    """What CreateCollection asks for: a face `model` or a raw `dim` (exactly one); empty
    space/storage and zero m/ef_construction take the server's defaults."""

    name: str
    model: str = ""
    dim: int = 0
    space: str = ""
    storage: str = ""
    m: int = 0
    ef_construction: int = 0


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    model: str
    detector: str
    alignment: str
    dim: int
    space: str
    storage: str
    m: int
    ef_construction: int
    count: int = 0
    people: int = 0
    memory_bytes: int = 0
