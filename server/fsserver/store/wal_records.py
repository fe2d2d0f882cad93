"""WAL record bodies: a change as bytes and back, with numpy doing the bulk work.

    body = u64 LSN | u8 kind | payload
    ADD:    u32 n | u32 dim | n x u64 ids | n x dim x f32 vectors
            | 3n x u32 byte lengths (all labels, all metadata, all thumbnails) | the bytes
    DELETE: u32 n | n x u64 ids

Little-endian throughout. The frame around a body (length, CRC-32) is wal.py's business.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fsclient.types import FloatArray

BODY_HEAD = struct.Struct("<QB")  # lsn, kind
_COUNTS = struct.Struct("<II")  # items, dim
ADD, DELETE = 1, 2


@dataclass(frozen=True)
class AddRecord:
    lsn: int
    ids: np.ndarray  # uint64
    vectors: FloatArray  # (n, dim) float32
    labels: list[str]
    metadata: list[str]
    thumbnails: list[bytes]


@dataclass(frozen=True)
class DeleteRecord:
    lsn: int
    ids: np.ndarray  # uint64


WalRecord = AddRecord | DeleteRecord


def encode_add(
    lsn: int,
    ids: Sequence[int],
    vectors: FloatArray,
    labels: Sequence[str],
    metadata: Sequence[str],
    thumbnails: Sequence[bytes],
) -> bytes:
    n, dim = vectors.shape
    texts = [s.encode("utf-8") for s in (*labels, *metadata)]
    blobs = [*texts[:n], *texts[n:], *thumbnails]
    # Lengths column-wise (all labels, all metadata, all thumbnails) so decoding is one split.
    lengths = np.array([len(b) for b in blobs], dtype=np.uint32)
    return b"".join(
        (
            BODY_HEAD.pack(lsn, ADD),
            _COUNTS.pack(n, dim),
            np.asarray(ids, dtype="<u8").tobytes(),
            np.ascontiguousarray(vectors, dtype="<f4").tobytes(),
            lengths.astype("<u4").tobytes(),
            *blobs,
        )
    )


def encode_delete(lsn: int, ids: Sequence[int]) -> bytes:
    array = np.asarray(ids, dtype="<u8")
    return BODY_HEAD.pack(lsn, DELETE) + struct.pack("<I", len(array)) + array.tobytes()


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
    return AddRecord(
        lsn,
        ids,
        vectors.astype(np.float32),  # a writable copy: Voyager wants one
        [b.decode("utf-8") for b in blobs[:n]],
        [b.decode("utf-8") for b in blobs[n : 2 * n]],
        blobs[2 * n :],
    )
