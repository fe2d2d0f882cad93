"""Hostile and malformed input: each class gets its exact status, and the server goes on.

Image decoding is checked in-process (pixel bombs refused from the header, large JPEGs
decoded reduced); everything else goes through a real server, raw bytes included.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from fsclient import FaceSearchError
from fsclient.types import AddItem, Box
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.errors import InvalidArgument
from fsserver.faces.embedder import Embedder
from fsserver.faces.images import DecodedImage, decode_image
from support import RunningServer

DIM = 16  # the vector_server fixture's dimension
FACE_DIM = 128  # Dlib's
MAX_SIDE = 640  # Config.max_image_side's default
SERVICE = "/facesearch.v1.FaceSearch"

# ---- crafted images ------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes, *, bad_crc: bool = False) -> bytes:
    crc = zlib.crc32(kind + body) ^ (1 if bad_crc else 0)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)


@cache
def png_bomb(width: int, height: int, *, pillow_unreadable: bool = False) -> bytes:
    """A valid, all-black 1-bit PNG: 20000 x 20000 is 400 megapixels in about 50 KB.

    `pillow_unreadable` adds an ancillary chunk with a bad CRC: Pillow then cannot open
    the file, while libpng (OpenCV) only warns and would decode all of it.
    """
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    broken = _png_chunk(b"tEXt", b"a\0b", bad_crc=True) if pillow_unreadable else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + broken
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A tiny real JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), ".jpg"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def encode(image: np.ndarray, extension: str, *params: int) -> bytes:
    ok, data = cv2.imencode(extension, image, list(params))
    assert ok
    return bytes(data.tobytes())


def decode_full(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def phone_style(jpeg: bytes, orientation: int) -> bytes:
    """The photo as a phone stores it: pixels turned, and an EXIF orientation tag saying
    how to turn them back for display (6: 90° clockwise, 8: 90° anticlockwise, 3: 180°)."""
    stored_turn = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,  # anticlockwise; displaying turns it back
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    with Image.open(io.BytesIO(jpeg)) as image:
        exif = image.getexif()
        exif[0x0112] = orientation
        out = io.BytesIO()
        image.transpose(stored_turn).save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


def reference_decode(data: bytes, max_side: int = MAX_SIDE) -> DecodedImage:
    """What decode_image did before reduced decoding: full decode, then INTER_AREA."""
    pixels = decode_full(data)
    height, width = pixels.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return DecodedImage(pixels=pixels, scale=scale)


@cache
def photo_variant(faces_dir: Path, name: str) -> bytes:
    """Real photos, and variants of them, by name."""
    if name.endswith(".jpg"):
        return (faces_dir / name).read_bytes()
    source, _, variant = name.partition(":")
    photo = (faces_dir / source).read_bytes()
    if variant.startswith("exif-"):  # looks the same once the orientation is applied
        return phone_style(photo, int(variant.removeprefix("exif-")))
    if variant == "grey-jpeg":
        return encode(cv2.cvtColor(decode_full(photo), cv2.COLOR_BGR2GRAY), ".jpg")
    if variant == "x2.8":  # over 8 x 640 on its long side: 1/8 reduced decoding
        pixels = decode_full(photo)
        bigger = cv2.resize(pixels, None, fx=2.8, fy=2.8, interpolation=cv2.INTER_CUBIC)
        return encode(bigger, ".jpg", cv2.IMWRITE_JPEG_QUALITY, 90)
    small = cv2.resize(decode_full(photo), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    if variant == "small-png":
        return encode(small, ".png")
    if variant == "grey-png":
        return encode(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), ".png")
    if variant == "16bit-png":
        return encode(small.astype(np.uint16) * 257, ".png")
    if variant == "16bit-grey-png":
        return encode(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, ".png")
    raise ValueError(name)


# ---- decode_image: pixel bombs -------------------------------------------------------


def _no_decoding(*args: object, **kwargs: object) -> None:
    raise AssertionError("the image was decoded before its pixel count was checked")


TIMES = "\N{MULTIPLICATION SIGN}"  # the server writes sizes as 30000 TIMES 30000


@pytest.mark.parametrize(
    ("make", "claimed"),
    [
        # Over twice Pillow's own limit: Pillow raises DecompressionBombError.
        pytest.param(lambda: png_bomb(20000, 20000), (20000, 20000, "400"), id="png-400MP"),
        # Under Pillow's limits, over ours.
        pytest.param(lambda: png_bomb(7000, 7000), (7000, 7000, "49"), id="png-49MP"),
        # Pillow cannot open it, OpenCV could: the PNG header is read by hand.
        pytest.param(
            lambda: png_bomb(7000, 7000, pillow_unreadable=True),
            (7000, 7000, "49"),
            id="png-pillow-unreadable",
        ),
        pytest.param(lambda: jpeg_claiming(60000, 60000), (60000, 60000, "3600"), id="jpeg-3.6GP"),
        pytest.param(lambda: jpeg_claiming(9000, 5000), (9000, 5000, "45"), id="jpeg-45MP"),
    ],
)
def test_a_pixel_bomb_is_refused_from_its_header_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[], bytes],
    claimed: tuple[int, int, str],
) -> None:
    data = make()
    assert len(data) < 100_000
    monkeypatch.setattr(cv2, "imdecode", _no_decoding)  # any decoding fails the test
    with pytest.raises(InvalidArgument) as error:
        decode_image(data, MAX_SIDE, max_pixels=40_000_000)
    width, height, megapixels = claimed
    assert str(error.value) == (
        f"the image is {width}{TIMES}{height} = {megapixels} megapixels; "
        "the limit is 40 megapixels (--max-image-pixels)"
    )


def test_the_pixel_limit_is_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    image = encode(np.zeros((2000, 3000), np.uint8), ".png")  # 6 megapixels
    with pytest.raises(InvalidArgument, match=rf"3000{TIMES}2000 = 6 megapixels; the limit is 5 "):
        decode_image(image, MAX_SIDE, max_pixels=5_000_000)
    decoded = decode_image(image, MAX_SIDE, max_pixels=6_000_000)  # the limit itself is fine
    assert decoded.pixels.shape == (427, 640, 3)
    # Pillow's own refusal (over twice Image.MAX_IMAGE_PIXELS) does not decide: an image
    # within a limit raised above Pillow's still decodes, and one over ours is refused.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    decoded = decode_image(image, MAX_SIDE, max_pixels=6_000_000)
    assert decoded.pixels.shape == (427, 640, 3)
    assert decoded.scale == 640 / 3000
    with pytest.raises(InvalidArgument, match=rf"3000{TIMES}2000 = 6 megapixels; the limit is 5 "):
        decode_image(image, MAX_SIDE, max_pixels=5_000_000)
    with pytest.raises(InvalidArgument, match=r"the image is 6 megapixels; the limit is 5 "):
        decode_image(encode(np.zeros((2000, 3000), np.uint8), ".tiff"), MAX_SIDE, 5_000_000)


# ---- decode_image: large JPEGs decoded reduced ---------------------------------------

REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@pytest.mark.parametrize(
    ("name", "factor"),
    [
        ("img12.jpg", 1),  # 560 px: no downscale at all
        ("img1.jpg", 2),  # 1868 px
        ("couple.jpg", 2),  # 2280 px
        ("img40.jpg", 4),  # 4600 px
        ("img40.jpg:exif-6", 4),
        ("img1.jpg:exif-8", 2),
        ("img40.jpg:grey-jpeg", 4),
        ("img1.jpg:x2.8", 8),  # 5230 px
        ("img47.jpg", 1),  # WebP under a .jpg name: decoded at full size
    ],
)
def test_large_jpegs_decode_reduced_to_the_same_size_and_scale(
    monkeypatch: pytest.MonkeyPatch, faces_dir: Path, name: str, factor: int
) -> None:
    data = photo_variant(faces_dir, name)
    expected = reference_decode(data)
    flags: list[int] = []
    real_imdecode = cv2.imdecode

    def spy(buffer: np.ndarray, flag: int) -> np.ndarray | None:
        flags.append(flag)
        return real_imdecode(buffer, flag)

    monkeypatch.setattr(cv2, "imdecode", spy)
    decoded = decode_image(data, MAX_SIDE)
    assert flags == [REDUCED_FLAGS[factor]]
    assert decoded.pixels.dtype == np.uint8
    assert decoded.pixels.shape == expected.pixels.shape
    assert decoded.scale == expected.scale  # exact: boxes map back with it
    difference = np.abs(decoded.pixels.astype(np.int16) - expected.pixels.astype(np.int16))
    assert difference.mean() < 3.0, difference.mean()


def _overlap(a: Any, b: Any) -> float:
    """Intersection over union of two boxes."""
    width = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    height = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    inter = max(width, 0) * max(height, 0)
    return inter / (a.width * a.height + b.width * b.height - inter)


@pytest.mark.parametrize("name", ["couple.jpg", "img40.jpg", "img49.jpg", "img40.jpg:exif-6"])
def test_reduced_decoding_finds_the_same_faces(
    dlib_embedder: Embedder, faces_dir: Path, name: str
) -> None:
    data = photo_variant(faces_dir, name)
    reference = reference_decode(data)
    decoded = decode_image(data, MAX_SIDE)
    expected = dlib_embedder.embed(reference)
    found = dlib_embedder.embed(decoded)
    assert len(found) == len(expected) >= 1

    def by_place(faces: list[Any]) -> list[Any]:  # faces of one size come in either order
        return sorted(faces, key=lambda f: (f.face.box.x, f.face.box.y))

    for got, want in zip(by_place(found), by_place(expected), strict=True):
        assert got.face.box is not None and want.face.box is not None
        # The same face: at upsample 0 HOG's box sizes step by a pyramid level (~20%), and
        # slightly different pixels may land on the next level, so boxes overlap rather than
        # match to the pixel; the vector, from the 5-point chip, barely moves.
        assert _overlap(got.face.box, want.face.box) >= 0.5, (got.face.box, want.face.box)
        distance = float(np.linalg.norm(got.face.embedding - want.face.embedding))
        assert distance < 0.1, distance


def _box_tuple(box: Box) -> tuple[int, int, int, int]:
    return box.x, box.y, box.width, box.height


# ---- a live server: helpers ----------------------------------------------------------


def assert_serving(server: RunningServer, count: int | None = None) -> None:
    """The server still answers Stats and says SERVING."""
    with server.client(timeout=10) as client:
        stats = client.stats()
    if count is not None:
        assert stats.count == count
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def raw_call(server: RunningServer, method: str, payloads: list[bytes]) -> grpc.StatusCode:
    """Send hand-made serialized requests; the status the server answers with."""
    with grpc.insecure_channel(server.address) as channel:
        try:
            if method == "Add":
                add = channel.stream_stream(
                    f"{SERVICE}/Add",
                    request_serializer=None,
                    response_deserializer=pb.AddResponse.FromString,
                )
                list(add(iter(payloads), timeout=10))
            else:
                (payload,) = payloads
                unary = channel.unary_unary(
                    f"{SERVICE}/{method}", request_serializer=None, response_deserializer=None
                )
                unary(payload, timeout=10)
        except grpc.RpcError as error:
            assert isinstance(error, grpc.Call)
            return error.code()
    return grpc.StatusCode.OK


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _status(call: Callable[[], object]) -> FaceSearchError:
    with pytest.raises(FaceSearchError) as error:
        call()
    return error.value


# ---- a live face server: image bytes -------------------------------------------------


def _bad_image(faces_dir: Path, kind: str) -> bytes:
    photo = (faces_dir / "img1.jpg").read_bytes()
    return {
        "garbage": bytes(range(256)) * 4,
        "truncated-jpeg": photo[: len(photo) // 2],  # OpenCV 4.14 refuses it whole
        "empty": b"",
        "png-bomb": png_bomb(20000, 20000),
        "jpeg-bomb": jpeg_claiming(60000, 60000),
    }[kind]


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("garbage", "not a decodable image"),
        ("truncated-jpeg", "not a decodable image"),
        ("empty", "empty"),
        ("png-bomb", "--max-image-pixels"),
        ("jpeg-bomb", "--max-image-pixels"),
    ],
)
def test_bad_image_bytes_are_invalid_argument_everywhere(
    start_server: Callable[..., RunningServer], faces_dir: Path, kind: str, says: str
) -> None:
    server = start_server()
    image = _bad_image(faces_dir, kind)
    with server.client(timeout=30) as client:
        for call in (lambda: client.embed(image), lambda: client.query(image=image, k=1)):
            error = _status(call)
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert says in error.details
        # In an Add stream the bad image fails alone; the raw vector beside it is stored.
        results = client.add(
            [AddItem(image=image), AddItem(vector=np.ones(FACE_DIM, np.float32))],
            batch_size=2,
        )
        (batch,) = list(results)
        assert batch[0].error is not None and batch[0].error.code_name == "INVALID_ARGUMENT"
        assert says in batch[0].error.message
        assert batch[1].ok
    assert_serving(server, count=1)


def test_messages_over_the_limit_are_resource_exhausted(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_message_mb=1)
    too_big = b"\xff\xd8" + b"\0" * (2 * 1024 * 1024)
    with server.client(timeout=30) as client:
        assert _status(lambda: client.embed(too_big)).code == grpc.StatusCode.RESOURCE_EXHAUSTED
        error = _status(lambda: client.add_images([too_big]))
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_serving(server, count=0)


@pytest.mark.parametrize(
    ("name", "original"),
    [
        ("img40.jpg:grey-jpeg", "img40.jpg"),  # a 1-channel JPEG, decoded 1/4 reduced
        ("img1.jpg:grey-png", "img1.jpg:small-png"),
        ("img1.jpg:16bit-png", "img1.jpg:small-png"),
        ("img1.jpg:16bit-grey-png", "img1.jpg:small-png"),
        # Boxes are in the frame the photo is viewed in, as when its pixels stood upright.
        ("img40.jpg:exif-6", "img40.jpg"),  # decoded 1/4 reduced
        ("img1.jpg:exif-8", "img1.jpg"),  # decoded 1/2 reduced
        ("img12.jpg:exif-3", "img12.jpg"),  # decoded at full size
    ],
)
def test_unusual_but_valid_images_find_their_face(
    start_server: Callable[..., RunningServer], faces_dir: Path, name: str, original: str
) -> None:
    server = start_server()
    with server.client(timeout=60) as client:
        (expected,) = client.embed(photo_variant(faces_dir, original)).faces
        (face,) = client.embed(photo_variant(faces_dir, name)).faces
    assert expected.box is not None and face.box is not None
    want = expected.box
    tolerance = 0.1 * want.width
    for a, b in zip(_box_tuple(face.box), _box_tuple(want), strict=True):
        assert abs(a - b) <= tolerance, (face.box, want)
    assert_serving(server)


# ---- a live vector server: requests the proto allows but the server must refuse ------


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"k": 10_001}, "10000"),  # Config.max_k
        ({"k": 2**31 - 1}, "10000"),
        ({"ef": 0}, "ef"),
        ({"ef": 100_001}, "ef"),
        ({"ef": 2**32 - 1}, "ef"),
        ({"vector": np.full(DIM, np.inf)}, "Inf"),
        ({"vector": np.r_[np.ones(DIM - 1), -np.inf]}, "Inf"),
    ],
    ids=["k-over-max_k", "k-int32-max", "ef-0", "ef-over-100000", "ef-uint32-max", "inf", "-inf"],
)
def test_out_of_range_queries_are_invalid_argument(
    vector_server: RunningServer, query: dict[str, object], says: str
) -> None:
    with vector_server.client(timeout=10) as client:
        client.add_vectors(np.eye(DIM)[:3])
        error = _status(lambda: client.query(**{"vector": np.ones(DIM), "k": 3, **query}))  # type: ignore[arg-type]
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert says in error.details
    assert_serving(vector_server, count=3)


def test_the_largest_k_and_ef_allowed_work(vector_server: RunningServer) -> None:
    with vector_server.client(timeout=30) as client:
        client.add_vectors(np.eye(DIM)[:3])
        assert len(client.query(vector=np.ones(DIM), k=10_000).results[0].neighbors) == 3
        assert len(client.query(vector=np.ones(DIM), k=2, ef=100_000).results[0].neighbors) == 2
    assert_serving(vector_server, count=3)


@pytest.mark.parametrize("missing", [2**64 - 1, 3])
@pytest.mark.parametrize("rpc", ["get", "delete", "query"])
def test_unknown_ids_are_not_found(vector_server: RunningServer, rpc: str, missing: int) -> None:
    with vector_server.client(timeout=10) as client:
        client.add_vectors(np.eye(DIM)[:3])  # ids 0, 1, 2
        call = {
            "get": lambda: client.get(missing),
            "delete": lambda: client.delete([missing]),
            "query": lambda: client.query(id=missing, k=1),
        }[rpc]
        error = _status(call)
        assert error.code == grpc.StatusCode.NOT_FOUND
        assert str(missing) in error.details
    assert_serving(vector_server, count=3)


ONE_VECTOR = pb.AddItem(vector=pb.Vector(values=[1.0] * DIM)).SerializeToString()
QUERY_VECTOR = field(2, pb.Vector(values=[1.0] * DIM).SerializeToString()) + b"\x20\x01"  # k=1


# Each builds a request around one string field's raw bytes, so the same request with
# valid UTF-8 shows the hand-made encoding is otherwise sound.
@pytest.mark.parametrize(
    ("method", "build", "bad"),
    [
        # AddItem.label (field 3) and AddItem.metadata (field 5), inside AddRequest.items.
        ("Add", lambda text: field(1, ONE_VECTOR + field(3, text)), b"caf\xe9"),
        ("Add", lambda text: field(1, ONE_VECTOR + field(5, text)), b'{"name": "\xff\xfe"}'),
        # AddRequest.vector_model (field 2).
        ("Add", lambda text: field(1, ONE_VECTOR) + field(2, text), b"\xc3\x28"),
        # QueryRequest.vector_model (field 6); an encoded surrogate is not UTF-8 either.
        ("Query", lambda text: QUERY_VECTOR + field(6, text), b"\xed\xa0\x80"),
    ],
    ids=["label", "metadata", "vector_model", "query-vector_model"],
)
def test_strings_that_are_not_utf8_are_invalid_argument(
    vector_server: RunningServer, method: str, build: Callable[[bytes], bytes], bad: bytes
) -> None:
    assert raw_call(vector_server, method, [build(bad)]) == grpc.StatusCode.INVALID_ARGUMENT
    assert_serving(vector_server, count=0)
    assert raw_call(vector_server, method, [build("café".encode())]) == grpc.StatusCode.OK
    assert_serving(vector_server, count=1 if method == "Add" else 0)


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("Query", b"\x0a\xff\xff\xff\x0f"),  # a length running past the end
        ("Get", b"\xff\xff\xff"),  # an invalid wire type
        ("Add", b"\x0a\x05\x12\x03"),  # an item cut short
    ],
    ids=["query", "get", "add"],
)
def test_bytes_that_are_not_a_message_are_invalid_argument(
    vector_server: RunningServer, method: str, payload: bytes
) -> None:
    assert raw_call(vector_server, method, [payload]) == grpc.StatusCode.INVALID_ARGUMENT
    assert_serving(vector_server, count=0)


def test_requests_with_nothing_to_act_on_are_invalid_argument(
    vector_server: RunningServer,
) -> None:
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = pb_grpc.FaceSearchStub(channel)
        for call, request in [
            (stub.Query, pb.QueryRequest(k=1)),  # no image, vector or id
            (stub.Delete, pb.DeleteRequest()),  # no ids
        ]:
            with pytest.raises(grpc.RpcError) as error:
                call(request, timeout=10)
            assert isinstance(error.value, grpc.Call)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_serving(vector_server, count=0)


LABEL_LIMIT, METADATA_LIMIT = 1024, 65536  # bytes, by default


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"id": 7}, "more than once"),  # the batch's first item has id 7 too
        # Limits count UTF-8 bytes: 513 characters here, 1025 bytes.
        ({"label": "é" * (LABEL_LIMIT // 2) + "a"}, "--max-label-bytes"),
        ({"metadata": "é" * (METADATA_LIMIT // 2) + "a"}, "--max-metadata-bytes"),
        ({"vector": None}, "neither an image nor a vector"),
    ],
    ids=["duplicate-id", "label-1025-bytes", "metadata-65537-bytes", "no-data"],
)
def test_bad_items_fail_alone_with_invalid_argument(
    vector_server: RunningServer, bad: dict[str, object], says: str
) -> None:
    vector = np.ones(DIM, np.float32)
    items = [
        AddItem(vector=vector, id=7),
        AddItem(**{"vector": vector, **bad}),  # type: ignore[arg-type]
        AddItem(vector=vector * 2, label="fine"),
    ]
    with vector_server.client(timeout=10) as client:
        (results,) = list(client.add(items, batch_size=3))
    assert [r.ok for r in results] == [True, False, True]
    error = results[1].error
    assert error is not None
    assert error.code_name == "INVALID_ARGUMENT"
    assert says in error.message
    assert_serving(vector_server, count=2)


def test_labels_and_metadata_up_to_the_limits_are_kept_whole(
    vector_server: RunningServer,
) -> None:
    label = "é" * (LABEL_LIMIT // 2)  # exactly 1024 bytes
    metadata = "€" * (METADATA_LIMIT // 3) + "a"  # exactly 65536 bytes
    assert len(label.encode()) == LABEL_LIMIT and len(metadata.encode()) == METADATA_LIMIT
    with vector_server.client(timeout=10) as client:
        (result,) = client.add_vectors(np.ones(DIM), labels=[label], metadata=[metadata])
        assert result.ok, result.error
        assert result.id is not None
        item = client.get(result.id)
    assert (item.label, item.metadata) == (label, metadata)
    assert_serving(vector_server, count=1)
