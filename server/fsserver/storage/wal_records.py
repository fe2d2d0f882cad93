"""WAL record bodies: a change as bytes and back, with numpy doing the bulk work.

    body = u64 LSN | u8 kind | payload
    ADD:    u32 n | u32 dim | n x u64 ids | n x dim x f32 vectors
            | 3n x u32 byte lengths (all labels, all metadata, all thumbnails) | the bytes
    DELETE: u32 n | n x u64 ids
    RELABEL: u32 old length | u32 new length | old label UTF-8 | new label UTF-8

Little-endian throughout. The frame around a body (length, CRC-32) is wal.py's business.
RELABEL came later than ADD and DELETE; logs without it read as before (a server older than
it would stop its replay at the first RELABEL and set the rest of that log aside).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from fsserver.storage.rows import Rows

BODY_HEAD = struct.Struct("<QB")  # lsn, kind
_COUNTS = struct.Struct("<II")  # items, dim
_LABEL_LENGTHS = struct.Struct("<II")  # old, new (bytes)
ADD, DELETE, RELABEL = 1, 2, 3


@dataclass(frozen=True)
class AddRecord:
    """Rows stored, every id assigned."""

    lsn: int
    rows: Rows

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.rows.ids, dtype=np.uint64)


@dataclass(frozen=True)
class DeleteRecord:
    lsn: int
    ids: np.ndarray  # uint64


@dataclass(frozen=True)
class RelabelRecord:
    """Every item labelled `old` at this point of the log is labelled `new` from here on.

    It names the labels, not the ids they held: a few bytes however many items a person
    has. It still replays to exactly what was done, because records are logged and applied
    in one order under the index's mutation lock, and a snapshot holds the state as of the
    LSN it records; so at replay the items labelled `old` are the ones that were labelled
    `old` when the rename was logged. (A person's items forgotten are logged as a DELETE
    of their ids instead: a delete must name what it removes.)
    """

    lsn: int
    old: str
    new: str


WalRecord = AddRecord | DeleteRecord | RelabelRecord


def encode(lsn: int, record: WalRecord) -> bytes:
    """The body of `record` under `lsn` (the record's own lsn field is not used)."""
    if isinstance(record, RelabelRecord):
        old, new = record.old.encode("utf-8"), record.new.encode("utf-8")
        return BODY_HEAD.pack(lsn, RELABEL) + _LABEL_LENGTHS.pack(len(old), len(new)) + old + new
    ids = np.asarray(record.ids, dtype="<u8")
    if isinstance(record, DeleteRecord):
        return BODY_HEAD.pack(lsn, DELETE) + struct.pack("<I", len(ids)) + ids.tobytes()
    rows = record.rows
    n, dim = rows.vectors.shape
    texts = [s.encode("utf-8") for s in (*rows.labels, *rows.metadata)]
    blobs = [*texts, *rows.thumbnails]
    # Lengths column-wise (all labels, all metadata, all thumbnails) so decoding is one split.
    lengths = np.array([len(b) for b in blobs], dtype="<u4")
    return b"".join(
        (
            BODY_HEAD.pack(lsn, ADD),
            _COUNTS.pack(n, dim),
            ids.tobytes(),
            np.ascontiguousarray(rows.vectors, dtype="<f4").tobytes(),
            lengths.tobytes(),
            *blobs,
        )
    )


def decode(body: bytes) -> WalRecord:
    """A record from a checksummed body; ValueError if its inner structure is inconsistent."""
    lsn, kind = BODY_HEAD.unpack_from(body)
    at = BODY_HEAD.size
    if kind == DELETE:
        (n,) = struct.unpack_from("<I", body, at)
        at += 4
        ids = np.frombuffer(body, dtype="<u8", count=n, offset=at).astype(np.uint64)
        if at + 8 * n != len(body):
            raise ValueError("delete record has trailing bytes")
        return DeleteRecord(lsn, ids)
    if kind == RELABEL:
        old_length, new_length = _LABEL_LENGTHS.unpack_from(body, at)
        at += _LABEL_LENGTHS.size
        if at + old_length + new_length != len(body):
            raise ValueError("relabel record lengths do not match its size")
        old = body[at : at + old_length].decode("utf-8")
        return RelabelRecord(lsn, old, body[at + old_length :].decode("utf-8"))
    if kind != ADD:
        raise ValueError(f"unknown record kind {kind}")
    n, dim = _COUNTS.unpack_from(body, at)
    at += _COUNTS.size
    ids = np.frombuffer(body, dtype="<u8", count=n, offset=at).astype(np.uint64)
    at += 8 * n
    vectors = np.frombuffer(body, dtype="<f4", count=n * dim, offset=at).reshape(n, dim)
    at += 4 * n * dim
    lengths = np.frombuffer(body, dtype="<u4", count=3 * n, offset=at).astype(np.int64)
    at += 12 * n
    ends = at + np.cumsum(lengths)
    if (ends[-1] if n else at) != len(body):
        raise ValueError("add record lengths do not match its size")
    starts = np.concatenate(([at], ends[:-1])) if n else ends
    blobs = [body[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
    rows = Rows(
        vectors.astype(np.float32),  # a writable copy: Voyager wants one
        ids.tolist(),
        [b.decode("utf-8") for b in blobs[:n]],
        [b.decode("utf-8") for b in blobs[n : 2 * n]],
        blobs[2 * n :],
    )
    return AddRecord(lsn, rows)
