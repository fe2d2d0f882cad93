"""The soak's result and its summaries: pure functions from what was recorded to tables.

Nothing here talks to a server or prints: bench.soak runs the soak and prints these.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NOT_ERRORS = {"ok", "short", "skipped"}  # "skipped": an add whose make-room delete failed
MB = 1024 * 1024


@dataclass
class SoakResult:
    clients: int
    seconds: float
    preload: int
    live_cap: int | None
    # Operation -> outcome -> calls; outcome "ok", "short" or an error kind.
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds, every call
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> messages
    acknowledged: int = 0  # ids the clients' adds were answered with
    deleted: int = 0
    unknown: int = 0  # ids of failed deletes: in neither check
    lost: list[int] = field(default_factory=list)  # acknowledged, not deleted, missing
    resurrected: list[int] = field(default_factory=list)  # deleted, back after restart
    deleted_in_answers: list[int] = field(default_factory=list)  # deleted, then answered
    vector_mismatches: list[int] = field(default_factory=list)  # sampled, changed
    sampled_checked: int = 0
    unacknowledged_present: int = 0  # rows of failed adds that were stored anyway
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (s into run, bytes)
    rss_end: int = 0  # the last sample while every client was calling
    rss_after_clients: int = 0  # once they all stopped (the server's upkeep may run)
    live_end: int = 0
    rss_loaded: int = 0  # after SIGTERM (a snapshot) and a fresh start
    live_loaded: int = 0
    restart_seconds: float = 0.0  # SIGKILL to serving again
    wal_replayed: int = 0
    rebuilds: int = 0  # compactions that rebuilt the graph
    compactions_skipped: int = 0  # too few deleted to pay off, says the server
    skip_reason: str = ""
    query_p99_compacting_ms: float | None = None
    query_p99_otherwise_ms: float | None = None
    queries_compacting: int = 0
    server_log: list[str] = field(default_factory=list)  # its WARNING/ERROR lines

    @property
    def errors(self) -> dict[str, int]:
        """Calls that failed, by kind (gRPC status code name or a check's name)."""
        kinds: dict[str, int] = {}
        for outcomes in self.counts.values():
            for kind, n in outcomes.items():
                if kind not in NOT_ERRORS:
                    kinds[kind] = kinds.get(kind, 0) + n
        return kinds

    @property
    def short(self) -> int:
        return sum(outcomes.get("short", 0) for outcomes in self.counts.values())


def percentile_ms(seconds: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(seconds), q) * 1e3) if seconds else None


def merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping intervals joined: sorted, disjoint, so both ends ascend."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def split_by_overlap(
    calls: list[tuple[float, float]], intervals: list[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """Durations of the calls that overlapped any interval, and of the others."""
    spans = merged(intervals)
    starts = [s for s, _ in spans]
    inside: list[float] = []
    outside: list[float] = []
    for start, end in calls:
        # Of the spans starting before this call ends, the last reaches furthest.
        i = bisect.bisect_left(starts, end) - 1
        (inside if i >= 0 and spans[i][1] > start else outside).append(end - start)
    return inside, outside


def thirds_mean(samples: list[tuple[float, int]], seconds: float) -> tuple[float, float]:
    """Mean RSS over the middle and the last third of the run (0 where no sample fell)."""
    middle = [r for t, r in samples if seconds / 3 <= t < 2 * seconds / 3]
    last = [r for t, r in samples if t >= 2 * seconds / 3]
    return (float(np.mean(middle)) if middle else 0.0, float(np.mean(last)) if last else 0.0)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def summary(r: SoakResult) -> dict[str, Any]:
    """Every figure of the report, JSON-ready (the per-call latencies reduced to p50/p99)."""
    middle, last = thirds_mean(r.rss_samples, r.seconds)
    per_row_end = _ratio(r.rss_end, r.live_end)
    per_row_loaded = _ratio(r.rss_loaded, r.live_loaded)
    return {
        "clients": r.clients,
        "seconds": r.seconds,
        "preload": r.preload,
        "live_cap": r.live_cap,
        "operations": {
            op: {
                "calls": sum(outcomes.values()),
                "outcomes": outcomes,
                "p50_ms": percentile_ms(r.latencies.get(op, []), 50),
                "p99_ms": percentile_ms(r.latencies.get(op, []), 99),
            }
            for op, outcomes in sorted(r.counts.items())
        },
        "errors": r.errors,
        "short_answers": r.short,
        "examples": r.examples,
        "check": {
            "acknowledged": r.acknowledged,
            "deleted": r.deleted,
            "unknown": r.unknown,
            "lost": len(r.lost),
            "resurrected": len(r.resurrected),
            "deleted_in_answers": len(r.deleted_in_answers),
            "sampled_vectors": r.sampled_checked,
            "vector_mismatches": len(r.vector_mismatches),
            "unacknowledged_present": r.unacknowledged_present,
            "lost_ids": r.lost[:20],
            "resurrected_ids": r.resurrected[:20],
        },
        "restart_seconds": round(r.restart_seconds, 2),
        "wal_replayed": r.wal_replayed,
        "rss": {
            "samples_mb": [(round(t, 1), round(b / MB, 1)) for t, b in r.rss_samples],
            "middle_third_mb": round(middle / MB, 1),
            "last_third_mb": round(last / MB, 1),
            "last_over_middle": _ratio(last, middle),
            "peak_mb": round(max((b for _, b in r.rss_samples), default=0) / MB, 1),
            "end_mb": round(r.rss_end / MB, 1),
            "after_clients_mb": round(r.rss_after_clients / MB, 1),
            "live_rows_end": r.live_end,
            "bytes_per_live_row_churned": per_row_end,
            "loaded_mb": round(r.rss_loaded / MB, 1),
            "live_rows_loaded": r.live_loaded,
            "bytes_per_live_row_loaded": per_row_loaded,
            "churned_over_loaded": _ratio(per_row_end or 0.0, per_row_loaded or 0.0),
        },
        "compaction": {
            "rebuilds": r.rebuilds,
            "skipped": r.compactions_skipped,
            "skip_reason": r.skip_reason,
            "queries_overlapping": r.queries_compacting,
            "query_p99_overlapping_ms": r.query_p99_compacting_ms,
            "query_p99_otherwise_ms": r.query_p99_otherwise_ms,
        },
        "server_log": r.server_log[:50],
    }


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _every_10_s(samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """About one sample per 10 s (they come every 2 s), and always the last one."""
    kept = [x for i, x in enumerate(samples) if i % 5 == 0]
    return kept + samples[-1:] if samples and kept[-1] != samples[-1] else kept


def text_report(s: dict[str, Any]) -> str:
    """The summary as the plain text tables printed at the end of a run."""
    lines = [
        f"soak: {s['clients']} clients, {s['seconds']:g} s, preload {s['preload']}, "
        f"live cap {s['live_cap'] or 'none'}",
        "",
        f"{'operation':<10} {'calls':>8} {'ok':>8} {'short':>6} {'errors':>7} "
        f"{'p50 ms':>9} {'p99 ms':>9}",
    ]
    for op, o in s["operations"].items():
        outcomes = o["outcomes"]
        failed = sum(n for k, n in outcomes.items() if k not in NOT_ERRORS)
        lines.append(
            f"{op:<10} {o['calls']:>8} {outcomes.get('ok', 0):>8} {outcomes.get('short', 0):>6} "
            f"{failed:>7} {_num(o['p50_ms'], 2):>9} {_num(o['p99_ms'], 2):>9}"
        )
    errors = ", ".join(f"{k} {n}" for k, n in sorted(s["errors"].items())) or "none"
    lines += ["", f"errors by kind: {errors}", f"short answers: {s['short_answers']}"]
    for kind, messages in sorted(s["examples"].items()):
        lines += [f"  {kind}: {m}" for m in messages[:3]]
    c, rss, comp = s["check"], s["rss"], s["compaction"]
    lines += [
        "",
        f"after SIGKILL and restart ({s['restart_seconds']:g} s, "
        f"{s['wal_replayed']} WAL records replayed):",
        f"  acknowledged {c['acknowledged']}, deleted {c['deleted']}, unknown {c['unknown']}",
        f"  lost {c['lost']}, deleted back {c['resurrected']}, deleted in answers "
        f"{c['deleted_in_answers']}, vectors changed {c['vector_mismatches']} "
        f"of {c['sampled_vectors']} sampled, unacknowledged present "
        f"{c['unacknowledged_present']}",
        "",
        "server RSS over time (s: MB): "
        + ", ".join(f"{t:g}: {mb:g}" for t, mb in _every_10_s(rss["samples_mb"])),
        f"  middle third {rss['middle_third_mb']} MB, last third {rss['last_third_mb']} MB, "
        f"last/middle {_num(rss['last_over_middle'], 3)}, peak {rss['peak_mb']} MB; "
        f"{rss['after_clients_mb']} MB once the clients stopped",
        f"  per live row: {_num(rss['bytes_per_live_row_churned'], 0)} B under churn "
        f"({rss['end_mb']} MB / {rss['live_rows_end']}), "
        f"{_num(rss['bytes_per_live_row_loaded'], 0)} B loaded from snapshot "
        f"({rss['loaded_mb']} MB / {rss['live_rows_loaded']}), "
        f"ratio {_num(rss['churned_over_loaded'], 2)}",
        "",
        f"query p99 overlapping a compaction {_num(comp['query_p99_overlapping_ms'], 2)} ms "
        f"({comp['queries_overlapping']} queries, {comp['rebuilds']} rebuilds), "
        f"otherwise {_num(comp['query_p99_otherwise_ms'], 2)} ms",
    ]
    if comp["skipped"]:
        lines.append(f"  {comp['skipped']} compactions skipped ({comp['skip_reason']})")
    if s["server_log"]:
        lines += ["", "server WARNING/ERROR lines:", *(f"  {x}" for x in s["server_log"][:20])]
    return "\n".join(lines)


def markdown_report(s: dict[str, Any], date: str, command: str) -> str:
    return f"# Soak {date}\n\n`{command}`\n\n```\n{text_report(s)}\n```\n"


def to_json(s: dict[str, Any], date: str, command: str) -> str:
    return json.dumps({"date": date, "command": command, **s}, indent=2) + "\n"
