"""`make soak`: a mixed workload against a real server, then SIGKILL, restart and check.

    python -m bench.soak [--clients 8] [--seconds 300] [--live-cap N] [--preload 10000]
                         [--out bench/results] [--work-dir DIR] [--keep]

N client processes (bench/soak_client.py) call one real `fsserver --dim 128` for T
seconds: adds of 1-200 face-like vectors, single queries, gets, deletes, saves and
compactions (30 / 50 / 10 / 8 / 1.5 / 0.5), each with a 60 s deadline. Then the server is
killed with SIGKILL and restarted on its data directory, and every acknowledged id must
be back (less the deleted ones and those of failed deletes), no deleted one, and a sample
of vectors must read back bit for bit. Then a snapshot is saved, the server stopped with
SIGTERM and started again, to compare its memory per live row loaded from the snapshot
with that under churn. Prints the tables; writes <out>/<date>-soak.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import ServerProcess, rss_bytes, say
from bench.facelike import facelike
from bench.soak_client import CALL_TIMEOUT_S, DIM, ClientOutcome, ClientPlan, client_main
from bench.soak_report import (
    SoakResult,
    markdown_report,
    percentile_ms,
    split_by_overlap,
    summary,
    text_report,
    to_json,
)
from fsclient import FaceSearchClient
from fsclient.client import FaceSearchError

REPO = Path(__file__).resolve().parent.parent
RSS_EVERY_S, PROGRESS_EVERY_S = 2.0, 10.0
PRELOAD_LABEL = "preload"


@dataclass
class Server:
    """A real fsserver on `data_dir`, its stderr in `log` (bench.common.fsserver's launch,
    with the log kept in a file so that the report can quote what it said)."""

    data_dir: Path
    log: Path
    running: ServerProcess | None = None

    def start(self) -> ServerProcess:
        started = time.perf_counter()
        command = [sys.executable, "-m", "fsserver", "--listen", "127.0.0.1:0", "--http", "off"]
        command += ["--dim", str(DIM), "--data-dir", str(self.data_dir)]
        with self.log.open("a") as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the snapshot and the WAL are loaded
        if "serving on" not in line:
            process.kill()
            raise RuntimeError(f"fsserver did not start: {line!r}; see {self.log}")
        address = line.rsplit(" ", 1)[-1].strip()
        self.running = ServerProcess(process, address, time.perf_counter() - started)
        return self.running

    def stop(self, sig: signal.Signals) -> None:
        if self.running is not None:
            self.running.process.send_signal(sig)
            self.running.process.wait(timeout=300)
            self.running = None

    def warnings(self) -> list[str]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [x for x in lines if " WARNING " in x or " ERROR " in x or "Traceback" in x]


def preload(address: str, rows: int) -> list[int]:
    """`rows` face-like vectors labelled "preload", never deleted: every query can find 10."""
    template = np.random.default_rng(12345).normal(0.0, 0.1, (64, DIM))  # as soak_client's
    vectors = facelike(template, rows, seed=1).vectors
    with FaceSearchClient(address, timeout=300) as client:
        results = client.add_vectors(vectors, labels=[PRELOAD_LABEL] * rows)
    ids = [r.id for r in results if r.id is not None and r.ok]
    if len(ids) != rows:
        raise RuntimeError(f"preload stored {len(ids)} of {rows} rows")
    return ids


def run_clients(
    server: ServerProcess,
    result: SoakResult,
    preload_ids: list[int],
    work: Path,
    seed: int,
) -> list[ClientOutcome]:
    """The clients' processes for `result.seconds`; samples server RSS meanwhile."""
    ctx = multiprocessing.get_context("spawn")
    progress = ctx.Array("q", result.clients)
    started = ctx.Barrier(result.clients + 1)
    paths = [work / f"client-{n}.pkl" for n in range(result.clients)]
    processes = []
    for n, path in enumerate(paths):
        path.unlink(missing_ok=True)  # a work dir used before: no stale results
        plan = ClientPlan(n, server.address, result.seconds, seed + n, preload_ids, result.live_cap)
        process = ctx.Process(target=client_main, args=(plan, str(path), progress, started))
        process.start()
        processes.append(process)
    started.wait(timeout=120)  # every client connected: the clock starts together
    t0 = time.time()
    last_progress = t0
    # A call in flight at the deadline may take its whole 60 s deadline to end.
    give_up = t0 + result.seconds + 2 * CALL_TIMEOUT_S + 30
    with FaceSearchClient(server.address, timeout=CALL_TIMEOUT_S) as watcher:
        while any(p.is_alive() for p in processes) and time.time() < give_up:
            result.rss_samples.append((time.time() - t0, rss_bytes(server.pid)))
            if time.time() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.time()
                rss = result.rss_samples[-1][1] / 2**20
                say(
                    f"soak {last_progress - t0:5.0f} s: {sum(progress[:])} calls, server RSS "
                    f"{rss:.0f} MB, {state(watcher)}"
                )
            time.sleep(RSS_EVERY_S)
    outcomes = []
    for n, (process, path) in enumerate(zip(processes, paths, strict=True)):
        if process.is_alive():
            process.kill()
        process.join()
        if process.exitcode != 0 or not path.is_file():
            kind = f"client-exit-{process.exitcode}"
            died = result.counts.setdefault("client", {})
            died[kind] = died.get(kind, 0) + 1
            result.examples.setdefault(kind, []).append(f"client {n} ended without its results")
            continue
        outcome = pickle.loads(path.read_bytes())
        assert isinstance(outcome, ClientOutcome)
        outcomes.append(outcome)
    # The end of the run is the last sample taken while every client was still calling:
    # once writes stop the server does its deferred upkeep (re-measuring recall against
    # brute force over every vector), whose working set is not churn's; reported apart.
    result.rss_after_clients = rss_bytes(server.pid)
    in_run = [b for t, b in result.rss_samples if t <= result.seconds]
    result.rss_end = in_run[-1] if in_run else result.rss_after_clients
    return outcomes


