"""Server reflection v1 (what grpcurl, Postman and Kreya ask for) beside v1alpha.

On a bare grpc.server carrying the FaceSearch service and both reflections, so the test
stands apart from how FaceSearchServer wires them. A v1 call is made with the v1alpha
messages (v1's are the same, field for field) on the v1 method's path.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as messages

from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.api.reflection_v1 import SERVICE_NAME, enable_reflection_v1

FACESEARCH = pb.DESCRIPTOR.services_by_name["FaceSearch"].full_name
V1_METHOD = f"/{SERVICE_NAME}/ServerReflectionInfo"


@pytest.fixture
def address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_FaceSearchServicer_to_server(pb_grpc.FaceSearchServicer(), server)
    names = (FACESEARCH, reflection.SERVICE_NAME, SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    enable_reflection_v1(names, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def _ask(channel: grpc.Channel, method: str, **request: str) -> messages.ServerReflectionResponse:
    call = channel.stream_stream(
        method,
        request_serializer=messages.ServerReflectionRequest.SerializeToString,
        response_deserializer=messages.ServerReflectionResponse.FromString,
    )
    answer: messages.ServerReflectionResponse = next(
        call(iter([messages.ServerReflectionRequest(**request)]), timeout=10)
    )
    return answer


def _files(answer: messages.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    return [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in answer.file_descriptor_response.file_descriptor_proto
    ]


def test_v1_lists_the_services_and_serves_the_facesearch_descriptor(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        listed = _ask(channel, V1_METHOD, list_services="")
        names = {s.name for s in listed.list_services_response.service}
        assert {FACESEARCH, SERVICE_NAME, reflection.SERVICE_NAME} <= names

        described = _ask(channel, V1_METHOD, file_containing_symbol=FACESEARCH)
        files = _files(described)
        assert files[0].name == "facesearch/v1/facesearch.proto"
        assert "FaceSearch" in [service.name for service in files[0].service]

        # Describing v1 itself works too (grpcurl describes every service it lists).
        own = _files(_ask(channel, V1_METHOD, file_containing_symbol=SERVICE_NAME))
        assert own[0].package == "grpc.reflection.v1"
        [method] = own[0].service[0].method
        assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"

        missing = _ask(channel, V1_METHOD, file_containing_symbol="no.such.Service")
        assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_v1alpha_still_answers_and_a_second_server_can_enable_v1(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        alpha = f"/{reflection.SERVICE_NAME}/ServerReflectionInfo"
        listed = _ask(channel, alpha, list_services="")
        assert FACESEARCH in {s.name for s in listed.list_services_response.service}
    other = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    enable_reflection_v1((SERVICE_NAME,), other)  # the descriptor is in the pool already
    other.stop(grace=None)
