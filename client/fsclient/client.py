"""FaceSearchClient: Python types in, Python types out.

Thin by design: grpcio, protobuf and numpy only. Images are read from local files (or taken
as bytes) and sent as bytes; the client never hands the server a path or a URL.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc
import numpy as np
import numpy.typing as npt

from fsclient import convert
from fsclient.connection import PemSource, Security, with_default_port
from fsclient.types import (
    AddItem,
    AddResult,
    BatchResult,
    CollectionInfo,
    CollectionSpec,
    CompactResult,
    Embedding,
    IdentifyResult,
    Item,
    ItemSummary,
    Page,
    Person,
    QueryResult,
    SaveResult,
    Stats,
    VectorRows,
    VerifyResult,
)
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc

DEFAULT_SERVER = "127.0.0.1:50051"
# Photos straight off a phone run to 10+ MB; the server's default limit matches.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

ImageSource = str | os.PathLike[str] | bytes
T = TypeVar("T")
R = TypeVar("R")


class FaceSearchError(Exception):
    """A failed call: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(
        cls, error: grpc.RpcError, target: str, security: Security | None = None
    ) -> FaceSearchError:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
        if code == grpc.StatusCode.UNAVAILABLE:
            hint = (security or Security()).explain_unavailable(details)
            hint = f": {hint}" if hint else ""
            details = f"cannot reach the facesearch server at {target}{hint} ({details})"
        return cls(code, details)


