"""Start-up: the newest intact snapshot, then every WAL record after it.

If every snapshot is corrupt but the WAL still reaches back to its first record (it is
only trimmed once two snapshots exist), the index is rebuilt from the WAL alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fsserver.contract import EmbeddingContract
from fsserver.storage.index import FaceIndex
from fsserver.storage.snapshot import SnapshotCorrupt, load_snapshot
from fsserver.storage.wal import RecoveryReport, WriteAheadLog
from fsserver.storage.wal_records import AddRecord, DeleteRecord

log = logging.getLogger(__name__)

WAL_DIR = "wal"


@dataclass
class Recovered:
    index: FaceIndex  # with its WAL attached, ready for writes
    wal: WriteAheadLog
    snapshot: str  # the snapshot loaded, relative to the data directory ("" if none)
    report: RecoveryReport


def open_store(data_dir: Path, contract: EmbeddingContract, **index_options: Any) -> Recovered:
    wal = WriteAheadLog(data_dir / WAL_DIR, contract)
    try:
        loaded = load_snapshot(data_dir, contract, **index_options)
    except SnapshotCorrupt as error:
        segments = wal.segments()
        if not segments or segments[0][0] != 1:
            raise
        log.error("%s; the WAL holds every change, so the index is rebuilt from it", error)
        loaded = None
    index = loaded.index if loaded else FaceIndex(contract, **index_options)
    report = RecoveryReport()
    started = time.perf_counter()
    after_lsn = loaded.wal_lsn if loaded else 0
    adds = added = deletes = deleted = relabels = 0
    for record in wal.recover(after_lsn, report):
        index.replay(record)
        if isinstance(record, AddRecord):
            adds, added = adds + 1, added + len(record.ids)
        elif isinstance(record, DeleteRecord):
            deletes, deleted = deletes + 1, deleted + len(record.ids)
        else:
            relabels += 1
    if report.replayed or report.dropped:
        log.info(
            "WAL replay: %d record(s) after LSN %d in %.2fs (%d adds of %d items, %d deletes "
            "of %d ids, %d renames; %d records already in the snapshot, %d dropped): %d items "
            "now",
            report.replayed,
            after_lsn,
            time.perf_counter() - started,
            adds,
            added,
            deletes,
            deleted,
            relabels,
            report.skipped,
            report.dropped,
            index.count,
        )
    else:
        log.info("WAL replay: nothing after LSN %d: %d items", after_lsn, index.count)
    index.wal = wal
    return Recovered(index, wal, loaded.name if loaded else "", report)