def state(client: FaceSearchClient) -> str:
    """The server's rows and its default ef (with the size it was calibrated at)."""
    try:
        s = client.stats()
    except FaceSearchError as error:
        return f"Stats failed: {error}"
    return (
        f"{s.count} live rows, {s.deleted} deleted, ef {s.ef} (measured at "
        f"{s.recall_measured_at} rows)"
    )


def tally(result: SoakResult, outcomes: list[ClientOutcome]) -> None:
    """Counts, latencies and examples of every call, and compaction-overlap p99."""
    queries: list[tuple[float, float]] = []
    rebuilds: list[tuple[float, float]] = []
    for o in outcomes:
        for op, start, end, outcome, _ in o.records:
            by_outcome = result.counts.setdefault(op, {})
            by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
            result.latencies.setdefault(op, []).append(end - start)
            if op == "query":
                queries.append((start, end))
        for kind, messages in o.examples.items():
            result.examples.setdefault(kind, []).extend(messages)
        rebuilds += o.rebuilds
        result.compactions_skipped += o.skipped_compactions
        result.skip_reason = o.skip_reason or result.skip_reason
        result.acknowledged += len(o.acknowledged)
        result.deleted += len(o.deleted)
        result.unknown += len(o.unknown)
        result.deleted_in_answers += sorted(o.deleted_seen)
        result.vector_mismatches += o.vector_mismatches
    inside, outside = split_by_overlap(queries, rebuilds)
    result.rebuilds = len(rebuilds)
    result.queries_compacting = len(inside)
    result.query_p99_compacting_ms = percentile_ms(inside, 99)
    result.query_p99_otherwise_ms = percentile_ms(outside, 99)


