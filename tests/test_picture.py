"""The match picture, drawn from hand-made results: no server."""

from __future__ import annotations

import io

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from fsclient.picture import CELL_HEIGHT, CELL_WIDTH, GAP, draw_matches, grid_size  # noqa: E402
from fsclient.types import Box, Face, FaceMatches, Neighbor, QueryResult  # noqa: E402


def jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="JPEG")
    return out.getvalue()


def neighbors(*ids: int) -> list[Neighbor]:
    return [
        Neighbor(id=i, label=f"person-{i}.jpg", metadata="", distance=0.1 * i, match=i < 3)
        for i in ids
    ]


def query_face(x: int, y: int, size: int) -> Face:
    return Face(box=Box(x, y, size, size), confidence=1.0, embedding=np.zeros(4, np.float32))


def read_png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_one_row_per_face_and_one_tile_per_neighbor_plus_the_query() -> None:
    result = QueryResult(
        results=[
            FaceMatches(face=query_face(10, 10, 50), neighbors=neighbors(1, 2, 3)),
            # A box running off the image must be clipped, not crash.
            FaceMatches(face=query_face(250, 150, 100), neighbors=neighbors(4)),
        ]
    )
    thumbnails = {
        1: jpeg(80, 100, (200, 0, 0)),
        2: None,
        3: b"not a jpeg",
        4: jpeg(40, 40, (0, 0, 9)),
    }
    picture = read_png(draw_matches(jpeg(300, 200, (0, 120, 0)), result, thumbnails))

    assert picture.size == (GAP + 4 * CELL_WIDTH, GAP + 2 * CELL_HEIGHT)
    assert picture.size == grid_size(rows=2, columns=4)


def test_frames_are_green_for_a_match_and_red_otherwise() -> None:
    result = QueryResult(results=[FaceMatches(face=None, neighbors=neighbors(1, 5))])
    picture = read_png(draw_matches(None, result, {}))  # vector query, no thumbnails

    assert picture.size == grid_size(rows=1, columns=3)
    # The frame's top-left pixel of each neighbour tile (column 1: match, column 2: not).
    match_frame = picture.getpixel((GAP + CELL_WIDTH + 1, GAP + 1))
    no_match_frame = picture.getpixel((GAP + 2 * CELL_WIDTH + 1, GAP + 1))
    assert match_frame[1] > 100 and match_frame[0] < 100
    assert no_match_frame[0] > 150 and no_match_frame[1] < 100


def test_the_query_tile_shows_the_cropped_face() -> None:
    image = Image.new("RGB", (400, 400), (0, 0, 255))
    image.paste((255, 255, 0), (150, 150, 250, 250))  # the "face": a yellow square
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    result = QueryResult(results=[FaceMatches(face=query_face(150, 150, 100), neighbors=[])])

    picture = read_png(draw_matches(buffer.getvalue(), result, {}))

    assert picture.size == grid_size(rows=1, columns=1)
    centre = picture.getpixel((GAP + CELL_WIDTH // 2, GAP + 4 + 80))
    assert centre[0] > 200 and centre[1] > 200 and centre[2] < 60  # the face, not the blue


def test_nothing_to_draw_is_an_error() -> None:
    with pytest.raises(ValueError, match="no faces"):
        draw_matches(None, QueryResult(results=[]), {})
