"""`make demo`: the scenario facesearch grew from, end to end against a real server.

1. start `fsserver` (Dlib model, fresh data directory) on a free port;
2. enroll a folder of face photos, holding one photo out;
3. pad the index with N synthetic 128-d face-like vectors (N=1000000 works; ~15 min);
4. query the held-out photo with the `fsclient` CLI: ranked neighbours, search time, and
   the match picture; then time raw-vector searches;
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

# Run as `python scripts/demo.py`: the repo root is not on sys.path, and the face-like
# generator lives in the benchmark package so that demo and bench pad with the same data.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.facelike import facelike_blocks, pick_photos


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
            items = (AddItem(image=p.read_bytes(), label=p.name) for p in enroll)
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
                for block, _ in facelike_blocks(np.stack(vectors), args.pad):
                    labels = ["synthetic"] * len(block)
                    for batch in client.add_vector_batches(block, labels=labels):
                        done += len(batch)
                        progress(done, args.pad, started, "synthetic vectors")
            stats = client.stats()
            say(f"index holds {stats.count:,} vectors (model {stats.model}, ef {stats.ef})")
            who = f" (person {people[probe.name]})" if probe.name in people else ""
            say(f"querying {probe.name}{who}, a photo that is not in the index:")
            picture = args.out / "matches.png"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "fsclient.cli",
                    "--server",
                    address,
                    "query",
                    str(probe),
                    "-k",
                    "5",
                    "--show",
                    str(picture),
                ],
                check=True,
            )
            say(f"match picture: {picture}")
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
