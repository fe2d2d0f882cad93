"""The gRPC servicer: wire messages ↔ collection calls, domain errors ↔ status codes.

Conversion goes through fsclient.convert; no collection sees a _pb2 type. Requests are
parsed leniently: gRPC answers INTERNAL for a request it cannot parse (e.g. a string field
holding bad UTF-8), which would blame the server for a client's mistake, so a parse
failure becomes a stand-in that the handler answers with INVALID_ARGUMENT.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from fsclient import convert
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsserver.catalog import Catalog
from fsserver.collection.collection import Collection
from fsserver.collection.pipeline import PendingAdd, ReadAhead
from fsserver.errors import InvalidArgument, ServiceError

log = logging.getLogger(__name__)
# What a Compact keeps back of its caller's deadline to answer "still running" in time.
DEADLINE_MARGIN_S = 0.5
NO_DEADLINE_S = 1e6  # time_remaining() past this: the call set no deadline

Handler = TypeVar("Handler", bound=Callable[..., Any])


@contextmanager
def _statuses(context: grpc.ServicerContext, rpc: str) -> Iterator[None]:
    """Map domain errors to their status code; anything else is logged and INTERNAL."""
    try:
        yield
    except ServiceError as error:
        status = getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)
        context.abort(status, str(error))
    except Exception as error:
        if isinstance(error, grpc.RpcError) and not context.is_active():
            # A streamed request iterator raises this once the client has cancelled or its
            # deadline has passed: nothing failed here, and there is no one left to answer.
            raise
        log.exception("%s failed", rpc)
        context.abort(grpc.StatusCode.INTERNAL, f"{rpc} failed on the server")


def _per_collection(handler: Handler) -> Handler:
    """A unary handler called with the request's collection, leased for the call."""

    @functools.wraps(handler)
    def wrapper(self: FaceSearchService, request: Any, context: grpc.ServicerContext) -> Any:
        with _statuses(context, handler.__name__):
            request = _parsed(request)
            with self.catalog.leased(request.collection) as collection:
                return handler(self, collection, request, context)

    return wrapper  # type: ignore[return-value]


class Malformed:
    """Stands in for a request message that could not be parsed."""

    def __init__(self, type_name: str, error: DecodeError) -> None:
        self.reason = f"the {type_name} message cannot be parsed: {error}"


def _lenient(message_class: type[Message]) -> Callable[[bytes], Message | Malformed]:
    def parse(data: bytes) -> Message | Malformed:
        try:
            return message_class.FromString(data)
        except DecodeError as error:
            return Malformed(message_class.DESCRIPTOR.name, error)

    return parse


def _parsed(request: Any) -> Any:
    if isinstance(request, Malformed):
        raise InvalidArgument(request.reason)
    return request


def _unary(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def wrapper(self: FaceSearchService, request: Any, context: grpc.ServicerContext) -> Any:
        with _statuses(context, handler.__name__):
            return handler(self, _parsed(request), context)

    return wrapper  # type: ignore[return-value]


def add_to_server(service: FaceSearchService, server: grpc.Server) -> None:
    """Register every FaceSearch method, as the generated helper does, but parsing leniently."""
    descriptor = pb.DESCRIPTOR.services_by_name["FaceSearch"]
    handlers = {}
    for method in descriptor.methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            getattr(service, method.name),
            request_deserializer=_lenient(request_class),
            response_serializer=response_class.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
    )


@dataclass
class _AddBatch:
    """An Add request begun on its collection, which it holds until stored or dropped."""

    collection: Collection
    pending: PendingAdd
    lease: ExitStack
    packed: bool  # AddRequest.packed_answers

    def discard(self) -> None:
        self.pending.abandon()
        self.lease.close()


