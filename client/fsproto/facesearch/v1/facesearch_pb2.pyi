from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "confidence", "embedding")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    box: Box
    confidence: float
    embedding: Vector
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., confidence: _Optional[float] = ..., embedding: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    def __init__(self, image: _Optional[bytes] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("faces", "model", "dim")
    FACES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    model: str
    dim: int
    def __init__(self, faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., model: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...

class AddItem(_message.Message):
    __slots__ = ("image", "vector", "label", "id", "metadata")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    vector: Vector
    label: str
    id: int
    metadata: str
    def __init__(self, image: _Optional[bytes] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., label: _Optional[str] = ..., id: _Optional[int] = ..., metadata: _Optional[str] = ...) -> None: ...

class AddRequest(_message.Message):
    __slots__ = ("items", "vector_model", "rows", "packed_answers", "collection")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    VECTOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    PACKED_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[AddItem]
    vector_model: str
    rows: VectorRows
    packed_answers: bool
    collection: str
    def __init__(self, items: _Optional[_Iterable[_Union[AddItem, _Mapping]]] = ..., vector_model: _Optional[str] = ..., rows: _Optional[_Union[VectorRows, _Mapping]] = ..., packed_answers: _Optional[bool] = ..., collection: _Optional[str] = ...) -> None: ...

class VectorRows(_message.Message):
    __slots__ = ("vectors", "dim", "labels", "ids", "metadata")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    vectors: bytes
    dim: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    ids: _containers.RepeatedScalarFieldContainer[int]
    metadata: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, vectors: _Optional[bytes] = ..., dim: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., ids: _Optional[_Iterable[int]] = ..., metadata: _Optional[_Iterable[str]] = ...) -> None: ...

class AddResult(_message.Message):
    __slots__ = ("id", "error", "face", "faces_found")
    ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    FACES_FOUND_FIELD_NUMBER: _ClassVar[int]
    id: int
    error: ItemError
    face: Face
    faces_found: int
    def __init__(self, id: _Optional[int] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ..., face: _Optional[_Union[Face, _Mapping]] = ..., faces_found: _Optional[int] = ...) -> None: ...

class AddResponse(_message.Message):
    __slots__ = ("results", "row_ids", "row_errors")
    class RowErrorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: ItemError
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ROW_IDS_FIELD_NUMBER: _ClassVar[int]
    ROW_ERRORS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AddResult]
    row_ids: _containers.RepeatedScalarFieldContainer[int]
    row_errors: _containers.MessageMap[int, ItemError]
    def __init__(self, results: _Optional[_Iterable[_Union[AddResult, _Mapping]]] = ..., row_ids: _Optional[_Iterable[int]] = ..., row_errors: _Optional[_Mapping[int, ItemError]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("image", "vector", "id", "k", "ef", "vector_model", "exact", "threshold", "collection")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    VECTOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    vector: Vector
    id: int
    k: int
    ef: int
    vector_model: str
    exact: bool
    threshold: float
    collection: str
    def __init__(self, image: _Optional[bytes] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., id: _Optional[int] = ..., k: _Optional[int] = ..., ef: _Optional[int] = ..., vector_model: _Optional[str] = ..., exact: _Optional[bool] = ..., threshold: _Optional[float] = ..., collection: _Optional[str] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("id", "label", "metadata", "distance", "match")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    metadata: str
    distance: float
    match: bool
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., metadata: _Optional[str] = ..., distance: _Optional[float] = ..., match: _Optional[bool] = ...) -> None: ...

class FaceMatches(_message.Message):
    __slots__ = ("face", "neighbors")
    FACE_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    face: Face
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, face: _Optional[_Union[Face, _Mapping]] = ..., neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("results", "search_seconds", "embed_seconds", "threshold")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EMBED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[FaceMatches]
    search_seconds: float
    embed_seconds: float
    threshold: float
    def __init__(self, results: _Optional[_Iterable[_Union[FaceMatches, _Mapping]]] = ..., search_seconds: _Optional[float] = ..., embed_seconds: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class QueryBatchRequest(_message.Message):
    __slots__ = ("vectors", "k", "ef", "vector_model", "exact", "with_metadata", "collection")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    VECTOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    WITH_METADATA_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    vectors: bytes
    k: int
    ef: int
    vector_model: str
    exact: bool
    with_metadata: bool
    collection: str
    def __init__(self, vectors: _Optional[bytes] = ..., k: _Optional[int] = ..., ef: _Optional[int] = ..., vector_model: _Optional[str] = ..., exact: _Optional[bool] = ..., with_metadata: _Optional[bool] = ..., collection: _Optional[str] = ...) -> None: ...

class QueryBatchResponse(_message.Message):
    __slots__ = ("rows", "k", "ids", "distances", "labels", "matches", "metadata", "search_seconds")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    DISTANCES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    k: int
    ids: _containers.RepeatedScalarFieldContainer[int]
    distances: _containers.RepeatedScalarFieldContainer[float]
    labels: _containers.RepeatedScalarFieldContainer[str]
    matches: _containers.RepeatedScalarFieldContainer[bool]
    metadata: _containers.RepeatedScalarFieldContainer[str]
    search_seconds: float
    def __init__(self, rows: _Optional[int] = ..., k: _Optional[int] = ..., ids: _Optional[_Iterable[int]] = ..., distances: _Optional[_Iterable[float]] = ..., labels: _Optional[_Iterable[str]] = ..., matches: _Optional[_Iterable[bool]] = ..., metadata: _Optional[_Iterable[str]] = ..., search_seconds: _Optional[float] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ids", "collection")
    IDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    collection: str
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., collection: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id", "collection")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    collection: str
    def __init__(self, id: _Optional[int] = ..., collection: _Optional[str] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("id", "label", "metadata", "vector", "thumbnail")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    metadata: str
    vector: Vector
    thumbnail: bytes
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., metadata: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., thumbnail: _Optional[bytes] = ...) -> None: ...

class SaveRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class SaveResponse(_message.Message):
    __slots__ = ("snapshot", "count", "bytes", "seconds", "joined")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    snapshot: str
    count: int
    bytes: int
    seconds: float
    joined: bool
    def __init__(self, snapshot: _Optional[str] = ..., count: _Optional[int] = ..., bytes: _Optional[int] = ..., seconds: _Optional[float] = ..., joined: _Optional[bool] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("count", "dim", "space", "storage", "model", "detector", "ef", "deleted", "threshold", "normalization", "snapshot", "wal_replayed", "wal_dropped", "wal_bytes", "embed_queue", "target_recall", "estimated_recall", "recall_measured_at", "decision", "people", "alignment", "collection", "memory_bytes", "process_rss_bytes")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NORMALIZATION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    WAL_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    WAL_DROPPED_FIELD_NUMBER: _ClassVar[int]
    WAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    EMBED_QUEUE_FIELD_NUMBER: _ClassVar[int]
    TARGET_RECALL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_RECALL_FIELD_NUMBER: _ClassVar[int]
    RECALL_MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROCESS_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    count: int
    dim: int
    space: str
    storage: str
    model: str
    detector: str
    ef: int
    deleted: int
    threshold: float
    normalization: str
    snapshot: str
    wal_replayed: int
    wal_dropped: int
    wal_bytes: int
    embed_queue: int
    target_recall: float
    estimated_recall: float
    recall_measured_at: int
    decision: DecisionRule
    people: int
    alignment: str
    collection: str
    memory_bytes: int
    process_rss_bytes: int
    def __init__(self, count: _Optional[int] = ..., dim: _Optional[int] = ..., space: _Optional[str] = ..., storage: _Optional[str] = ..., model: _Optional[str] = ..., detector: _Optional[str] = ..., ef: _Optional[int] = ..., deleted: _Optional[int] = ..., threshold: _Optional[float] = ..., normalization: _Optional[str] = ..., snapshot: _Optional[str] = ..., wal_replayed: _Optional[int] = ..., wal_dropped: _Optional[int] = ..., wal_bytes: _Optional[int] = ..., embed_queue: _Optional[int] = ..., target_recall: _Optional[float] = ..., estimated_recall: _Optional[float] = ..., recall_measured_at: _Optional[int] = ..., decision: _Optional[_Union[DecisionRule, _Mapping]] = ..., people: _Optional[int] = ..., alignment: _Optional[str] = ..., collection: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., process_rss_bytes: _Optional[int] = ...) -> None: ...

class DecisionRule(_message.Message):
    __slots__ = ("source", "reason", "threshold", "margin", "pair_threshold", "person_threshold", "target_far", "estimated_far", "estimated_tar", "people", "items", "seconds")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    PAIR_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PERSON_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FAR_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FAR_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_TAR_FIELD_NUMBER: _ClassVar[int]
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    source: str
    reason: str
    threshold: float
    margin: float
    pair_threshold: float
    person_threshold: float
    target_far: float
    estimated_far: float
    estimated_tar: float
    people: int
    items: int
    seconds: float
    def __init__(self, source: _Optional[str] = ..., reason: _Optional[str] = ..., threshold: _Optional[float] = ..., margin: _Optional[float] = ..., pair_threshold: _Optional[float] = ..., person_threshold: _Optional[float] = ..., target_far: _Optional[float] = ..., estimated_far: _Optional[float] = ..., estimated_tar: _Optional[float] = ..., people: _Optional[int] = ..., items: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("force", "collection")
    FORCE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    force: bool
    collection: str
    def __init__(self, force: _Optional[bool] = ..., collection: _Optional[str] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("removed", "count", "seconds", "skipped", "joined", "hold_seconds", "running")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    HOLD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    removed: int
    count: int
    seconds: float
    skipped: str
    joined: bool
    hold_seconds: float
    running: bool
    def __init__(self, removed: _Optional[int] = ..., count: _Optional[int] = ..., seconds: _Optional[float] = ..., skipped: _Optional[str] = ..., joined: _Optional[bool] = ..., hold_seconds: _Optional[float] = ..., running: _Optional[bool] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("label", "count")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    label: str
    count: int
    def __init__(self, label: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ListPeopleRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "collection")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    collection: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ListPeopleResponse(_message.Message):
    __slots__ = ("people", "next_page_token", "total")
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    people: _containers.RepeatedCompositeFieldContainer[Person]
    next_page_token: str
    total: int
    def __init__(self, people: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class ListItemsRequest(_message.Message):
    __slots__ = ("label", "page_size", "page_token", "collection")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    label: str
    page_size: int
    page_token: str
    collection: str
    def __init__(self, label: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ItemSummary(_message.Message):
    __slots__ = ("id", "label", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    metadata: str
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., metadata: _Optional[str] = ...) -> None: ...

class ListItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token", "total")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ItemSummary]
    next_page_token: str
    total: int
    def __init__(self, items: _Optional[_Iterable[_Union[ItemSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class ForgetPersonRequest(_message.Message):
    __slots__ = ("label", "collection")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    label: str
    collection: str
    def __init__(self, label: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ForgetPersonResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class RenamePersonRequest(_message.Message):
    __slots__ = ("old_label", "new_label", "collection")
    OLD_LABEL_FIELD_NUMBER: _ClassVar[int]
    NEW_LABEL_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    old_label: str
    new_label: str
    collection: str
    def __init__(self, old_label: _Optional[str] = ..., new_label: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class RenamePersonResponse(_message.Message):
    __slots__ = ("renamed", "merged")
    RENAMED_FIELD_NUMBER: _ClassVar[int]
    MERGED_FIELD_NUMBER: _ClassVar[int]
    renamed: int
    merged: bool
    def __init__(self, renamed: _Optional[int] = ..., merged: _Optional[bool] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("image", "vector", "candidates", "threshold", "vector_model", "collection")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VECTOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    vector: Vector
    candidates: int
    threshold: float
    vector_model: str
    collection: str
    def __init__(self, image: _Optional[bytes] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., candidates: _Optional[int] = ..., threshold: _Optional[float] = ..., vector_model: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("person", "distance", "similarity", "near", "id")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    NEAR_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    person: str
    distance: float
    similarity: float
    near: int
    id: int
    def __init__(self, person: _Optional[str] = ..., distance: _Optional[float] = ..., similarity: _Optional[float] = ..., near: _Optional[int] = ..., id: _Optional[int] = ...) -> None: ...

class Identification(_message.Message):
    __slots__ = ("face", "known", "person", "distance", "similarity", "margin", "candidates")
    FACE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    face: Face
    known: bool
    person: str
    distance: float
    similarity: float
    margin: float
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    def __init__(self, face: _Optional[_Union[Face, _Mapping]] = ..., known: _Optional[bool] = ..., person: _Optional[str] = ..., distance: _Optional[float] = ..., similarity: _Optional[float] = ..., margin: _Optional[float] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("results", "search_seconds", "embed_seconds", "decision")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EMBED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Identification]
    search_seconds: float
    embed_seconds: float
    decision: DecisionRule
    def __init__(self, results: _Optional[_Iterable[_Union[Identification, _Mapping]]] = ..., search_seconds: _Optional[float] = ..., embed_seconds: _Optional[float] = ..., decision: _Optional[_Union[DecisionRule, _Mapping]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("image", "other_image", "person", "threshold", "collection")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OTHER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    other_image: bytes
    person: str
    threshold: float
    collection: str
    def __init__(self, image: _Optional[bytes] = ..., other_image: _Optional[bytes] = ..., person: _Optional[str] = ..., threshold: _Optional[float] = ..., collection: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("same", "distance", "similarity", "threshold", "face", "other_face", "other_id")
    SAME_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    OTHER_FACE_FIELD_NUMBER: _ClassVar[int]
    OTHER_ID_FIELD_NUMBER: _ClassVar[int]
    same: bool
    distance: float
    similarity: float
    threshold: float
    face: Face
    other_face: Face
    other_id: int
    def __init__(self, same: _Optional[bool] = ..., distance: _Optional[float] = ..., similarity: _Optional[float] = ..., threshold: _Optional[float] = ..., face: _Optional[_Union[Face, _Mapping]] = ..., other_face: _Optional[_Union[Face, _Mapping]] = ..., other_id: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "model", "dim", "space", "storage", "m", "ef_construction")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    dim: int
    space: str
    storage: str
    m: int
    ef_construction: int
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., dim: _Optional[int] = ..., space: _Optional[str] = ..., storage: _Optional[str] = ..., m: _Optional[int] = ..., ef_construction: _Optional[int] = ...) -> None: ...

class CollectionInfo(_message.Message):
    __slots__ = ("name", "model", "detector", "alignment", "dim", "space", "storage", "m", "ef_construction", "count", "people", "memory_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    PEOPLE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    detector: str
    alignment: str
    dim: int
    space: str
    storage: str
    m: int
    ef_construction: int
    count: int
    people: int
    memory_bytes: int
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., detector: _Optional[str] = ..., alignment: _Optional[str] = ..., dim: _Optional[int] = ..., space: _Optional[str] = ..., storage: _Optional[str] = ..., m: _Optional[int] = ..., ef_construction: _Optional[int] = ..., count: _Optional[int] = ..., people: _Optional[int] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[CollectionInfo]
    def __init__(self, collections: _Optional[_Iterable[_Union[CollectionInfo, _Mapping]]] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: int
    def __init__(self, items: _Optional[int] = ...) -> None: ...
