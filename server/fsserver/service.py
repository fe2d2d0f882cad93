"""The gRPC servicer: wire messages ↔ engine calls, domain errors ↔ status codes.

Conversion goes through fsclient.convert; the engine never sees a _pb2 type.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from fsclient import convert
from fsclient._proto.facesearch.v1 import facesearch_pb2 as pb
from fsclient._proto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.engine import Engine
from fsserver.errors import FaceSearchError

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
    except Exception:
        log.exception("%s failed", rpc)
        context.abort(grpc.StatusCode.INTERNAL, f"{rpc} failed on the server")


def _unary(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def wrapper(self: FaceSearchService, request: Any, context: grpc.ServicerContext) -> Any:
        with _statuses(context, handler.__name__):
            return handler(self, request, context)

    return wrapper  # type: ignore[return-value]


class FaceSearchService(pb_grpc.FaceSearchServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @_unary
    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext) -> pb.EmbedResponse:
        return convert.embedding_to_pb(self.engine.embed(request.image))

    def Add(
        self, requests: Iterator[pb.AddRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.AddResponse]:
        with _statuses(context, "Add"):
            for request in requests:
                items = [convert.add_item_from_pb(item) for item in request.items]
                results = self.engine.add(items, request.vector_model)
                yield pb.AddResponse(results=[convert.add_result_to_pb(r) for r in results])

    @_unary
    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext) -> pb.QueryResponse:
        target = request.WhichOneof("target")
        result = self.engine.query(
            image=request.image if target == "image" else None,
            vector=convert.vector_from_pb(request.vector) if target == "vector" else None,
            id=request.id if target == "id" else None,
            k=request.k,
            ef=request.ef if request.HasField("ef") else None,
            vector_model=request.vector_model,
        )
        return convert.query_result_to_pb(result)

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
    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.StatsResponse:
        return convert.stats_to_pb(self.engine.stats())
