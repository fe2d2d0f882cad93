"""The short soak: 3 client processes mixing every write and read against the real server
for 30 s, then SIGKILL and restart (`make soak` is the long one: 8 clients, 300 s).

Every query must come back with its 10 neighbours, no call may fail, every acknowledged
id must survive the kill and no deleted one come back, and sampled vectors must read back
bit for bit.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# bench/ is a folder of the repository, not an installed package: `python -m pytest` from
# the root finds it, a bare `pytest` needs the root on the path.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.soak import run_soak, write_reports  # noqa: E402
from bench.soak_report import summary, text_report  # noqa: E402

CLIENTS, SECONDS, PRELOAD = 3, 30, 3000


def test_short_soak_loses_nothing_and_fails_nothing(tmp_path: Path) -> None:
    result = run_soak(CLIENTS, SECONDS, tmp_path / "work", preload_rows=PRELOAD)
    report = text_report(summary(result))
    paths = write_reports(result, tmp_path / "out", "tests/api/test_soak.py")
    print(report)  # shown with -s, or -rP

    assert all(p.stat().st_size > 0 for p in paths), paths
    assert result.counts.get("query", {}).get("ok", 0) > 0, report
    assert result.short == 0, f"short answers:\n{report}"
    assert result.errors == {}, f"errors:\n{report}"
    assert result.acknowledged > 0 and result.deleted > 0, report
    assert not result.lost, f"acknowledged ids lost after SIGKILL: {result.lost[:20]}\n{report}"
    assert not result.resurrected, f"deleted ids back: {result.resurrected[:20]}\n{report}"
    assert not result.deleted_in_answers, f"deleted ids answered: {result.deleted_in_answers}"
    assert result.sampled_checked > 0, report
    assert not result.vector_mismatches, f"vectors changed: {result.vector_mismatches[:20]}"
    assert result.live_loaded == result.live_end, report
