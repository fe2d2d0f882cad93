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
import csv
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fsclient import AddItem, FaceSearchClient

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def pick_photos(faces: Path) -> tuple[list[Path], Path, dict[str, str]]:
    """The photos to enroll and one to query: a person's photo that is not enrolled."""
    photos = sorted(p for p in faces.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    people: dict[str, str] = {}
    if (faces / "identities.csv").is_file():
        with (faces / "identities.csv").open() as f:
            people = {row["file"]: row["identity"] for row in csv.DictReader(f)}
        photos = [p for p in photos if p.name in people]
    if len(photos) < 2:
        raise SystemExit(f"demo: {faces} needs at least two face photos")
    # Hold out one photo of the person with the most photos, so the others can find them.
    counts: dict[str, int] = {}
    for p in photos:
        counts[people.get(p.name, p.name)] = counts.get(people.get(p.name, p.name), 0) + 1
    person = max(counts, key=lambda name: counts[name])
    probe = [p for p in photos if people.get(p.name, p.name) == person][-1]
    return [p for p in photos if p != probe], probe, people


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


# Measured on the Dlib embeddings of ../shared/faces: the spread of one person's photos
# around their mean is 0.47 of the spread of all faces (per dimension), the rest is
# between people. Distractors copy that shape: synthetic people, several photos each.
WITHIN_PERSON, BETWEEN_PEOPLE, PHOTOS_PER_PERSON = 0.47, 0.88, 10


def synthetic_faces(template: np.ndarray, n: int, seed: int = 0) -> Iterator[AddItem]:
    """Face-like distractors: clustered like real identities, at the real faces' spread."""
    rng = np.random.default_rng(seed)
    mean, std = template.mean(axis=0), template.std(axis=0) + 1e-3
    for start in range(0, n, 10_000):
        size = min(10_000, n - start)
        people = rng.normal(
            mean, BETWEEN_PEOPLE * std, size=(size // PHOTOS_PER_PERSON + 1, len(mean))
        )
        person = np.repeat(people, PHOTOS_PER_PERSON, axis=0)[:size]
        block = person + rng.normal(0.0, WITHIN_PERSON * std, size=person.shape)
        for row in block.astype(np.float32):
            yield AddItem(vector=row, label="synthetic")


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
    enroll, probe, people = pick_photos(args.faces)
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
                for batch in client.add(
                    synthetic_faces(np.stack(vectors), args.pad), batch_size=1000
                ):
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
