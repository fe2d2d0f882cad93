"""The likely cause of bytes that are no image: a path, a URL or base64 sent instead.

Clients in other languages set `image` from whatever they hold, and "not a decodable
image" alone does not tell someone who sent "/home/me/a.jpg" (the path's UTF-8) what to
change. Only undecodable bytes are looked at, so this costs a good request nothing.
"""

from __future__ import annotations

import base64
import binascii
import re

# Longer than any path or URL a person sends by mistake, shorter than any real image.
_MAX_TEXT = 4096
_SHOWN = 60  # characters of the text quoted back
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|bmp|webp|tiff?|gif|heic|avif)$", re.I)
_PATH_START = re.compile(r"^(/|~|\.{1,2}[/\\]|[a-z]:[/\\]|\\\\)", re.I)
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")


def undecodable_image_hint(data: bytes) -> str:
    """ "; this looks like …" for bytes that are text of a known kind, else ""."""
    if len(data) > _MAX_TEXT:
        return ""
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return ""
    if not text or not text.isprintable():
        return ""
    shown = text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
    if text.lower().startswith("data:"):
        return f"; this looks like a data: URL ({shown!r}): send the decoded image bytes"
    if _URL.match(text) and not text.lower().startswith("file:"):
        return (
            f"; this looks like a URL ({shown!r}), not an image: the server fetches "
            "nothing, so download it and send the image's bytes"
        )
    if _looks_like_base64_image(text):
        return "; this looks like base64 text of an image: send the decoded bytes"
    if text.lower().startswith("file:") or _PATH_START.match(text) or _IMAGE_SUFFIX.search(text):
        return (
            f"; this looks like a file path ({shown!r}), not an image: the server cannot "
            "read the client's files, so send the file's bytes"
        )
    return ""


def _looks_like_base64_image(text: str) -> bool:
    if len(text) < 16 or not _BASE64.match(text):
        return False
    try:
        head = base64.b64decode(text[:16], validate=False)
    except (binascii.Error, ValueError):
        return False
    return head.startswith(_IMAGE_MAGIC)
