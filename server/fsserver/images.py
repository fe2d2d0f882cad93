"""Image bytes → pixels, done here rather than by DeepFace.

DeepFace accepts strings and fetches any http(s):// one it is given, so a client's bytes
are decoded here and only pixel arrays reach it. Large photos are downscaled before
detection: on 2 cores detection dominates, and ≤640 px kept every face of the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from fsclient.types import Box
from fsserver.errors import InvalidArgument

Pixels = npt.NDArray[np.uint8]
THUMBNAIL_SIDE = 160


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


def decode_image(data: bytes, max_side: int) -> DecodedImage:
    """Decode JPEG/PNG/BMP/WebP/TIFF bytes to BGR uint8 (grey and 16-bit converted)."""
    if not data:
        raise InvalidArgument("the image is empty (0 bytes)")
    pixels = cast(
        Pixels | None, cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    )
    if pixels is None:
        raise InvalidArgument(
            f"the image bytes ({len(data)} bytes) are not a decodable image "
            "(JPEG, PNG, BMP, WebP or TIFF)"
        )
    height, width = pixels.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cast(Pixels, cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))
    return DecodedImage(pixels=pixels, scale=scale)


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
