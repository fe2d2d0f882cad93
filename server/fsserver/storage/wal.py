"""Write-ahead log: every change is on disk, fsynced, before the client hears it is done.

    data_dir/wal/00000000000000000001.wal   segment; its name is the first LSN it may hold

A segment starts with a header (magic, the embedding contract as JSON) and then holds
records, each framed as

    u32 body length | u32 CRC-32 of the body | body (wal_records.py: LSN, kind, payload)

LSNs (log sequence numbers) count records from 1 without gaps. A snapshot stores the last
LSN it includes; start-up loads it and replays the records after it. Save starts a new
segment, and segments wholly covered by the older kept snapshot are deleted, so the
previous snapshot plus the WAL can still rebuild everything if the newest one is corrupt.

A crash mid-append leaves a torn last record: recovery finds it by length or checksum,
truncates the segment there and logs how many records were dropped. Such a record was
never acknowledged, because the reply is sent only after the fsync.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fsserver.contract import EmbeddingContract
from fsserver.errors import ContractMismatch, ServiceError
from fsserver.storage.files import fsync_path
from fsserver.storage.wal_records import (
    BODY_HEAD,
    WalRecord,
    decode,
    encode,
)

log = logging.getLogger(__name__)

MAGIC = b"FSWAL01\n"
SUFFIX = ".wal"
_FRAME = struct.Struct("<II")  # body length, crc32(body)
# No legitimate record comes near this: a batch is bounded by --max-message-mb.
_MAX_BODY = 1 << 31


class WalCorrupt(ServiceError):
    code, number = "DATA_LOSS", 15


class WalWriteFailed(ServiceError):
    """The change could not be made durable, so it was not made at all."""

    code, number = "UNAVAILABLE", 14


@dataclass
class RecoveryReport:
    replayed: int = 0  # records applied on top of the snapshot
    skipped: int = 0  # records the snapshot already held
    dropped: int = 0  # records cut off at a torn or corrupt tail
    dropped_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def _segment_name(first_lsn: int) -> str:
    return f"{first_lsn:020d}{SUFFIX}"


class WriteAheadLog:
    """Append-only, fsynced, checksummed. Callers serialise appends (the index's mutation lock)."""

    def __init__(self, directory: Path, contract: EmbeddingContract) -> None:
        self.directory = directory
        self.contract = contract
        self.last_lsn = 0
        self._fd: int | None = None
        self._segment: Path | None = None
        self._segment_first = 0
        self._seen_lsn = 0
        self._broken: str | None = None  # set when the log's state on disk is uncertain
        self._last_record_at: int | None = None  # offset of the record appended last
        self.segment_bytes = 0  # size of the segment being appended to

    # ---- recovery --------------------------------------------------------------------

    def segments(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            stem = path.name.removesuffix(SUFFIX)
            if path.name.endswith(SUFFIX) and stem.isdigit() and path.is_file():
                found.append((int(stem), path))
        return sorted(found)

    def recover(self, after_lsn: int, report: RecoveryReport) -> Iterator[WalRecord]:
        """Yield every intact record with LSN > after_lsn, oldest first, then open for appends.

        A torn or corrupt record ends the log: the bytes from there on (and any later
        segments) are moved to wal/dropped-<time>/ rather than deleted, and a warning says
        how many records went. Raises WalCorrupt when records between the snapshot and the
        log are missing, and ContractMismatch when the log was written under another
        embedding contract.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self.last_lsn = after_lsn
        self._seen_lsn = 0
        segments = self.segments()
        for position, (_, path) in enumerate(segments):
            good_end = yield from self._read_segment(path, after_lsn, report)
            if good_end is None:
                continue
            aside = self.directory / f"dropped-{time.strftime('%Y%m%dT%H%M%S')}"
            aside.mkdir(exist_ok=True)
            self._cut(path, good_end, aside, report)
            for _, later in segments[position + 1 :]:
                report.dropped += _count_frames(later.read_bytes(), 0)
                report.dropped_bytes += later.stat().st_size
                later.rename(aside / later.name)
                report.notes.append(f"WAL segment {later.name} came after it: moved to {aside}")
            fsync_path(self.directory)
            for note in report.notes:
                log.warning("%s", note)
            break
        self._open_for_append()

    def _read_segment(
        self, path: Path, after_lsn: int, report: RecoveryReport
    ) -> Generator[WalRecord, None, int | None]:
        """Yields its records; returns None if all were intact, else where the bad part starts."""
        data = path.read_bytes()
        at = self._header_end(path, data)
        if at is None:
            return 0
        while at < len(data):
            body = self._frame(data, at)
            try:
                record = decode(body) if body is not None else None
            except (ValueError, UnicodeDecodeError, struct.error):
                record = None
            # A checksummed record out of sequence is corruption as much as a bad checksum.
            if record is None or (self._seen_lsn and record.lsn != self._seen_lsn + 1):
                return at
            assert body is not None
            at += _FRAME.size + len(body)
            self._seen_lsn = record.lsn
            if record.lsn <= after_lsn:
                report.skipped += 1  # the snapshot holds it already
                continue
            if record.lsn != self.last_lsn + 1:
                raise WalCorrupt(
                    f"the WAL in {self.directory} continues at LSN {record.lsn} but the "
                    f"snapshot ends at LSN {self.last_lsn} ({path.name}): records are "
                    "missing; refusing to start with a silent gap"
                )
            self.last_lsn = record.lsn
            report.replayed += 1
            yield record
        return None

    def _header_end(self, path: Path, data: bytes) -> int | None:
        """Where records start, or None for a header that is torn or corrupt."""
        fixed = len(MAGIC) + 4
        if len(data) < fixed or not data.startswith(MAGIC):
            return None
        (size,) = struct.unpack_from("<I", data, len(MAGIC))
        try:
            stored = EmbeddingContract.from_dict(json.loads(data[fixed : fixed + size]))
        except (ValueError, KeyError, TypeError):
            return None
        differences = stored.differences(self.contract)
        if differences:
            said = "; ".join(f"{name} {a!r} vs {b!r}" for name, a, b in differences)
            raise ContractMismatch(
                f"the WAL in {self.directory} was written under another embedding contract "
                f"({said}, WAL vs flags); {stored.mismatch_advice()}"
            )
        return fixed + size

    @staticmethod
    def _frame(data: bytes, at: int) -> bytes | None:
        """The body at `at` if its frame is whole and its checksum holds."""
        if at + _FRAME.size > len(data):
            return None
        length, crc = _FRAME.unpack_from(data, at)
        start = at + _FRAME.size
        if length < BODY_HEAD.size or length > _MAX_BODY or start + length > len(data):
            return None
        body = data[start : start + length]
        return body if zlib.crc32(body) == crc else None

    def _cut(self, path: Path, good_end: int, aside: Path, report: RecoveryReport) -> None:
        """Keep path's bytes up to good_end; the rest goes to `aside` for inspection."""
        data = path.read_bytes()
        dropped = _count_frames(data, good_end)
        report.dropped += dropped
        report.dropped_bytes += len(data) - good_end
        if good_end == 0:
            path.rename(aside / path.name)
            report.notes.append(
                f"WAL segment {path.name} has no valid header: moved to {aside} "
                f"({len(data)} bytes, about {dropped} record(s))"
            )
            return
        (aside / f"{path.name}.tail").write_bytes(data[good_end:])
        with path.open("r+b") as f:
            f.truncate(good_end)
            os.fsync(f.fileno())
        report.notes.append(
            f"WAL segment {path.name}: torn or corrupt record at byte {good_end}; dropped "
            f"{dropped} record(s), {len(data) - good_end} bytes, from there on (kept in {aside})"
        )

    # ---- appending -------------------------------------------------------------------

    def _open_for_append(self) -> None:
        segments = self.segments()
        if segments:
            self._segment_first, self._segment = segments[-1]
            self._fd = os.open(self._segment, os.O_WRONLY | os.O_APPEND)
            self.segment_bytes = os.fstat(self._fd).st_size
        else:
            self._start_segment()

    def _start_segment(self) -> None:
        first = self.last_lsn + 1
        path = self.directory / _segment_name(first)
        contract = json.dumps(self.contract.to_dict(), sort_keys=True).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        _write_all(fd, MAGIC + struct.pack("<I", len(contract)) + contract)
        os.fsync(fd)
        fsync_path(self.directory)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._segment, self._segment_first = fd, path, first
        self.segment_bytes = os.fstat(fd).st_size

    def _append(self, body: bytes) -> None:
        if self._fd is None:
            raise RuntimeError("the WAL is not open: recover() first")
        if self._broken:
            raise WalWriteFailed(f"the write-ahead log is unusable ({self._broken}); restart")
        end = os.fstat(self._fd).st_size
        self._last_record_at = end
        try:
            _write_all(self._fd, _FRAME.pack(len(body), zlib.crc32(body)) + body)
        except OSError as error:
            # Cut the partial record off, or later records would sit behind a torn one.
            try:
                os.ftruncate(self._fd, end)
            except OSError as cut:
                self._broken = f"cannot truncate after a failed write: {cut}"
            raise WalWriteFailed(f"could not write the write-ahead log: {error}") from None
        try:
            os.fdatasync(self._fd)
        except OSError as error:
            # After a failed fsync the kernel may have dropped the pages: trust nothing more.
            self._broken = f"fsync failed: {error}"
            raise WalWriteFailed(f"could not fsync the write-ahead log: {error}") from None
        self.segment_bytes = end + _FRAME.size + len(body)

    def append(self, record: WalRecord) -> int:
        """Log a change (its lsn field is ignored) and fsync; the LSN it was given."""
        lsn = self.last_lsn + 1
        self._append(encode(lsn, record))
        self.last_lsn = lsn
        return lsn

    def drop_last(self) -> None:
        """Take the record just appended back out (it could not be applied)."""
        if self._fd is None or self._last_record_at is None:
            return
        try:
            os.ftruncate(self._fd, self._last_record_at)
            os.fsync(self._fd)
        except OSError as error:
            self._broken = f"cannot take back a record that failed to apply: {error}"
        else:
            self.last_lsn -= 1
            self.segment_bytes = self._last_record_at
        self._last_record_at = None

    def rotate(self) -> int:
        """Start a new segment unless the current one is empty; the last LSN so far."""
        if self.last_lsn >= self._segment_first:
            self._start_segment()
        return self.last_lsn

    def trim(self, upto_lsn: int) -> int:
        """Delete segments whose every record is ≤ upto_lsn; how many were deleted."""
        segments = self.segments()
        removed = 0
        for (_, path), (next_first, _) in itertools.pairwise(segments):
            if next_first - 1 <= upto_lsn and path != self._segment:
                path.unlink()
                removed += 1
        if removed:
            fsync_path(self.directory)
        return removed

    @property
    def size_bytes(self) -> int:
        total = 0
        for _, path in self.segments():
            with contextlib.suppress(FileNotFoundError):  # trimmed by a Save meanwhile
                total += path.stat().st_size
        return total

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _count_frames(data: bytes, at: int) -> int:
    """Frames that can still be delimited from `at` on (the first counts even if torn)."""
    count = 0
    while at < len(data):
        count += 1
        if at + _FRAME.size > len(data):
            break
        length, _ = _FRAME.unpack_from(data, at)
        if length > _MAX_BODY:
            break
        at += _FRAME.size + length
    return count


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
