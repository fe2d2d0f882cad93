"""The one place where facesearch's Python types meet the protobuf messages.

Both the client and the server convert through here, so a field added to the proto is
mapped once. Vectors cross as packed `repeated float`; decoding goes through
`np.array(..., dtype=float32)`, which reads the packed field in one pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from fsclient.types import (
    AddItem,
    AddResult,
    BatchResult,
    Box,
    Candidate,
    CollectionInfo,
    CollectionSpec,
    CompactResult,
    DecisionRule,
    Embedding,
    Face,
    FaceMatches,
    FloatArray,
    Identification,
    IdentifyResult,
    Item,
    ItemError,
    ItemSummary,
    Neighbor,
    Page,
    Person,
    QueryResult,
    RowOutcomes,
    SaveResult,
    Stats,
    VectorRows,
    VerifyResult,
)
from fsproto.facesearch.v1 import facesearch_pb2 as pb


def vector_to_pb(vector: FloatArray | Iterable[float]) -> pb.Vector:
    return pb.Vector(values=np.asarray(vector, dtype=np.float32).ravel().tolist())


def vector_from_pb(message: pb.Vector) -> FloatArray:
    return np.array(message.values, dtype=np.float32)


def box_to_pb(box: Box | None) -> pb.Box | None:
    if box is None:
        return None
    return pb.Box(x=box.x, y=box.y, width=box.width, height=box.height)


def box_from_pb(message: pb.Box) -> Box:
    return Box(x=message.x, y=message.y, width=message.width, height=message.height)


def face_to_pb(face: Face) -> pb.Face:
    return pb.Face(
        box=box_to_pb(face.box),
        confidence=face.confidence,
        embedding=vector_to_pb(face.embedding),
    )


def face_from_pb(message: pb.Face) -> Face:
    return Face(
        box=box_from_pb(message.box) if message.HasField("box") else None,
        confidence=message.confidence,
        embedding=vector_from_pb(message.embedding),
    )


def embedding_to_pb(embedding: Embedding) -> pb.EmbedResponse:
    return pb.EmbedResponse(
        faces=[face_to_pb(f) for f in embedding.faces], model=embedding.model, dim=embedding.dim
    )


def embedding_from_pb(message: pb.EmbedResponse) -> Embedding:
    return Embedding(
        faces=[face_from_pb(f) for f in message.faces], model=message.model, dim=message.dim
    )


def add_item_to_pb(item: AddItem) -> pb.AddItem:
    message = pb.AddItem(label=item.label, metadata=item.metadata)
    if item.image is not None:
        message.image = item.image
    elif item.vector is not None:
        message.vector.CopyFrom(vector_to_pb(item.vector))
    if item.id is not None:
        message.id = item.id
    return message


def add_item_from_pb(message: pb.AddItem) -> AddItem:
    kind = message.WhichOneof("data")
    return AddItem(
        image=message.image if kind == "image" else None,
        vector=vector_from_pb(message.vector) if kind == "vector" else None,
        label=message.label,
        id=message.id if message.HasField("id") else None,
        metadata=message.metadata,
    )


def vector_rows_to_pb(rows: VectorRows) -> pb.VectorRows:
    return pb.VectorRows(
        vectors=np.ascontiguousarray(rows.vectors, dtype="<f4").tobytes(),
        dim=rows.vectors.shape[1],
        labels=rows.labels,
        ids=rows.ids,
        metadata=rows.metadata,
    )


def batch_vectors_from_pb(message: pb.QueryBatchRequest) -> FloatArray:
    """QueryBatch's vectors as a flat float32 array (the server shapes it by its dim);
    ValueError for bytes that are not whole float32 values."""
    if len(message.vectors) % 4:
        raise ValueError(f"vectors holds {len(message.vectors)} bytes, not whole float32 values")
    return np.frombuffer(message.vectors, dtype="<f4").astype(np.float32)


def packed_dim(message: pb.VectorRows, index_dim: int = 0) -> int:
    """The rows' width: `dim`, or when unset the one a label/id/metadata column's row count
    gives, else `index_dim` (0: unknown)."""
    if message.dim:
        return message.dim
    counts = [len(c) for c in (message.labels, message.ids, message.metadata) if len(c)]
    size = len(message.vectors)
    if counts and size % (4 * counts[0]) == 0:
        return size // (4 * counts[0])
    return index_dim


def vector_rows_from_pb(message: pb.VectorRows, index_dim: int = 0) -> VectorRows:
    """Raises ValueError for bytes that are not whole rows of `dim` float32 values.

    An unset `dim` (proto3's 0: a client that forgot it) is taken from the data: the row
    count a label/id/metadata column gives, else `index_dim`, the only width the index
    takes. Rows of another width then fail one by one, and the stream goes on.
    """
    dim, size = packed_dim(message, index_dim), len(message.vectors)
    width = 4 * dim
    if not width or size % width:
        unset = "" if message.dim else " (dim unset: taken as the index's)"
        raise ValueError(
            f"rows hold {size} bytes, not whole rows of dim {dim}{unset} (4 bytes per value)"
        )
    return VectorRows(
        vectors=np.frombuffer(message.vectors, dtype="<f4").astype(np.float32).reshape(-1, dim),
        labels=list(message.labels),
        ids=list(message.ids),
        metadata=list(message.metadata),
    )


def item_error_to_pb(error: ItemError) -> pb.ItemError:
    return pb.ItemError(code=error.code, message=error.message)


def item_error_from_pb(message: pb.ItemError) -> ItemError:
    return ItemError(message.code, message.message)


def add_result_to_pb(result: AddResult) -> pb.AddResult:
    message = pb.AddResult(faces_found=result.faces_found)
    if result.error is not None:
        message.error.CopyFrom(item_error_to_pb(result.error))
    elif result.id is not None:
        message.id = result.id
    if result.face is not None:
        message.face.CopyFrom(face_to_pb(result.face))
    return message


def add_response_to_pb(items: list[AddResult], rows: RowOutcomes | None) -> pb.AddResponse:
    """The items' results one message each; the rows' packed (AddRequest.packed_answers)."""
    message = pb.AddResponse(results=[add_result_to_pb(r) for r in items])
    if rows is not None:
        message.row_ids.extend(rows.ids)
        for position, error in rows.errors.items():
            message.row_errors[position].CopyFrom(item_error_to_pb(error))
    return message


def add_response_from_pb(message: pb.AddResponse) -> list[AddResult]:
    """Every result of an AddResponse in request order, packed rows unpacked."""
    results = [add_result_from_pb(r) for r in message.results]
    if message.row_ids:
        errors = {p: item_error_from_pb(e) for p, e in message.row_errors.items()}
        results += RowOutcomes(list(message.row_ids), errors).results()
    return results


def add_result_from_pb(message: pb.AddResult) -> AddResult:
    outcome = message.WhichOneof("outcome")
    return AddResult(
        id=message.id if outcome == "id" else None,
        error=item_error_from_pb(message.error) if outcome == "error" else None,
        face=face_from_pb(message.face) if message.HasField("face") else None,
        faces_found=message.faces_found,
    )


def neighbor_to_pb(n: Neighbor) -> pb.Neighbor:
    return pb.Neighbor(
        id=n.id, label=n.label, metadata=n.metadata, distance=n.distance, match=n.match
    )


def neighbor_from_pb(message: pb.Neighbor) -> Neighbor:
    return Neighbor(
        id=message.id,
        label=message.label,
        metadata=message.metadata,
        distance=message.distance,
        match=message.match,
    )


def query_result_to_pb(result: QueryResult) -> pb.QueryResponse:
    return pb.QueryResponse(
        results=[
            pb.FaceMatches(
                face=face_to_pb(r.face) if r.face is not None else None,
                neighbors=[neighbor_to_pb(n) for n in r.neighbors],
            )
            for r in result.results
        ],
        search_seconds=result.search_seconds,
        embed_seconds=result.embed_seconds,
        threshold=result.threshold,
    )


def query_result_from_pb(message: pb.QueryResponse) -> QueryResult:
    return QueryResult(
        results=[
            FaceMatches(
                face=face_from_pb(r.face) if r.HasField("face") else None,
                neighbors=[neighbor_from_pb(n) for n in r.neighbors],
            )
            for r in message.results
        ],
        search_seconds=message.search_seconds,
        embed_seconds=message.embed_seconds,
        threshold=message.threshold if message.HasField("threshold") else None,
    )


def batch_result_to_pb(result: BatchResult) -> pb.QueryBatchResponse:
    rows, k = result.ids.shape
    message = pb.QueryBatchResponse(rows=rows, k=k, search_seconds=result.search_seconds)
    # extend() from lists is the fast path into repeated fields (numpy scalars are slow).
    message.ids.extend(result.ids.ravel().tolist())
    message.distances.extend(result.distances.ravel().tolist())
    message.labels.extend(label for row in result.labels for label in row)
    message.matches.extend(result.matches.ravel().tolist())
    if result.metadata is not None:
        message.metadata.extend(text for row in result.metadata for text in row)
    return message


def batch_result_from_pb(message: pb.QueryBatchResponse) -> BatchResult:
    rows, k = message.rows, message.k

    def table(values: Iterable[str]) -> list[list[str]]:
        flat = list(values)
        return [flat[r * k : (r + 1) * k] for r in range(rows)]

    return BatchResult(
        ids=np.array(message.ids, dtype=np.uint64).reshape(rows, k),
        distances=np.array(message.distances, dtype=np.float32).reshape(rows, k),
        labels=table(message.labels),
        matches=np.array(message.matches, dtype=bool).reshape(rows, k),
        metadata=table(message.metadata) if len(message.metadata) else None,
        search_seconds=message.search_seconds,
    )


def item_to_pb(item: Item) -> pb.Item:
    return pb.Item(
        id=item.id,
        label=item.label,
        metadata=item.metadata,
        vector=vector_to_pb(item.vector),
        thumbnail=item.thumbnail,
    )


def item_from_pb(message: pb.Item) -> Item:
    return Item(
        id=message.id,
        label=message.label,
        metadata=message.metadata,
        vector=vector_from_pb(message.vector),
        thumbnail=message.thumbnail,
    )


_SAVE_FIELDS = [f.name for f in dataclasses.fields(SaveResult)]


def save_result_to_pb(result: SaveResult) -> pb.SaveResponse:
    return pb.SaveResponse(**{name: getattr(result, name) for name in _SAVE_FIELDS})


def save_result_from_pb(message: pb.SaveResponse) -> SaveResult:
    return SaveResult(**{name: getattr(message, name) for name in _SAVE_FIELDS})


# Every scalar field of Stats, converted by name: a new field is its proto field and its
# dataclass field, nothing here.
_STATS_FIELDS = [f.name for f in dataclasses.fields(Stats) if f.name != "decision"]


def stats_to_pb(stats: Stats) -> pb.StatsResponse:
    message = pb.StatsResponse(**{name: getattr(stats, name) for name in _STATS_FIELDS})
    if stats.decision is not None:
        message.decision.CopyFrom(decision_to_pb(stats.decision))
    return message


def stats_from_pb(message: pb.StatsResponse) -> Stats:
    return Stats(
        **{name: getattr(message, name) for name in _STATS_FIELDS},
        decision=decision_from_pb(message.decision) if message.HasField("decision") else None,
    )


_COMPACT_FIELDS = [f.name for f in dataclasses.fields(CompactResult)]


def compact_result_to_pb(result: CompactResult) -> pb.CompactResponse:
    return pb.CompactResponse(**{name: getattr(result, name) for name in _COMPACT_FIELDS})


def compact_result_from_pb(message: pb.CompactResponse) -> CompactResult:
    return CompactResult(**{name: getattr(message, name) for name in _COMPACT_FIELDS})


# ---- people ------------------------------------------------------------------------------


def people_page_to_pb(page: Page[Person], next_token: str) -> pb.ListPeopleResponse:
    return pb.ListPeopleResponse(
        people=[pb.Person(label=p.label, count=p.count) for p in page.entries],
        next_page_token=next_token,
        total=page.total,
    )


def people_page_from_pb(message: pb.ListPeopleResponse) -> tuple[Page[Person], str]:
    people = [Person(p.label, p.count) for p in message.people]
    return Page(people, message.total), message.next_page_token


def items_page_to_pb(page: Page[ItemSummary], next_token: str) -> pb.ListItemsResponse:
    return pb.ListItemsResponse(
        items=[pb.ItemSummary(id=i.id, label=i.label, metadata=i.metadata) for i in page.entries],
        next_page_token=next_token,
        total=page.total,
    )


def items_page_from_pb(message: pb.ListItemsResponse) -> tuple[Page[ItemSummary], str]:
    items = [ItemSummary(i.id, i.label, i.metadata) for i in message.items]
    return Page(items, message.total), message.next_page_token


# ---- decisions ---------------------------------------------------------------------------

_RULE_FIELDS = [f.name for f in dataclasses.fields(DecisionRule)]


def decision_to_pb(rule: DecisionRule) -> pb.DecisionRule:
    return pb.DecisionRule(**{name: getattr(rule, name) for name in _RULE_FIELDS})


def decision_from_pb(message: pb.DecisionRule) -> DecisionRule:
    return DecisionRule(**{name: getattr(message, name) for name in _RULE_FIELDS})


def candidate_to_pb(c: Candidate) -> pb.Candidate:
    return pb.Candidate(
        person=c.person, distance=c.distance, similarity=c.similarity, near=c.near, id=c.id
    )


def candidate_from_pb(m: pb.Candidate) -> Candidate:
    return Candidate(m.person, m.distance, m.similarity, m.near, m.id)


def identify_result_to_pb(result: IdentifyResult) -> pb.IdentifyResponse:
    return pb.IdentifyResponse(
        results=[
            pb.Identification(
                face=face_to_pb(r.face) if r.face is not None else None,
                known=r.known,
                person=r.person,
                distance=r.distance,
                similarity=r.similarity,
                margin=r.margin,
                candidates=[candidate_to_pb(c) for c in r.candidates],
            )
            for r in result.results
        ],
        search_seconds=result.search_seconds,
        embed_seconds=result.embed_seconds,
        decision=decision_to_pb(result.decision),
    )


def identify_result_from_pb(message: pb.IdentifyResponse) -> IdentifyResult:
    return IdentifyResult(
        results=[
            Identification(
                face=face_from_pb(r.face) if r.HasField("face") else None,
                known=r.known,
                person=r.person,
                distance=r.distance,
                similarity=r.similarity,
                margin=r.margin,
                candidates=[candidate_from_pb(c) for c in r.candidates],
            )
            for r in message.results
        ],
        decision=decision_from_pb(message.decision),
        search_seconds=message.search_seconds,
        embed_seconds=message.embed_seconds,
    )


def verify_result_to_pb(result: VerifyResult) -> pb.VerifyResponse:
    return pb.VerifyResponse(
        same=result.same,
        distance=result.distance,
        similarity=result.similarity,
        threshold=result.threshold,
        face=face_to_pb(result.face) if result.face is not None else None,
        other_face=face_to_pb(result.other_face) if result.other_face is not None else None,
        other_id=result.other_id,
    )


def verify_result_from_pb(message: pb.VerifyResponse) -> VerifyResult:
    return VerifyResult(
        same=message.same,
        distance=message.distance,
        similarity=message.similarity,
        threshold=message.threshold,
        face=face_from_pb(message.face) if message.HasField("face") else None,
        other_face=face_from_pb(message.other_face) if message.HasField("other_face") else None,
        other_id=message.other_id if message.HasField("other_id") else None,
    )


# ---- collections -------------------------------------------------------------------------
# Field names match the messages', so these convert by name.


def collection_spec_to_pb(spec: CollectionSpec) -> pb.CreateCollectionRequest:
    return pb.CreateCollectionRequest(**dataclasses.asdict(spec))


def collection_spec_from_pb(message: pb.CreateCollectionRequest) -> CollectionSpec:
    return CollectionSpec(
        **{f.name: getattr(message, f.name) for f in dataclasses.fields(CollectionSpec)}
    )


def collection_info_to_pb(info: CollectionInfo) -> pb.CollectionInfo:
    return pb.CollectionInfo(**dataclasses.asdict(info))


def collection_info_from_pb(message: pb.CollectionInfo) -> CollectionInfo:
    return CollectionInfo(
        **{f.name: getattr(message, f.name) for f in dataclasses.fields(CollectionInfo)}
    )
