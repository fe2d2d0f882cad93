"""gRPC server reflection v1, beside the v1alpha that grpcio-reflection serves.

grpcurl, Postman and Kreya ask `grpc.reflection.v1.ServerReflection` first, and some ask
nothing else; grpcio-reflection (1.85 here) ships only v1alpha. The v1 messages are
v1alpha's, field for field (v1 renamed the package and nothing else), so the v1alpha
servicer answers v1 calls as they are: its handler is registered under the v1 name.

Its file descriptor goes into the default pool too, under v1's package, so a client that
describes every service it lists (`grpcurl describe`) finds this one as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha

SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_PACKAGE, _ALPHA_PACKAGE = "grpc.reflection.v1", "grpc.reflection.v1alpha"
_FILE_NAME = "grpc/reflection/v1/reflection.proto"


def enable_reflection_v1(service_names: Sequence[str], server: grpc.Server) -> None:
    """Serve reflection v1 on `server`, listing `service_names` (name SERVICE_NAME in it,
    as v1alpha lists its own): call before the server starts."""
    _add_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.ReflectionServicer(service_names)
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=v1alpha.ServerReflectionRequest.FromString,
                response_serializer=v1alpha.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """v1alpha's reflection.proto renamed to v1 (its package, and each type named in it)."""
    try:
        pool.FindFileByName(_FILE_NAME)
        return  # a second server in this process, or a grpcio that ships v1 itself
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = _FILE_NAME, _PACKAGE

    def renamed(type_name: str) -> str:
        return type_name.replace(f".{_ALPHA_PACKAGE}.", f".{_PACKAGE}.", 1)

    for message in proto.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    pool.Add(proto)
