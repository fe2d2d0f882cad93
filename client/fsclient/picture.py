"""The match picture of `fsclient query --show OUT.png`: one row per query face.

Each row holds the query face (cropped from the query image with a margin) and then one
tile per neighbour: its enrolled face thumbnail, label, distance and verdict, framed green
for a match and red otherwise. Pillow is an optional extra, imported only when drawing, so
the thin client keeps to grpcio, protobuf and numpy.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fsclient.format import format_distance, neighbor_name
from fsclient.format_query import decided, neighbor_verdict
from fsclient.types import Box, QueryResult

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

PILLOW_MISSING = "--show needs Pillow: pip install 'facesearch[picture]'"

TILE = 160  # the square picture area of one tile
BORDER = 4  # the verdict frame around it
CAPTION_LINES = 3
LINE_HEIGHT = 17
GAP = 8  # between tiles and around the grid
CELL_WIDTH = TILE + 2 * BORDER + GAP
CELL_HEIGHT = TILE + 2 * BORDER + CAPTION_LINES * LINE_HEIGHT + GAP
HEAD_KEPT = 4  # characters a shortened caption keeps of its start
# The query face gets 25% of its box on every side: hair and chin make it recognisable.
CROP_MARGIN = 0.25

BACKGROUND = (255, 255, 255)
TILE_BACKGROUND = (40, 40, 40)
PLACEHOLDER = (150, 150, 150)
TEXT = (20, 20, 20)
QUERY_FRAME = (60, 90, 160)
MATCH = (30, 150, 50)
NO_MATCH = (200, 40, 40)
UNDECIDED = (110, 110, 110)  # no threshold on the server: neither a match nor not


class MissingPillowError(ImportError):
    def __init__(self) -> None:
        super().__init__(PILLOW_MISSING)


def require_pillow() -> None:
    """Fail early, before a slow query, when the picture could not be drawn anyway."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        raise MissingPillowError() from None


def grid_size(rows: int, columns: int) -> tuple[int, int]:
    """The picture's (width, height) in pixels for `rows` faces and `columns` tiles a row."""
    return GAP + columns * CELL_WIDTH, GAP + rows * CELL_HEIGHT


def draw_matches(
    query_image: bytes | None,
    result: QueryResult,
    neighbor_images: Mapping[int, bytes | None],
) -> bytes:
    """A PNG of the query faces and their neighbours.

    `query_image` is the encoded image that was searched (None for a vector query: the
    query tile is then a placeholder). `neighbor_images` maps neighbour ids to their
    thumbnail JPEG; a missing, empty or undecodable one becomes a grey placeholder.
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise MissingPillowError() from None

    if not result.results:
        raise ValueError("the query found no faces: nothing to draw")
    columns = 1 + max(len(matches.neighbors) for matches in result.results)
    canvas = Image.new("RGB", grid_size(len(result.results), columns), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    query = _decode(query_image)

    for row, matches in enumerate(result.results):
        top = GAP + row * CELL_HEIGHT
        box = matches.face.box if matches.face is not None else None
        face_picture = _crop_face(query, box) if query is not None else None
        title = f"face {row + 1}" if len(result.results) > 1 else "query"
        # A plain x: the default font has no multiplication sign.
        where = f"{box.width}x{box.height} at {box.x},{box.y}" if box else ""
        caption = [(title, TEXT), (where, TEXT), ("", TEXT)]
        _draw_tile(canvas, draw, font, GAP, top, face_picture, QUERY_FRAME, caption, "no picture")

        said = decided(result)
        for rank, neighbor in enumerate(matches.neighbors, start=1):
            left = GAP + rank * CELL_WIDTH
            colour = (MATCH if neighbor.match else NO_MATCH) if said else UNDECIDED
            caption = [
                (f"{rank}. {neighbor_name(neighbor)}", TEXT),
                (f"distance {format_distance(neighbor.distance)}, id {neighbor.id}", TEXT),
                (neighbor_verdict(neighbor, said), colour),
            ]
            thumbnail = _decode(neighbor_images.get(neighbor.id))
            _draw_tile(canvas, draw, font, left, top, thumbnail, colour, caption)

    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=14)
    except (TypeError, OSError):
        # Pillow < 10.1 or no FreeType: the small bitmap font is still legible.
        return ImageFont.load_default()


def _decode(data: bytes | None) -> Image.Image | None:
    if not data:
        return None
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            # The server (OpenCV) decodes with the EXIF orientation applied, and its face
            # boxes are in that frame; without this a phone photo's crop would miss.
            return ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _crop_face(image: Image.Image, box: Box | None) -> Image.Image:
    """The face box grown by CROP_MARGIN and clipped to the image; all of it without a box."""
    if box is None or box.width <= 0 or box.height <= 0:
        return image
    margin = int(CROP_MARGIN * max(box.width, box.height))
    left = max(0, box.x - margin)
    top = max(0, box.y - margin)
    right = min(image.width, box.x + box.width + margin)
    bottom = min(image.height, box.y + box.height + margin)
    if right <= left or bottom <= top:
        return image  # a box outside the image: show what we have rather than nothing
    return image.crop((left, top, right, bottom))


def _draw_tile(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    left: int,
    top: int,
    picture: Image.Image | None,
    frame: tuple[int, int, int],
    caption: list[tuple[str, tuple[int, int, int]]],
    missing: str = "no photo stored",  # said as it is: an item enrolled as a vector has none
) -> None:
    from PIL import ImageOps

    outer = TILE + 2 * BORDER
    draw.rectangle((left, top, left + outer - 1, top + outer - 1), fill=frame)
    inner = (left + BORDER, top + BORDER)
    if picture is None:
        draw.rectangle((*inner, inner[0] + TILE - 1, inner[1] + TILE - 1), fill=PLACEHOLDER)
        text = missing
        width = draw.textlength(text, font=font)
        draw.text((inner[0] + (TILE - width) / 2, inner[1] + TILE / 2 - 8), text, TEXT, font)
    else:
        draw.rectangle((*inner, inner[0] + TILE - 1, inner[1] + TILE - 1), fill=TILE_BACKGROUND)
        fitted = ImageOps.contain(picture, (TILE, TILE))
        offset = ((TILE - fitted.width) // 2, (TILE - fitted.height) // 2)
        canvas.paste(fitted, (inner[0] + offset[0], inner[1] + offset[1]))
    for line, (text, colour) in enumerate(caption):
        y = top + outer + 2 + line * LINE_HEIGHT
        draw.text((left, y), _fit(draw, font, text, outer), colour, font)


def _fit(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    text: str,
    width: int,
) -> str:
    """Shorten text with an ellipsis in the middle so it stays inside its tile: the end of
    a label is what tells items apart (`photos/alice/img12.jpg`: the file name)."""
    if draw.textlength(text, font=font) <= width:
        return text
    head = text[:HEAD_KEPT]  # the rank, "3. ", and a letter
    for tail in range(len(text) - HEAD_KEPT - 1, 0, -1):  # the longest end that fits
        shortened = f"{head}...{text[-tail:]}"
        if draw.textlength(shortened, font=font) <= width:
            return shortened
    return head + "..."