class FaceSearchService:
    """Every FaceSearch method (add_to_server registers them by the service descriptor)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def _collection(self, request: Any) -> Any:
        """The request's collection (empty: default), held for the call."""
        return self.catalog.leased(request.collection)

    @_unary
    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedResponse:
        with self.catalog.leased("") as collection:
            return convert.embedding_to_pb(collection.embed(request.image))

    def Add(
        self, requests: Iterator[pb.AddRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AddResponse]:
        # One request ahead: its images are embedding on the workers while this batch is
        # stored. Its errors (a malformed request, say) still come after this batch's reply.
        # Each batch names its collection and holds it only while in flight, so a drop
        # waits for at most a batch and the stream's next one gets NOT_FOUND.
        begun = (self._begin_add(request, context) for request in requests)
        batches = ReadAhead(begun, discard=_AddBatch.discard, name="add-read-ahead")
        # Each collection it writes to counts as being written until the stream ends, so
        # recall calibration waits for the load to finish, however slow its batches.
        with _statuses(context, "Add"), closing(batches), ExitStack() as writing:
            written: set[str] = set()
            for batch in batches:
                with batch.lease:
                    if batch.collection.name not in written:
                        written.add(batch.collection.name)
                        writing.enter_context(batch.collection.writing())
                    items, rows = batch.collection.adder.finish_add(batch.pending)
                if rows is not None and not batch.packed:
                    items, rows = items + rows.results(), None
                yield convert.add_response_to_pb(items, rows)

    def _begin_add(self, request: Any, context: grpc.ServicerContext) -> _AddBatch:
        request = _parsed(request)
        items = [convert.add_item_from_pb(item) for item in request.items]
        lease = ExitStack()
        collection = lease.enter_context(self._collection(request))
        try:
            rows = None
            if request.HasField("rows"):
                # The index's dim stands in for an unset VectorRows.dim (see convert).
                dim = 0 if request.rows.dim else collection.store.contract.dim
                try:
                    rows = convert.vector_rows_from_pb(request.rows, dim)
                except ValueError as error:
                    raise InvalidArgument(str(error)) from None
            pending = collection.adder.begin_add(
                items, request.vector_model, context.is_active, rows
            )
        except BaseException:
            lease.close()
            raise
        return _AddBatch(collection, pending, lease, request.packed_answers)

    @_per_collection
    def Query(
        self, collection: Collection, request: pb.QueryRequest, context: grpc.ServicerContext
    ) -> pb.QueryResponse:
        target = request.WhichOneof("target")
        result = collection.query(
            image=request.image if target == "image" else None,
            vector=convert.vector_from_pb(request.vector) if target == "vector" else None,
            id=request.id if target == "id" else None,
            k=request.k,
            ef=request.ef if request.HasField("ef") else None,
            exact=request.exact,
            vector_model=request.vector_model,
            threshold=request.threshold if request.HasField("threshold") else None,
            alive=context.is_active,
        )
        return convert.query_result_to_pb(result)

    @_per_collection
    def QueryBatch(
        self, collection: Collection, request: pb.QueryBatchRequest, context: grpc.ServicerContext
    ) -> pb.QueryBatchResponse:
        try:
            vectors = convert.batch_vectors_from_pb(request)
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        result = collection.query_batch(
            vectors,
            k=request.k,
            ef=request.ef if request.HasField("ef") else None,
            exact=request.exact,
            with_metadata=request.with_metadata,
            vector_model=request.vector_model,
        )
        return convert.batch_result_to_pb(result)

    @_per_collection
    def Delete(
        self, collection: Collection, request: pb.DeleteRequest, context: grpc.ServicerContext
    ) -> pb.DeleteResponse:
        return pb.DeleteResponse(deleted=collection.delete(list(request.ids)))

    @_per_collection
    def Get(
        self, collection: Collection, request: pb.GetRequest, context: grpc.ServicerContext
    ) -> pb.Item:
        return convert.item_to_pb(collection.get(request.id))

    @_per_collection
    def Save(
        self, collection: Collection, request: pb.SaveRequest, context: grpc.ServicerContext
    ) -> pb.SaveResponse:
        return convert.save_result_to_pb(collection.save())

    @_per_collection
    def Compact(
        self, collection: Collection, request: pb.CompactRequest, context: grpc.ServicerContext
    ) -> pb.CompactResponse:
        # Answered just before the caller's deadline if the rebuild is still going: the
        # rebuild is nobody's call alone, and it goes on.
        remaining = context.time_remaining()  # huge without a deadline
        wait = None if remaining > NO_DEADLINE_S else max(0.0, remaining - DEADLINE_MARGIN_S)
        return convert.compact_result_to_pb(collection.compact(request.force, wait))

    @_per_collection
    def Stats(
        self, collection: Collection, request: pb.StatsRequest, context: grpc.ServicerContext
    ) -> pb.StatsResponse:
        return convert.stats_to_pb(collection.stats())

    # ---- people ------------------------------------------------------------------------

    @_per_collection
    def ListPeople(
        self, collection: Collection, request: pb.ListPeopleRequest, context: grpc.ServicerContext
    ) -> pb.ListPeopleResponse:
        page, token = collection.people.list_people(request.page_size, request.page_token)
        return convert.people_page_to_pb(page, token)

    @_per_collection
    def ListItems(
        self, collection: Collection, request: pb.ListItemsRequest, context: grpc.ServicerContext
    ) -> pb.ListItemsResponse:
        label = request.label if request.HasField("label") else None
        page, token = collection.people.list_items(label, request.page_size, request.page_token)
        return convert.items_page_to_pb(page, token)

    @_per_collection
    def ForgetPerson(
        self, collection: Collection, request: pb.ForgetPersonRequest, context: grpc.ServicerContext
    ) -> pb.ForgetPersonResponse:
        return pb.ForgetPersonResponse(deleted=collection.people.forget(request.label))

    @_per_collection
    def RenamePerson(
        self, collection: Collection, request: pb.RenamePersonRequest, context: grpc.ServicerContext
    ) -> pb.RenamePersonResponse:
        renamed, merged = collection.people.rename(request.old_label, request.new_label)
        return pb.RenamePersonResponse(renamed=renamed, merged=merged)

    # ---- decisions ---------------------------------------------------------------------

    @_per_collection
    def Identify(
        self, collection: Collection, request: pb.IdentifyRequest, context: grpc.ServicerContext
    ) -> pb.IdentifyResponse:
        target = request.WhichOneof("target")
        result = collection.people.identify(
            image=request.image if target == "image" else None,
            vector=convert.vector_from_pb(request.vector) if target == "vector" else None,
            candidates=request.candidates,
            threshold=request.threshold if request.HasField("threshold") else None,
            vector_model=request.vector_model,
            alive=context.is_active,
        )
        return convert.identify_result_to_pb(result)

    @_per_collection
    def Verify(
        self, collection: Collection, request: pb.VerifyRequest, context: grpc.ServicerContext
    ) -> pb.VerifyResponse:
        other = request.WhichOneof("other")
        result = collection.people.verify(
            request.image,
            other_image=request.other_image if other == "other_image" else None,
            person=request.person if other == "person" else None,
            threshold=request.threshold if request.HasField("threshold") else None,
        )
        return convert.verify_result_to_pb(result)

    # ---- collections -------------------------------------------------------------------

    @_unary
    def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.ServicerContext
    ) -> pb.CollectionInfo:
        spec = convert.collection_spec_from_pb(request)
        return convert.collection_info_to_pb(self.catalog.create(spec))

    @_unary
    def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.ServicerContext
    ) -> pb.ListCollectionsResponse:
        infos = self.catalog.list()
        return pb.ListCollectionsResponse(
            collections=[convert.collection_info_to_pb(i) for i in infos]
        )

    @_unary
    def DropCollection(
        self, request: pb.DropCollectionRequest, context: grpc.ServicerContext
    ) -> pb.DropCollectionResponse:
        return pb.DropCollectionResponse(items=self.catalog.drop(request.name))
