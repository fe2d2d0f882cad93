"""The picture of `fsclient identify --show OUT.png`.

On top, the photo with each face boxed and named: green when known, red when unknown. Below,
one row per face, as in `query --show` (fsclient.picture, whose tiles and helpers this
reuses): the face cropped from the photo, then one tile per candidate person with the
thumbnail of their nearest item, distance and similarity, framed green for the person the
face was identified as and red otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fsclient.format import format_distance
from fsclient.format_people import identity_name, shown
from fsclient.picture import (
    BACKGROUND,
    CELL_HEIGHT,
    CELL_WIDTH,
    GAP,
    MATCH,
    NO_MATCH,
    TEXT,
    MissingPillowError,
    _crop_face,
    _decode,
    _draw_tile,
    _fit,
    _font,
)
from fsclient.types import Identification, IdentifyResult

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

PHOTO_HEIGHT = 360  # the photo on top is scaled to at most this tall
MIN_WIDTH = 3 * CELL_WIDTH + GAP  # room for the photo when few candidates came back
BOX_WIDTH = 3
TAG_HEIGHT = 18
TAG_TEXT = (255, 255, 255)


def _colour(identification: Identification) -> tuple[int, int, int]:
    return MATCH if identification.known else NO_MATCH


def draw_identities(
    photo: bytes | None, result: IdentifyResult, thumbnails: Mapping[int, bytes | None]
) -> bytes:
    """A PNG of the identified faces. `photo` is the image sent (None for a vector: no photo
    on top, and a placeholder face tile); `thumbnails` maps candidates' item ids to their
    thumbnail JPEG, a missing or undecodable one drawn as a placeholder."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise MissingPillowError() from None

    if not result.results:
        raise ValueError("no faces were identified: nothing to draw")
    columns = 1 + max(len(r.candidates) for r in result.results)
    width = max(GAP + columns * CELL_WIDTH, MIN_WIDTH)
    image = _decode(photo)
    fitted = None
    if image is not None:
        from PIL import ImageOps

        fitted = ImageOps.contain(image, (width - 2 * GAP, PHOTO_HEIGHT))
    photo_height = fitted.height + GAP if fitted is not None else 0
    height = GAP + photo_height + len(result.results) * CELL_HEIGHT
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()

    if image is not None and fitted is not None:
        left = (width - fitted.width) // 2
        canvas.paste(fitted, (left, GAP))
        _draw_boxes(draw, font, result, (left, GAP), fitted.width / image.width)

    for row, identification in enumerate(result.results):
        top = GAP + photo_height + row * CELL_HEIGHT
        face = identification.face
        box = face.box if face is not None else None
        crop = _crop_face(image, box) if image is not None else None
        colour = _colour(identification)
        similarity = f"similarity {identification.similarity:.2f}"
        caption = [(f"face {row + 1}", TEXT), (identity_name(identification), colour)]
        caption.append((similarity if identification.candidates else "", TEXT))
        _draw_tile(canvas, draw, font, GAP, top, crop, colour, caption)

        for rank, candidate in enumerate(identification.candidates, start=1):
            chosen = identification.known and rank == 1
            frame = MATCH if chosen else NO_MATCH
            caption = [
                (f"{rank}. {shown(candidate.person)}", TEXT),
                (f"distance {format_distance(candidate.distance)}", TEXT),
                (f"similarity {candidate.similarity:.2f}", frame),
            ]
            thumbnail = _decode(thumbnails.get(candidate.id))
            left = GAP + rank * CELL_WIDTH
            _draw_tile(canvas, draw, font, left, top, thumbnail, frame, caption)

    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def _draw_boxes(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    result: IdentifyResult,
    origin: tuple[int, int],
    scale: float,
) -> None:
    """Each face's box on the scaled photo, with a tag `N name` above it (inside the box
    when the box touches the photo's top)."""
    for number, identification in enumerate(result.results, start=1):
        face = identification.face
        if face is None or face.box is None:
            continue
        box, colour = face.box, _colour(identification)
        x0 = origin[0] + round(box.x * scale)
        y0 = origin[1] + round(box.y * scale)
        x1 = origin[0] + round((box.x + box.width) * scale)
        y1 = origin[1] + round((box.y + box.height) * scale)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=BOX_WIDTH)
        text = _fit(draw, font, f"{number} {identity_name(identification)}", 2 * CELL_WIDTH)
        tag_top = y0 - TAG_HEIGHT if y0 - TAG_HEIGHT >= origin[1] else y0
        tag_right = x0 + round(draw.textlength(text, font=font)) + 6
        draw.rectangle((x0, tag_top, tag_right, tag_top + TAG_HEIGHT), fill=colour)
        draw.text((x0 + 3, tag_top + 1), text, TAG_TEXT, font)
