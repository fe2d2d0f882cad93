"""The match picture: drawn from hand-made results, and read back from the real CLI's PNG."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

Image = pytest.importorskip("PIL.Image")
from PIL import ImageDraw  # noqa: E402

from fsclient.picture import (  # noqa: E402
    BACKGROUND,
    BORDER,
    CELL_HEIGHT,
    CELL_WIDTH,
    GAP,
    MATCH,
    NO_MATCH,
    PLACEHOLDER,
    QUERY_FRAME,
    TILE,
    UNDECIDED,
    _fit,
    _font,
    draw_matches,
    grid_size,
)
from fsclient.types import Box, Face, FaceMatches, Neighbor, QueryResult  # noqa: E402
from support import Gallery, run_cli  # noqa: E402

Pixels = npt.NDArray[np.uint8]
OUTER = TILE + 2 * BORDER  # a tile with its frame


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
    result = QueryResult(
        results=[FaceMatches(face=None, neighbors=neighbors(1, 5))], threshold=0.25
    )
    picture = read_png(draw_matches(None, result, {}))  # vector query, no thumbnails

    assert picture.size == grid_size(rows=1, columns=3)
    # The frame's top-left pixel of each neighbour tile (column 1: match, column 2: not).
    match_frame = picture.getpixel((GAP + CELL_WIDTH + 1, GAP + 1))
    no_match_frame = picture.getpixel((GAP + 2 * CELL_WIDTH + 1, GAP + 1))
    assert match_frame[1] > 100 and match_frame[0] < 100
    assert no_match_frame[0] > 150 and no_match_frame[1] < 100
    # What the PNG readers below rely on, on a picture whose every tile is known.
    pixels = np.asarray(picture.convert("RGB"))
    assert tile_colours(pixels, 0) == [QUERY_FRAME, MATCH, NO_MATCH]
    assert all(is_placeholder(tile_picture(pixels, 0, column)) for column in range(3))


def test_without_a_threshold_frames_are_neither_green_nor_red() -> None:
    undecided = [replace(n, match=False) for n in neighbors(1, 5)]  # as such a server says
    result = QueryResult(results=[FaceMatches(face=None, neighbors=undecided)])
    pixels = np.asarray(read_png(draw_matches(None, result, {})).convert("RGB"))
    assert tile_colours(pixels, 0) == [QUERY_FRAME, UNDECIDED, UNDECIDED]


def test_a_long_label_keeps_its_end_the_file_name() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = _font()  # the pictures' own
    label = "1. /home/someone/photos/2024/holidays/the-beach/alice/img12.jpg"
    fitted = _fit(draw, font, label, OUTER)
    assert fitted.startswith("1. /...") and fitted.endswith("/img12.jpg")
    assert draw.textlength(fitted, font=font) <= OUTER
    assert _fit(draw, font, "1. alice", OUTER) == "1. alice"


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


# ---- the real CLI's PNG, read back -------------------------------------------------------


def frame_runs(pixels: Pixels, y: int) -> list[tuple[int, int, tuple[int, int, int]]]:
    """(start x, length, colour) of each run of one non-background colour along row y."""
    row = [(int(r), int(g), int(b)) for r, g, b in pixels[y]]
    runs: list[tuple[int, int, tuple[int, int, int]]] = []
    x = 0
    while x < len(row):
        colour = row[x]
        start = x
        while x < len(row) and row[x] == colour:
            x += 1
        if colour != BACKGROUND:
            runs.append((start, x - start, colour))
    return runs


def tile_colours(pixels: Pixels, face_row: int) -> list[tuple[int, int, int]]:
    """The frame colour of each tile in a face's row, read along its frame's top edge.

    Asserts each frame sits where the layout puts tile N and is a whole tile wide, so a
    tile too many, too few or out of place fails here.
    """
    runs = frame_runs(pixels, GAP + face_row * CELL_HEIGHT + 1)
    assert [(start, length) for start, length, _ in runs] == [
        (GAP + column * CELL_WIDTH, OUTER) for column in range(len(runs))
    ]
    return [colour for _, _, colour in runs]


def tile_picture(pixels: Pixels, face_row: int, column: int) -> Pixels:
    """The picture area inside one tile's frame."""
    left = GAP + column * CELL_WIDTH + BORDER
    top = GAP + face_row * CELL_HEIGHT + BORDER
    return pixels[top : top + TILE, left : left + TILE]


def is_placeholder(tile: Pixels) -> bool:
    # The grey square with "no picture" written across its middle.
    return bool((tile == PLACEHOLDER).all(axis=-1).mean() > 0.8)


def show(gallery: Gallery, out: Path, *query: str) -> tuple[dict[str, Any], Pixels]:
    """`fsclient --json query QUERY --show OUT`: the result and the PNG's pixels."""
    run = run_cli("--json", "query", *query, "--show", str(out), server=gallery.server.address)
    assert run.returncode == 0, run.stderr
    with Image.open(out) as image:
        assert image.format == "PNG"
        return json.loads(run.stdout), np.asarray(image.convert("RGB"))


@pytest.mark.parametrize(
    ("photo", "faces", "k"), [("probe", 1, 1), ("probe", 1, 4), ("couple.jpg", 2, 2)]
)
def test_the_cli_picture_has_a_row_per_face_and_a_tile_per_neighbour_plus_the_query(
    gallery: Gallery, faces_dir: Path, tmp_path: Path, photo: str, faces: int, k: int
) -> None:
    photo = sorted(gallery.probes)[0] if photo == "probe" else photo
    result, pixels = show(gallery, tmp_path / "m.png", str(faces_dir / photo), "-k", str(k))

    assert len(result["results"]) == faces
    height, width, _ = pixels.shape
    assert (width, height) == (GAP + (1 + k) * CELL_WIDTH, GAP + faces * CELL_HEIGHT)
    for row, matches in enumerate(result["results"]):
        assert len(matches["neighbors"]) == k  # the gallery holds more than k faces
        verdicts = [MATCH if n["match"] else NO_MATCH for n in matches["neighbors"]]
        assert tile_colours(pixels, row) == [QUERY_FRAME, *verdicts]
        for column in range(1 + k):  # the query face and each thumbnail: real photos
            tile = tile_picture(pixels, row, column)
            assert not is_placeholder(tile) and tile.std() > 10, (row, column)


def test_the_cli_picture_of_an_id_query_shows_its_stored_thumbnail(
    gallery: Gallery, tmp_path: Path
) -> None:
    result, pixels = show(gallery, tmp_path / "m.png", "--id", "0", "-k", "3")

    [matches] = result["results"]
    assert matches["neighbors"][0]["id"] == 0  # itself, at distance 0
    height, width, _ = pixels.shape
    assert (width, height) == (GAP + 4 * CELL_WIDTH, GAP + CELL_HEIGHT)
    assert len(tile_colours(pixels, 0)) == 4
    query_tile = tile_picture(pixels, 0, 0)
    assert not is_placeholder(query_tile)
    # The query tile is item 0's thumbnail, uncropped: the very picture of neighbour 1.
    assert np.array_equal(query_tile, tile_picture(pixels, 0, 1))
    assert not np.array_equal(query_tile, tile_picture(pixels, 0, 2))
