"""A bounded, reproducible fuzz of the wire API: arbitrary requests never get INTERNAL.

Hypothesis builds request messages (ids up to 2^64-1, vectors of any length with NaN, Inf
and huge floats, any k and ef, long and odd labels, random image bytes), mutated
serializations of them and plain random bytes, and sends them to real vector-only servers
as raw bytes. Every answer must be OK or a client-error status, every per-item error too,
and the servers must go on serving. derandomize=True: CI runs the same examples each time.

A second, in-process fuzz feeds decode_image damaged images of every format it reads.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsserver.api.server import FaceSearchServer
from fsserver.config import Config
from fsserver.errors import InvalidArgument
from fsserver.faces.images import decode_image

DIM = 8
SERVICE = "/facesearch.v1.FaceSearch"
# Each server differs where odd vectors could hurt: cosine normalises, e4m3 saturates.
SHAPES = [("euclidean", "float32"), ("cosine", "float32"), ("euclidean", "e4m3")]
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
ALLOWED_NUMBERS = {code.value[0] for code in ALLOWED}
RESPONSES: dict[str, type[Message]] = {
    "Add": pb.AddResponse,
    "Query": pb.QueryResponse,
    "Get": pb.Item,
    "Delete": pb.DeleteResponse,
    "Embed": pb.EmbedResponse,
    "Stats": pb.StatsResponse,
    "Save": pb.SaveResponse,
    "Compact": pb.CompactResponse,
}
FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@dataclass
class Servers:
    servers: list[FaceSearchServer]
    channels: list[grpc.Channel]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    servers, channels = [], []
    for space, storage in SHAPES:
        config = Config(
            listen="127.0.0.1:0",
            dim=DIM,
            model="",
            space=space,
            storage=storage,
            data_dir=tmp_path_factory.mktemp(f"fuzz-{space}-{storage}"),
        )
        server = FaceSearchServer(config).start()
        servers.append(server)
        channels.append(grpc.insecure_channel(server.address))
    yield Servers(servers, channels)
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop(grace=1.0)


# ---- strategies ----------------------------------------------------------------------

ids = st.one_of(
    st.integers(0, 40),  # often an id that exists
    st.integers(0, 2**64 - 1),
    st.sampled_from([2**63, 2**64 - 2, 2**64 - 1]),
)
# Non-finite, huge (squares overflow float32), tiny (squares underflow), and the edges of
# what e4m3 storage holds (±448) and float16 (65504).
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, 1e20, 1e-45, 1e-30]
SPECIAL_FLOATS += [0.0, -0.0, 448.0, -448.0, 449.0, 65504.0, 1e6]
floats = st.one_of(st.floats(width=32), st.sampled_from(SPECIAL_FLOATS))
sane = st.floats(-2, 2, width=32)
vectors = st.one_of(
    st.lists(sane, min_size=DIM, max_size=DIM),  # most get stored or searched with
    st.lists(sane, min_size=DIM, max_size=DIM),
    st.lists(floats, min_size=DIM, max_size=DIM),
    st.lists(floats, min_size=DIM, max_size=DIM),
    st.lists(floats, max_size=2 * DIM + 1),
)
# Short text of any kind, and long runs that cross the label and metadata byte limits.
texts = st.one_of(
    st.text(max_size=20),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(300, 70_000)),
)
models = st.one_of(st.just(""), st.sampled_from(["Dlib", "ArcFace"]), st.text(max_size=8))
tiny_png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
images = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", tiny_png, tiny_png[:20], b"\xff\xd8\xff", b"http://127.0.0.1:9/x"]),
)


@st.composite
def add_items(draw: st.DrawFn) -> pb.AddItem:
    item = pb.AddItem()
    kind = draw(st.sampled_from(["vector", "vector", "vector", "image", "none"]))
    if kind == "vector":
        item.vector.values.extend(draw(vectors))
    elif kind == "image":
        item.image = draw(images)
    if draw(st.booleans()):
        item.id = draw(ids)
    if draw(st.booleans()):
        item.label = draw(texts)
    if draw(st.booleans()):
        item.metadata = draw(texts)
    return item


@st.composite
def add_requests(draw: st.DrawFn) -> pb.AddRequest:
    return pb.AddRequest(items=draw(st.lists(add_items(), max_size=5)), vector_model=draw(models))


@st.composite
def query_requests(draw: st.DrawFn) -> pb.QueryRequest:
    request = pb.QueryRequest(
        k=draw(
            st.one_of(st.integers(1, 12), st.integers(-3, 12), st.integers(-(2**31), 2**31 - 1))
        ),
        vector_model=draw(models),
    )
    target = draw(st.sampled_from(["vector", "vector", "id", "image", "none"]))
    if target == "vector":
        request.vector.values.extend(draw(vectors))
    elif target == "id":
        request.id = draw(ids)
    elif target == "image":
        request.image = draw(images)
    if draw(st.integers(0, 2)) == 0:
        request.ef = draw(st.one_of(st.integers(1, 300), st.integers(0, 2**32 - 1)))
    return request


adds = st.tuples(st.just("Add"), st.lists(add_requests(), min_size=1, max_size=3))
queries = st.tuples(st.just("Query"), query_requests().map(lambda r: [r]))
messages = st.one_of(
    adds,
    adds,
    queries,
    queries,
    st.tuples(st.just("Get"), ids.map(lambda i: [pb.GetRequest(id=i)])),
    st.tuples(
        st.just("Delete"), st.lists(ids, max_size=4).map(lambda i: [pb.DeleteRequest(ids=i)])
    ),
    st.tuples(st.just("Embed"), images.map(lambda i: [pb.EmbedRequest(image=i)])),
    # Stats, Save and Compact all take an empty message.
    st.tuples(st.sampled_from(["Stats", "Save", "Compact"]), st.just([pb.StatsRequest()])),
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """The serialization with a few bytes overwritten, inserted or cut."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(buffer)))
        action = draw(st.sampled_from(["set", "insert", "cut"]))
        if action == "set" and where < len(buffer):
            buffer[where] = draw(st.integers(0, 255))
        elif action == "insert":
            buffer[where:where] = draw(st.binary(min_size=1, max_size=4))
        else:
            del buffer[where : where + draw(st.integers(1, 8))]
    return bytes(buffer)


