"""The CompreFace routes' API keys: `x-api-key` → the collection the request works on.

--api-keys FILE holds one `KEY COLLECTION` pair a line; blank lines and lines starting
with `#` are skipped, and a `#` word after the pair starts a comment. The file is read at
start-up: a line that is not a pair, a collection name facesearch refuses, or a key given
twice stops the server with one line naming the file and the line, never the key itself
(it is a secret, and start-up errors end up in logs).

Without a file, --http-compreface-open maps every key, and no key, to the default
collection: CompreFace clients insist on sending some key, and a trial on 127.0.0.1 should
not need a file.

Keys are compared in constant time against every configured key, as the bearer token is
(app.py), so the time a refusal takes says nothing about how close a guess came.
"""

from __future__ import annotations

import hmac
import re
import string
from dataclasses import dataclass
from pathlib import Path

from fsserver.api.security import SecuritySetupError
from fsserver.catalog import DEFAULT
from fsserver.config import Config

FLAG = "--api-keys"
HEADER = "x-api-key"
# A header value is printable ASCII; whitespace would split the line's pair anyway.
KEY_CHARACTERS = frozenset(string.printable) - frozenset(string.whitespace)
# The catalog's own rule for collection names (catalog.check_name), checked here so a typo
# fails start-up rather than every request that carries the key.
COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class KeyRefused(Exception):
    """A request without a key, or with one this server does not know (HTTP 401)."""

    def __init__(self, missing: bool) -> None:
        self.missing = missing
        super().__init__(
            f"Missing header: {HEADER}"
            if missing
            else f"the {HEADER} is not one of this server's API keys (--api-keys)"
        )


@dataclass(frozen=True)
class ApiKeys:
    """The key → collection table; `open_to` set: every key means that collection."""

    keys: tuple[tuple[bytes, str], ...] = ()
    open_to: str | None = None

    def collection(self, key: str | None) -> str:
        """The collection `key` picks; KeyRefused when it picks none."""
        if self.open_to is not None:
            return self.open_to
        if not key:
            raise KeyRefused(missing=True)
        presented = key.strip().encode("utf-8", "replace")
        chosen: str | None = None
        for known, collection in self.keys:  # no early exit: see the module docstring
            if hmac.compare_digest(presented, known) and chosen is None:
                chosen = collection
        if chosen is None:
            raise KeyRefused(missing=False)
        return chosen

    @property
    def collections(self) -> set[str]:
        return {collection for _, collection in self.keys}


def from_config(config: Config) -> ApiKeys:
    """The keys of --api-keys, or the open table of --http-compreface-open."""
    if config.api_keys is None:
        return ApiKeys(open_to=DEFAULT)
    return read_api_keys(config.api_keys)


def read_api_keys(path: Path) -> ApiKeys:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise SecuritySetupError(f"{FLAG} {path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SecuritySetupError(f"{FLAG} {path}: the file is not UTF-8 text") from None
    return parse_api_keys(text, str(path))


def parse_api_keys(text: str, source: str = "the key file") -> ApiKeys:
    """The pairs in `text`; SecuritySetupError naming `source` and the line when one is bad."""
    keys: list[tuple[bytes, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{FLAG} {source} line {number}"
        if len(words) > 2 and words[2].startswith("#"):
            words = words[:2]
        if len(words) != 2:
            raise SecuritySetupError(
                f"{where}: expected 'KEY COLLECTION' (two words), found {len(words)}"
            )
        key, collection = words
        if not set(key) <= KEY_CHARACTERS:
            raise SecuritySetupError(f"{where}: a key must be printable ASCII without spaces")
        if not COLLECTION_NAME.fullmatch(collection):
            raise SecuritySetupError(
                f"{where}: {collection[:80]!r} is not a collection name (1 to 64 letters, "
                "digits, '_' or '-')"
            )
        if key in seen:
            raise SecuritySetupError(f"{where}: the key of line {seen[key]} again")
        seen[key] = number
        keys.append((key.encode("ascii"), collection))
    if not keys:
        raise SecuritySetupError(f"{FLAG} {source}: no 'KEY COLLECTION' line in the file")
    return ApiKeys(tuple(keys))
