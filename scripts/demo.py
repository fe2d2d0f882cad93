"""`make demo`: the scenario facesearch grew from, end to end against a real server.

1. start `fsserver` (Dlib model, fresh data directory) on a free port;
2. enroll a folder of face photos, holding one photo out;
3. pad the index with N synthetic 128-d face-like vectors (N=1000000 works; ~15 min);
4. identify the held-out photo with the `fsclient` CLI (who is it, by the rule the server
   calibrated on its gallery), query it (ranked neighbours, search time, the match
   picture), then time raw-vector searches;
5. stop the server with SIGTERM, which saves a snapshot.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fsclient import AddItem, FaceSearchClient
from fsclient.types import Stats

# Run as `python scripts/demo.py`: the repo root is not on sys.path, and the face-like
# generator lives in the benchmark package so that demo and bench pad with the same data.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.facelike import PHOTOS_PER_PERSON, facelike_blocks, pick_photos


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "fsserver", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise SystemExit("demo: the server did not start (see its log above)")
    return process, line.rsplit(" ", 1)[-1].strip()


def wait_for_decisions(client: FaceSearchClient, timeout: float = 300.0) -> Stats:
    """The server calibrates its decision rule in the background once writes pause: wait
    for the measurement over everything enrolled, so the answers below use it."""
    deadline = time.monotonic() + timeout
    while True:
        stats = client.stats()
        rule = stats.decision
        measured = rule is not None and rule.reason != "not measured yet"
        if measured and (rule.source != "calibrated" or rule.items == stats.count):
            return stats
        if time.monotonic() > deadline:
            return stats
        time.sleep(0.5)


def progress(done: int, total: int, started: float, what: str) -> None:
    rate = done / max(time.perf_counter() - started, 1e-9)
    end = "\n" if done == total else "\r"
    print(f"demo: {what} {done}/{total} ({rate:,.0f}/s)", end=end, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", default="", help="folder of face photos")
    parser.add_argument("--pad", type=int, default=20_000, help="synthetic vectors to add")
    parser.add_argument("--out", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    if not args.faces or not Path(args.faces).is_dir():
        where = f" at {args.faces}" if args.faces else ""
        raise SystemExit(f"demo: no face folder{where}; run `make demo FACES=dir`")
    args.faces = Path(args.faces)
    try:
        enroll, probe, people = pick_photos(args.faces)
    except ValueError as error:
        raise SystemExit(f"demo: {error}") from None
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    say("starting fsserver (loads the Dlib model)...")
    process, address = start_server(args.out / "data")
    try:
        with FaceSearchClient(address) as client:
            say(f"serving on {address}; enrolling {len(enroll)} photos from {args.faces}")
            started, done, failed, vectors = time.perf_counter(), 0, [], []
            # The label is the person (the file name where the folder names none).
            items = (
                AddItem(image=p.read_bytes(), label=people.get(p.name, p.stem), metadata=p.name)
                for p in enroll
            )
            for batch in client.add(items, batch_size=4):
                for photo, result in zip(enroll[done : done + len(batch)], batch, strict=True):
                    if result.ok and result.face is not None:
                        vectors.append(result.face.embedding)
                    else:
                        failed.append(f"{photo.name}: {result.error}")
                done += len(batch)
                progress(done, len(enroll), started, "enrolled photos")
            for line in failed:
                say(f"  not enrolled: {line}")
            if args.pad:
                say(f"padding with {args.pad:,} synthetic 128-d vectors")
                started, done = time.perf_counter(), 0
                # Face-like blocks (bench/facelike.py), sent as packed rows: a million
                # never sit in memory at once.
                # Row r of a block is that block's synthetic person r // PHOTOS_PER_PERSON.
                for number, (block, _) in enumerate(facelike_blocks(np.stack(vectors), args.pad)):
                    labels = [
                        f"synthetic-{number}-{row // PHOTOS_PER_PERSON}"
                        for row in range(len(block))
                    ]
                    for batch in client.add_vector_batches(block, labels=labels):
                        done += len(batch)
                        progress(done, args.pad, started, "synthetic vectors")
            stats = wait_for_decisions(client)
            say(f"index holds {stats.count:,} vectors (model {stats.model}, ef {stats.ef})")
            rule = stats.decision
            if rule is not None:
                say(f"decision rule ({rule.source}{': ' + rule.reason if rule.reason else ''}):")
                say(
                    f"  known if the nearest person is within {rule.threshold:.4f} and the next "
                    f"is {rule.margin:.4f} farther; estimated on {rule.people:,} people: "
                    f"{rule.estimated_far:.2%} of strangers accepted (target "
                    f"{rule.target_far:.2%}), {rule.estimated_tar:.2%} of known faces"
                )
            who = f" (person {people[probe.name]})" if probe.name in people else ""
            say(f"who is {probe.name}{who}, a photo that is not in the index?")
            cli = [sys.executable, "-m", "fsclient.cli", "--server", address]
            identified = args.out / "identify.png"
            subprocess.run([*cli, "identify", str(probe), "--show", str(identified)], check=True)
            say(f"its nearest items, {probe.name}:")
            picture = args.out / "matches.png"
            subprocess.run(
                [*cli, "query", str(probe), "-k", "5", "--show", str(picture)], check=True
            )
            say(f"pictures: {identified}, {picture}")
            rng = np.random.default_rng(1)
            search, round_trip = [], []
            for vector in rng.choice(np.stack(vectors), size=200):
                t0 = time.perf_counter()
                result = client.query(vector=vector, k=5)
                round_trip.append(time.perf_counter() - t0)
                search.append(result.search_seconds)
            say(
                f"200 raw-vector queries, k=5: search p50 {np.median(search) * 1e3:.3f} ms, "
                f"p99 {np.percentile(search, 99) * 1e3:.3f} ms; gRPC round trip p50 "
                f"{np.median(round_trip) * 1e3:.3f} ms"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=600)
    say(f"server stopped (exit {code}); snapshot saved under {args.out / 'data'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