@st.composite
def calls(draw: st.DrawFn) -> tuple[int, str, list[bytes]]:
    """(which server, method, serialized requests: several for the Add stream)."""
    server = draw(st.integers(0, len(SHAPES) - 1))
    method, requests = draw(messages)
    payloads = [r.SerializeToString() for r in requests]
    how = draw(st.sampled_from(["message"] * 6 + ["mutated"] * 3 + ["random"]))
    if how == "mutated":
        payloads = [draw(mutated(p)) for p in payloads]
    elif how == "random":
        payloads = draw(st.lists(st.binary(max_size=80), min_size=1, max_size=2))
        if method != "Add":
            payloads = payloads[:1]
    return server, method, payloads


# ---- the fuzz ------------------------------------------------------------------------


def send(channel: grpc.Channel, method: str, payloads: list[bytes]) -> tuple[grpc.StatusCode, str]:
    """Raw bytes in; the status and details out. Answers must parse and carry no
    server-fault per-item errors."""
    response_type = RESPONSES[method]
    try:
        if method == "Add":
            add = channel.stream_stream(
                f"{SERVICE}/Add", request_serializer=None, response_deserializer=None
            )
            for raw in add(iter(payloads), timeout=20):
                for result in pb.AddResponse.FromString(raw).results:
                    if result.WhichOneof("outcome") == "error":
                        assert result.error.code in ALLOWED_NUMBERS, result.error
        else:
            unary = channel.unary_unary(
                f"{SERVICE}/{method}", request_serializer=None, response_deserializer=None
            )
            response_type.FromString(unary(payloads[0], timeout=20))
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


@FUZZ_SETTINGS
@given(call=calls())
def test_arbitrary_requests_never_get_a_server_error(
    fuzzed: Servers, call: tuple[int, str, list[bytes]]
) -> None:
    server, method, payloads = call
    channel = fuzzed.channels[server]
    code, details = send(channel, method, payloads)
    event(f"{method}: {code.name}")  # see pytest --hypothesis-show-statistics
    shown = [p[:200] for p in payloads]  # the falsifying example above has them whole
    assert code in ALLOWED, (code, details, method, shown)
    assert send(channel, "Stats", [b""])[0] == grpc.StatusCode.OK


def test_the_fuzzed_servers_still_serve(fuzzed: Servers) -> None:
    for channel in fuzzed.channels:
        stats = pb.StatsResponse.FromString(
            channel.unary_unary(f"{SERVICE}/Stats")(b"", timeout=10)
        )
        assert stats.dim == DIM
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        vector = pb.Vector(values=[1.0] * DIM)
        query = pb.QueryRequest(vector=vector, k=1).SerializeToString()
        pb.QueryResponse.FromString(channel.unary_unary(f"{SERVICE}/Query")(query, timeout=10))


# ---- decode_image on damaged images --------------------------------------------------


def _seed_images() -> list[bytes]:
    """Small images in every format decode_image reads, grey and colour, 8 and 16 bit."""
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    grey = colour[:, :, 0].copy()
    seeds = [
        cv2.imencode(ext, image)[1].tobytes()
        for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff")
        for image in (colour, grey)
    ]
    seeds.append(cv2.imencode(".png", colour.astype(np.uint16) * 257)[1].tobytes())
    seeds.append(cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes())
    gif = io.BytesIO()
    Image.fromarray(colour).save(gif, "GIF")
    seeds.append(gif.getvalue())
    return seeds


SEEDS = _seed_images()


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        # Mostly the header, where sizes and formats are claimed.
        where = draw(st.one_of(st.integers(0, 64), st.integers(0, len(data))))
        action = draw(st.sampled_from(["set", "set", "size", "insert", "truncate"]))
        if action == "set" and where < len(data):
            data[where] = draw(st.integers(0, 255))
        elif action == "size" and where + 4 <= len(data):
            # A plausible big dimension, in either byte order.
            order = draw(st.sampled_from([">I", "<I", ">H", "<H"]))
            limit = 2**32 - 1 if order.endswith("I") else 2**16 - 1
            packed = struct.pack(order, draw(st.integers(0, limit)))
            data[where : where + len(packed)] = packed
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[where:]
    return bytes(data)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on TIFF damage
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=damaged_images(), max_side=st.sampled_from([1, 16, 640]))
def test_decode_image_answers_damage_with_invalid_argument_only(data: bytes, max_side: int) -> None:
    try:
        decoded = decode_image(data, max_side, max_pixels=4_000_000)
    except InvalidArgument:
        return
    height, width = decoded.pixels.shape[:2]
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape[2] == 3
    assert max(height, width) <= max_side
    assert 0 < decoded.scale <= 1.0