def read_image(image: ImageSource) -> bytes:
    """Bytes of an image given as bytes or a local file path."""
    if isinstance(image, bytes):
        return image
    return Path(image).read_bytes()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class FaceSearchClient:
    """A connection to one facesearch server.

    >>> with FaceSearchClient("127.0.0.1:50051") as client:
    ...     client.add_images(["alice.jpg"], labels=["alice"])
    ...     client.query(image="unknown.jpg", k=3)

    Over TLS, and with a token when the server asks for one (--auth-token-file):

    >>> FaceSearchClient("search.internal:50051", tls_ca="ca.pem", token="s3cret")

    `tls_ca`: the CA that signed the server's certificate (a PEM file path or PEM bytes);
    giving it turns TLS on. `tls=True` turns TLS on trusting the system's roots instead.
    `tls_cert`/`tls_key`: this client's certificate and key, for a server that requires
    one (mutual TLS). `token`: sent as `authorization: Bearer <token>` on every call.
    Each falls back to $FSCLIENT_TLS_CA, $FSCLIENT_TLS_CERT, $FSCLIENT_TLS_KEY and
    $FSCLIENT_TOKEN (`tls=False` or `token=""` opt out); see fsclient.connection.
    Unusable files or tokens raise ConnectionSetupError (a ValueError) here, at once.

    `collection`: the collection every data call works on (default: $FSCLIENT_COLLECTION,
    else the server's "default"). `client.collection("name")` is another view of the same
    connection on another collection:

    >>> cameras = client.collection("front-door")
    >>> cameras.identify("visitor.jpg")
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        tls: bool | None = None,
        tls_ca: PemSource | None = None,
        tls_cert: PemSource | None = None,
        tls_key: PemSource | None = None,
        token: str | None = None,
        collection: str | None = None,
    ) -> None:
        self.target = with_default_port(
            target or os.environ.get("FSCLIENT_SERVER") or DEFAULT_SERVER
        )
        # Every data call goes to this collection ("" is the server's default).
        self.collection_name = (
            collection if collection is not None else os.environ.get("FSCLIENT_COLLECTION", "")
        )
        self.timeout = timeout
        self._security = Security.resolve(
            tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, token=token
        )
        # Set only on a plaintext channel with a token: TLS channels carry it themselves.
        self._metadata = self._security.call_metadata
        self._channel = self._security.channel(
            self.target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._stub = pb_grpc.FaceSearchStub(self._channel)

    def __enter__(self) -> FaceSearchClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects; FaceSearchError(UNAVAILABLE) after timeout."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise FaceSearchError(
                grpc.StatusCode.UNAVAILABLE,
                f"cannot reach the facesearch server at {self.target} (waited {timeout:g}s)",
            ) from None

    def collection(self, name: str) -> FaceSearchClient:
        """This connection, working on collection `name` (closing either closes both)."""
        view = copy.copy(self)
        view.collection_name = name
        return view

    def _call(self, method: Callable[..., T], request: object) -> T:
        _address(request, self.collection_name)
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise FaceSearchError.from_rpc_error(error, self.target, self._security) from None

    # ---- the RPCs ------------------------------------------------------------------------

    def embed(self, image: ImageSource) -> Embedding:
        """Every face in the image with its embedding, largest first."""
        response = self._call(self._stub.Embed, pb.EmbedRequest(image=read_image(image)))
        return convert.embedding_from_pb(response)

    def add(
        self,
        items: Iterable[AddItem],
        *,
        batch_size: int = 64,
        vector_model: str = "",
    ) -> Iterator[list[AddResult]]:
        """Stream items to the server; yield each batch's outcomes as the server stores it.

        Items are read lazily, so a generator of a million vectors never sits in memory at
        once. Each yielded list lines up with the batch of `batch_size` items it answers.
        """
        requests = (
            pb.AddRequest(
                items=[convert.add_item_to_pb(i) for i in batch], vector_model=vector_model
            )
            for batch in batched(items, batch_size)
        )
        return self._add_stream(requests)

    def _add_stream(self, requests: Iterator[pb.AddRequest]) -> Iterator[list[AddResult]]:
        requests = (_address(request, self.collection_name) for request in requests)
        try:
            for response in self._stub.Add(requests, timeout=self.timeout, metadata=self._metadata):
                yield convert.add_response_from_pb(response)
        except grpc.RpcError as error:
            raise FaceSearchError.from_rpc_error(error, self.target, self._security) from None

    def add_images(
        self,
        images: Sequence[ImageSource],
        *,
        labels: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        metadata: Sequence[str] | None = None,
        batch_size: int = 8,
    ) -> list[AddResult]:
        """Enroll the largest face of each image; one AddResult per image, in order.

        Files are read as the stream needs them; a missing one raises FileNotFoundError
        before anything is sent.
        """
        missing = [str(i) for i in images if not isinstance(i, bytes) and not Path(i).is_file()]
        if missing:
            raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
        items = (
            AddItem(
                image=read_image(image),
                label=labels[i] if labels is not None else "",
                id=ids[i] if ids is not None else None,
                metadata=metadata[i] if metadata is not None else "",
            )
            for i, image in enumerate(images)
        )
        return [r for batch in self.add(items, batch_size=batch_size) for r in batch]

    def add_vectors(
        self,
        vectors: npt.ArrayLike,
        *,
        labels: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        metadata: Sequence[str] | None = None,
        batch_size: int = 1000,
        vector_model: str = "",
    ) -> list[AddResult]:
        """Enroll raw vectors (one per row); one AddResult per row, in order."""
        return [
            r
            for batch in self.add_vector_batches(
                vectors,
                labels=labels,
                ids=ids,
                metadata=metadata,
                batch_size=batch_size,
                vector_model=vector_model,
            )
            for r in batch
        ]

    def add_vector_batches(
        self,
        vectors: npt.ArrayLike,
        *,
        labels: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        metadata: Sequence[str] | None = None,
        batch_size: int = 1000,
        vector_model: str = "",
    ) -> Iterator[list[AddResult]]:
        """add_vectors, yielding each batch's results as the server stores it (for progress).

        Rows travel packed (`AddRequest.rows`): no per-vector message is built or parsed.
        """
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        for name, column in (("labels", labels), ("ids", ids), ("metadata", metadata)):
            if column is not None and len(column) != len(matrix):
                raise ValueError(f"{len(column)} {name} for {len(matrix)} vectors")

        def part(column: Sequence[T] | None, start: int) -> Sequence[T]:
            return column[start : start + batch_size] if column is not None else ()

        requests = (
            pb.AddRequest(
                vector_model=vector_model,
                packed_answers=True,
                rows=convert.vector_rows_to_pb(
                    VectorRows(
                        matrix[start : start + batch_size],
                        labels=part(labels, start),
                        ids=[int(i) for i in part(ids, start)],
                        metadata=part(metadata, start),
                    )
                ),
            )
            for start in range(0, len(matrix), batch_size)
        )
        return self._add_stream(requests)

    def query(
        self,
        *,
        image: ImageSource | None = None,
        vector: npt.ArrayLike | None = None,
        id: int | None = None,
        k: int = 5,
        ef: int | None = None,
        exact: bool = False,
        vector_model: str = "",
        threshold: float | None = None,
    ) -> QueryResult:
        """The k nearest neighbours of each face in `image`, of `vector`, or of item `id`.

        `ef` widens (or narrows) the HNSW search for this call; `exact` searches by brute
        force instead, for exact neighbours at a cost linear in the index size. `threshold`
        overrides the server's for each neighbour's `match`.
        """
        if sum(x is not None for x in (image, vector, id)) != 1:
            raise ValueError("query takes exactly one of image=, vector= or id=")
        request = pb.QueryRequest(k=k, vector_model=vector_model, exact=exact)
        if image is not None:
            request.image = read_image(image)
        elif vector is not None:
            request.vector.CopyFrom(convert.vector_to_pb(np.asarray(vector, dtype=np.float32)))
        else:
            request.id = int(id)  # type: ignore[arg-type]
        if ef is not None:
            request.ef = ef
        if threshold is not None:
            request.threshold = threshold
        return convert.query_result_from_pb(self._call(self._stub.Query, request))

    def query_batch(
        self,
        vectors: npt.ArrayLike,
        *,
        k: int = 5,
        ef: int | None = None,
        exact: bool = False,
        with_metadata: bool = False,
        vector_model: str = "",
    ) -> BatchResult:
        """The k nearest neighbours of every row of `vectors`, in one call."""
        matrix = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype="<f4")))
        request = pb.QueryBatchRequest(
            vectors=matrix.tobytes(),
            k=k,
            exact=exact,
            with_metadata=with_metadata,
            vector_model=vector_model,
        )
        if ef is not None:
            request.ef = ef
        return convert.batch_result_from_pb(self._call(self._stub.QueryBatch, request))

    def get(self, id: int) -> Item:
        return convert.item_from_pb(self._call(self._stub.Get, pb.GetRequest(id=id)))

    def delete(self, ids: Iterable[int]) -> int:
        """Delete items; all or nothing. Returns how many were deleted."""
        response = self._call(self._stub.Delete, pb.DeleteRequest(ids=list(ids)))
        return int(response.deleted)

    def save(self) -> SaveResult:
        return convert.save_result_from_pb(self._call(self._stub.Save, pb.SaveRequest()))

    def compact(self, force: bool = False) -> CompactResult:
        """Rebuild the index without deleted items (Save also starts one when many are
        deleted). Skipped, saying why in `skipped`, when too few are deleted to pay off,
        unless `force`; a call made while a compaction runs waits for it (`joined`)."""
        request = pb.CompactRequest(force=force)
        return convert.compact_result_from_pb(self._call(self._stub.Compact, request))

    def stats(self) -> Stats:
        return convert.stats_from_pb(self._call(self._stub.Stats, pb.StatsRequest()))

    # ---- people --------------------------------------------------------------------------

    def people(self, page_size: int = 0, page_token: str = "") -> tuple[Page[Person], str]:
        """One page of people (label and item count) by label, and the next page's token
        ("" on the last page)."""
        request = pb.ListPeopleRequest(page_size=page_size, page_token=page_token)
        return convert.people_page_from_pb(self._call(self._stub.ListPeople, request))

    def all_people(self) -> list[Person]:
        """Every person, following the pages."""
        return _every_page(self.people)

    def items(
        self, label: str | None = None, page_size: int = 0, page_token: str = ""
    ) -> tuple[Page[ItemSummary], str]:
        """One page of items (id, label, metadata) by id, only `label`'s when given."""
        request = pb.ListItemsRequest(page_size=page_size, page_token=page_token)
        if label is not None:
            request.label = label
        return convert.items_page_from_pb(self._call(self._stub.ListItems, request))

    def all_items(self, label: str | None = None) -> list[ItemSummary]:
        return _every_page(lambda size, token: self.items(label, size, token))

    def forget(self, label: str) -> int:
        """Delete every item of one person; durable on return. How many were deleted."""
        response = self._call(self._stub.ForgetPerson, pb.ForgetPersonRequest(label=label))
        return int(response.deleted)

    def rename(self, old: str, new: str) -> tuple[int, bool]:
        """Relabel a person's items (merging into `new` if it exists): (renamed, merged)."""
        request = pb.RenamePersonRequest(old_label=old, new_label=new)
        response = self._call(self._stub.RenamePerson, request)
        return int(response.renamed), bool(response.merged)

    # ---- decisions -----------------------------------------------------------------------

    def identify(
        self,
        *,
        image: ImageSource | None = None,
        vector: npt.ArrayLike | None = None,
        candidates: int = 3,
        threshold: float | None = None,
        vector_model: str = "",
    ) -> IdentifyResult:
        """Who each face in `image` (or `vector`) is: an enrolled person, or unknown."""
        if (image is None) == (vector is None):
            raise ValueError("identify takes exactly one of image= or vector=")
        request = pb.IdentifyRequest(candidates=candidates, vector_model=vector_model)
        if image is not None:
            request.image = read_image(image)
        else:
            request.vector.CopyFrom(convert.vector_to_pb(np.asarray(vector, dtype=np.float32)))
        if threshold is not None:
            request.threshold = threshold
        return convert.identify_result_from_pb(self._call(self._stub.Identify, request))

    def verify(
        self,
        image: ImageSource,
        other: ImageSource | None = None,
        *,
        person: str | None = None,
        threshold: float | None = None,
    ) -> VerifyResult:
        """Whether the largest face of `image` is the person in `other`, or `person`."""
        if (other is None) == (person is None):
            raise ValueError("verify takes exactly one of other (an image) or person=")
        request = pb.VerifyRequest(image=read_image(image))
        if other is not None:
            request.other_image = read_image(other)
        else:
            request.person = str(person)
        if threshold is not None:
            request.threshold = threshold
        return convert.verify_result_from_pb(self._call(self._stub.Verify, request))

    # ---- collections ---------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        *,
        model: str = "",
        dim: int = 0,
        space: str = "",
        storage: str = "",
        m: int = 0,
        ef_construction: int = 0,
    ) -> CollectionInfo:
        """A new collection: of faces embedded by `model`, or of raw vectors of `dim`."""
        spec = CollectionSpec(name, model, dim, space, storage, m, ef_construction)
        request = convert.collection_spec_to_pb(spec)
        return convert.collection_info_from_pb(self._call(self._stub.CreateCollection, request))

    def collections(self) -> list[CollectionInfo]:
        """Every collection, "default" first."""
        response = self._call(self._stub.ListCollections, pb.ListCollectionsRequest())
        return [convert.collection_info_from_pb(c) for c in response.collections]

    def drop_collection(self, name: str) -> int:
        """Delete a collection and everything in it; returns how many items it held."""
        request = pb.DropCollectionRequest(name=name)
        return self._call(self._stub.DropCollection, request).items


def _address(request: R, collection: str) -> R:
    """Name the collection on a data request (Embed and the collection RPCs have none)."""
    if collection and "collection" in type(request).DESCRIPTOR.fields_by_name:  # type: ignore[attr-defined]
        request.collection = collection  # type: ignore[attr-defined]
    return request


def _every_page(fetch: Callable[[int, str], tuple[Page[T], str]]) -> list[T]:
    entries: list[T] = []
    token = ""
    while True:
        page, token = fetch(0, token)
        entries += page.entries
        if not token:
            return entries
