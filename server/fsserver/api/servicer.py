"""The gRPC servicer: wire messages ↔ engine calls, domain errors ↔ status codes.

Conversion goes through fsclient.convert; the engine never sees a _pb2 type. Requests are
parsed leniently: gRPC answers INTERNAL for a request it cannot parse (e.g. a string field
holding bad UTF-8), which would blame the server for a client's mistake, so a parse
failure becomes a stand-in that the handler answers with INVALID_ARGUMENT.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from fsclient import convert
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.collection.collection import Collection
from fsserver.collection.pipeline import PendingAdd, ReadAhead
from fsserver.errors import FaceSearchError, InvalidArgument

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])


@contextmanager
def _statuses(context: grpc.ServicerContext, rpc: str) -> Iterator[None]:
    """Map domain errors to their status code; anything else is logged and INTERNAL."""
    try:
        yield
    except FaceSearchError as error:
        status = getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)
        context.abort(status, str(error))
    except Exception as error:
        if isinstance(error, grpc.RpcError) and not context.is_active():
            # A streamed request iterator raises this once the client has cancelled or its
            # deadline has passed: nothing failed here, and there is no one left to answer.
            raise
        log.exception("%s failed", rpc)
        context.abort(grpc.StatusCode.INTERNAL, f"{rpc} failed on the server")


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


class FaceSearchService(pb_grpc.FaceSearchServicer):
    def __init__(self, engine: Collection) -> None:
        self.engine = engine

    @_unary
    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedResponse:
        return convert.embedding_to_pb(self.engine.embed(request.image))

    def Add(
        self, requests: Iterator[pb.AddRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AddResponse]:
        # One request ahead: its images are embedding on the workers while this batch is
        # stored. Its errors (a malformed request, say) still come after this batch's reply.
        begun = (self._begin_add(request, context) for request in requests)
        batches = ReadAhead(begun, discard=PendingAdd.abandon, name="add-read-ahead")
        with _statuses(context, "Add"), closing(batches):
            for pending in batches:
                results = self.engine.finish_add(pending)
                yield pb.AddResponse(results=[convert.add_result_to_pb(r) for r in results])

    def _begin_add(self, request: Any, context: grpc.ServicerContext) -> PendingAdd:
        request = _parsed(request)
        items = [convert.add_item_from_pb(item) for item in request.items]
        try:
            rows = convert.vector_rows_from_pb(request.rows) if request.HasField("rows") else None
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        return self.engine.begin_add(items, request.vector_model, context.is_active, rows)

    @_unary
    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        target = request.WhichOneof("target")
        result = self.engine.query(
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

    @_unary
    def QueryBatch(
        self, request: pb.QueryBatchRequest, context: grpc.ServicerContext
    ) -> pb.QueryBatchResponse:
        try:
            vectors = convert.batch_vectors_from_pb(request)
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        result = self.engine.query_batch(
            vectors,
            k=request.k,
            ef=request.ef if request.HasField("ef") else None,
            exact=request.exact,
            with_metadata=request.with_metadata,
            vector_model=request.vector_model,
        )
        return convert.batch_result_to_pb(result)

    @_unary
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext) -> pb.DeleteResponse:
        return pb.DeleteResponse(deleted=self.engine.delete(list(request.ids)))

    @_unary
    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> pb.Item:
        return convert.item_to_pb(self.engine.get(request.id))

    @_unary
    def Save(self, request: pb.SaveRequest, context: grpc.ServicerContext) -> pb.SaveResponse:
        return convert.save_result_to_pb(self.engine.save())

    @_unary
    def Compact(
        self, request: pb.CompactRequest, context: grpc.ServicerContext
    ) -> pb.CompactResponse:
        return convert.compact_result_to_pb(self.engine.compact())

    @_unary
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsResponse:
        return convert.stats_to_pb(self.engine.stats())

    # ---- people ------------------------------------------------------------------------

    @_unary
    def ListPeople(
        self, request: pb.ListPeopleRequest, context: grpc.ServicerContext
    ) -> pb.ListPeopleResponse:
        page, token = self.engine.people.list_people(request.page_size, request.page_token)
        return convert.people_page_to_pb(page, token)

    @_unary
    def ListItems(
        self, request: pb.ListItemsRequest, context: grpc.ServicerContext
    ) -> pb.ListItemsResponse:
        label = request.label if request.HasField("label") else None
        page, token = self.engine.people.list_items(label, request.page_size, request.page_token)
        return convert.items_page_to_pb(page, token)

    @_unary
    def ForgetPerson(
        self, request: pb.ForgetPersonRequest, context: grpc.ServicerContext
    ) -> pb.ForgetPersonResponse:
        return pb.ForgetPersonResponse(deleted=self.engine.people.forget(request.label))

    @_unary
    def RenamePerson(
        self, request: pb.RenamePersonRequest, context: grpc.ServicerContext
    ) -> pb.RenamePersonResponse:
        renamed, merged = self.engine.people.rename(request.old_label, request.new_label)
        return pb.RenamePersonResponse(renamed=renamed, merged=merged)

    # ---- decisions ---------------------------------------------------------------------

    @_unary
    def Identify(
        self, request: pb.IdentifyRequest, context: grpc.ServicerContext
    ) -> pb.IdentifyResponse:
        target = request.WhichOneof("target")
        result = self.engine.people.identify(
            image=request.image if target == "image" else None,
            vector=convert.vector_from_pb(request.vector) if target == "vector" else None,
            candidates=request.candidates,
            threshold=request.threshold if request.HasField("threshold") else None,
            vector_model=request.vector_model,
            alive=context.is_active,
        )
        return convert.identify_result_to_pb(result)

    @_unary
    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext) -> pb.VerifyResponse:
        other = request.WhichOneof("other")
        result = self.engine.people.verify(
            request.image,
            other_image=request.other_image if other == "other_image" else None,
            person=request.person if other == "person" else None,
            threshold=request.threshold if request.HasField("threshold") else None,
        )
        return convert.verify_result_to_pb(result)
