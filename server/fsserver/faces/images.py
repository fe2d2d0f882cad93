"""Image bytes → pixels, done here rather than by DeepFace.

DeepFace accepts strings and fetches any http(s):// one it is given, so a client's bytes
are decoded here and only pixel arrays reach it. Large photos are downscaled before
detection: on 2 cores detection dominates, and ≤640 px kept every face of the test set.

The pixel count is checked from the header before anything is decoded: a few kilobytes of
PNG can claim 20000 x 20000 pixels, which OpenCV would happily allocate (over a gigabyte).
JPEGs far larger than needed are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (in the
DCT domain), which is several times faster and needs a fraction of the memory.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from fsclient.types import Box
from fsserver.errors import InvalidArgument
from fsserver.faces.hints import undecodable_image_hint

Pixels = npt.NDArray[np.uint8]
THUMBNAIL_SIDE = 160
DEFAULT_MAX_PIXELS = 120_000_000  # a 108 MP phone photo passes; decoded it is 360 MB

# The size check below is ours (--max-image-pixels); Pillow's own warning for images over
# Image.MAX_IMAGE_PIXELS would only be noise on stderr. Its DecompressionBombError (over
# twice that) is caught where the header is read.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: phones' multi-picture JPEGs
# libjpeg's DCT-domain downscales, largest first.
_REDUCED = (
    (8, cv2.IMREAD_REDUCED_COLOR_8),
    (4, cv2.IMREAD_REDUCED_COLOR_4),
    (2, cv2.IMREAD_REDUCED_COLOR_2),
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (all but DHT C4, JPG C8 and DAC CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class DecodedImage:
    pixels: Pixels  # BGR, downscaled to at most max_side
    scale: float  # downscaled size / original size (≤ 1)

    def to_original(self, box: Box) -> Box:
        """A box found on the downscaled pixels, in the coordinates of the image as sent."""
        s = self.scale
        return Box(
            x=round(box.x / s),
            y=round(box.y / s),
            width=round(box.width / s),
            height=round(box.height / s),
        )


@dataclass(frozen=True)
class _Header:
    format: str
    width: int  # as stored, before any EXIF orientation
    height: int


def decode_image(data: bytes, max_side: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode JPEG/PNG/BMP/WebP/TIFF bytes to BGR uint8 (grey and 16-bit converted).

    Images over `max_pixels` are refused from their header, before any decoding. The EXIF
    orientation is applied, so `pixels` and boxes are in the frame the photo is viewed in.
    """
    if not data:
        raise InvalidArgument("the image is empty (0 bytes)")
    header = _read_header(data, max_pixels)
    if header is not None:
        _check_pixels(header.width, header.height, max_pixels)
    else:
        # Pillow cannot read it; OpenCV may still (a rarer format, or a file Pillow finds
        # too damaged). Check what the bytes claim where that is cheap to read.
        claimed = _sniff_size(data)
        if claimed is not None:
            _check_pixels(*claimed, max_pixels)
    reduced = _decode_reduced(data, header, max_side) if header is not None else None
    if reduced is not None:
        pixels, width, height = reduced
    else:
        decoded = cast(
            Pixels | None, cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        )
        if decoded is None:
            raise InvalidArgument(
                f"the image bytes ({len(data)} bytes) are not a decodable image "
                f"(JPEG, PNG, BMP, WebP or TIFF){undecodable_image_hint(data)}"
            )
        pixels = decoded
        height, width = pixels.shape[:2]
        # Catches what no header told (OpenCV caps a decode at 2**30 pixels by itself).
        _check_pixels(width, height, max_pixels)
    scale = min(1.0, max_side / max(height, width))
    size = (width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if (pixels.shape[1], pixels.shape[0]) != size:
        pixels = cast(Pixels, cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
    return DecodedImage(pixels=pixels, scale=scale)


def _megapixels(pixels: int) -> str:
    value = pixels / 1e6
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InvalidArgument(
            f"the image is {width}×{height} = {_megapixels(width * height)} megapixels; "  # noqa: RUF001
            f"the limit is {_megapixels(max_pixels)} megapixels (--max-image-pixels)"
        )


def _read_header(data: bytes, max_pixels: int) -> _Header | None:
    """Format and size from the header alone (Pillow opens lazily): None when Pillow
    cannot read the header."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return _Header(image.format or "", width, height)
    except Image.DecompressionBombError as error:
        claimed = _sniff_size(data)  # for a message with the width and height
        if claimed is not None:
            _check_pixels(*claimed, max_pixels)
        _refuse_bomb(str(error), max_pixels)
        return None
    except Exception:  # hostile bytes break header parsers in many ways
        return None


def _refuse_bomb(message: str, max_pixels: int) -> None:
    """Pillow refused the header as a decompression bomb (over twice its own limit,
    whatever --max-image-pixels says): refuse it too unless our limit is higher still."""
    match = re.search(r"\((\d+) pixels\)", message)
    if match is not None:
        pixels = int(match.group(1))
        if pixels > max_pixels:
            raise InvalidArgument(
                f"the image is {_megapixels(pixels)} megapixels; "
                f"the limit is {_megapixels(max_pixels)} megapixels (--max-image-pixels)"
            )
    elif Image.MAX_IMAGE_PIXELS is not None and max_pixels <= 2 * Image.MAX_IMAGE_PIXELS:
        raise InvalidArgument(
            f"the image is over {_megapixels(2 * Image.MAX_IMAGE_PIXELS)} megapixels; "
            f"the limit is {_megapixels(max_pixels)} megapixels (--max-image-pixels)"
        )
    # Otherwise within our (raised) limit: the caller decodes with OpenCV and checks after.


def _sniff_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) claimed by a PNG or JPEG header that Pillow could not open."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF or data[i + 1] in (0x00, 0xFF):
            i += 1  # junk or fill bytes between segments, which libjpeg skips
            continue
        marker = data[i + 1]
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 2  # segments without a length
            continue
        if marker in (0xD9, 0xDA):
            return None  # end of image or start of scan before any frame header
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _decode_reduced(data: bytes, header: _Header, max_side: int) -> tuple[Pixels, int, int] | None:
    """A JPEG at least twice too large decoded by libjpeg at 1/2, 1/4 or 1/8 scale, still
    ≥ max_side on its long side; with the width and height of the full-size decode (EXIF
    orientation applied). None where this does not apply: decode at full size instead."""
    if header.format not in _JPEG_FORMATS:
        return None
    long_side = max(header.width, header.height)
    chosen = next(((f, flag) for f, flag in _REDUCED if long_side >= f * max_side), None)
    if chosen is None:
        return None
    factor, flag = chosen
    pixels = cast(Pixels | None, cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag))
    if pixels is None:
        return None
    # OpenCV applies the EXIF orientation, which may swap width and height; the reduced
    # image's shape tells which (libjpeg's scaled size rounds up). Where both fit, the
    # reduced image is square and the sizes differ by under 1 px once scaled; `scale`,
    # which boxes are mapped back with, is the same either way.
    for width, height in ((header.width, header.height), (header.height, header.width)):
        if (pixels.shape[1], pixels.shape[0]) == (-(-width // factor), -(-height // factor)):
            return pixels, width, height
    return None


def face_thumbnail(pixels: Pixels, box: Box, side: int = THUMBNAIL_SIDE) -> bytes:
    """A square JPEG of the face with some margin, for match pictures."""
    height, width = pixels.shape[:2]
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    half = max(box.width, box.height) * 0.65
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(width, int(cx + half)), min(height, int(cy + half))
    crop = pixels[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else pixels
    square = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", square, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return encoded.tobytes() if ok else b""