def check_restored(
    client: FaceSearchClient,
    result: SoakResult,
    outcomes: list[ClientOutcome],
    preload_ids: list[int],
) -> None:
    """Every acknowledged id back, no deleted one, sampled vectors equal bit for bit."""
    expected_preload = set(preload_ids)
    present_preload = {i.id for i in client.all_items(PRELOAD_LABEL)}
    result.lost += sorted(expected_preload - present_preload)
    for o in outcomes:
        present = {i.id for i in client.all_items(o.label)}
        expected = o.acknowledged - o.deleted - o.unknown
        result.lost += sorted(expected - present)
        result.resurrected += sorted(o.deleted & present)
        result.unacknowledged_present += len(present - o.acknowledged)
        for id, vector in o.sample.items():
            if id in expected and id in present:
                result.sampled_checked += 1
                if client.get(id).vector.astype("<f4").tobytes() != vector:
                    result.vector_mismatches.append(id)


def run_soak(
    clients: int,
    seconds: float,
    work_dir: Path,
    *,
    preload_rows: int = 10_000,
    live_cap: int | None = None,
    seed: int = 0,
) -> SoakResult:
    """The whole soak in `work_dir` (data directory, server log, the clients' results)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    result = SoakResult(clients, seconds, preload_rows, live_cap)
    server = Server(work_dir / "data", work_dir / "server.log")
    try:
        running = server.start()
        say(f"server {running.address} (log {server.log}); preloading {preload_rows} rows")
        preload_ids = preload(running.address, preload_rows)
        outcomes = run_clients(running, result, preload_ids, work_dir, seed)
        tally(result, outcomes)
        with FaceSearchClient(running.address, timeout=CALL_TIMEOUT_S) as client:
            result.live_end = client.stats().count

        say("SIGKILL, restart, check")
        server.stop(signal.SIGKILL)
        running = server.start()
        result.restart_seconds = running.started_seconds
        with FaceSearchClient(running.address, timeout=300) as client:
            result.wal_replayed = client.stats().wal_replayed
            check_restored(client, result, outcomes, preload_ids)
            client.save()
        server.stop(signal.SIGTERM)

        running = server.start()  # from the snapshot SIGTERM left
        with FaceSearchClient(running.address, timeout=CALL_TIMEOUT_S) as client:
            result.live_loaded = client.stats().count
        result.rss_loaded = rss_bytes(running.pid)
    finally:
        server.stop(signal.SIGTERM)
        result.server_log = server.warnings()
    return result


def write_reports(result: SoakResult, out: Path, command: str) -> list[Path]:
    date = datetime.date.today().isoformat()
    out.mkdir(parents=True, exist_ok=True)
    s = summary(result)
    paths = [out / f"{date}-soak.json", out / f"{date}-soak.md"]
    paths[0].write_text(to_json(s, date, command))
    paths[1].write_text(markdown_report(s, date, command))
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--clients", type=int, default=8, help="client processes (default 8)")
    p.add_argument("--seconds", type=float, default=300, help="length of the run (default 300)")
    p.add_argument("--live-cap", type=int, default=None, help="live ids per client at most")
    p.add_argument("--preload", type=int, default=10_000, help="rows before the clients start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    if args.preload < 10:
        p.error("--preload must be at least 10: a query asks for 10 neighbours")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="facesearch-soak-"))
    try:
        result = run_soak(
            args.clients,
            args.seconds,
            work,
            preload_rows=args.preload,
            live_cap=args.live_cap,
            seed=args.seed,
        )
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    command = " ".join(["python -m bench.soak", *(argv if argv is not None else sys.argv[1:])])
    paths = write_reports(result, args.out, command)
    print(text_report(summary(result)))
    say(f"wrote {', '.join(str(p) for p in paths)}")
    failed = result.errors or result.short or result.lost or result.resurrected
    return 1 if failed or result.vector_mismatches or result.deleted_in_answers else 0


if __name__ == "__main__":
    sys.exit(main())
