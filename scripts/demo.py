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
import base64
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from fsclient import AddItem, FaceSearchClient
from fsclient.format import format_ef
from fsclient.types import Stats
from fsserver.storage.calibration import REGROW

# Run as `python scripts/demo.py`: the repo root is not on sys.path, and the face-like
# generator lives in the benchmark package so that demo and bench pad with the same data.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.facelike import PHOTOS_PER_PERSON, facelike_blocks, pick_photos


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    """The server, its gRPC address and its HTTP URL (both on free ports)."""
    command = [sys.executable, "-m", "fsserver", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--http", "127.0.0.1:0", "--data-dir", str(data_dir), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise SystemExit("demo: the server did not start (see its log above)")
    http_url = process.stdout.readline().split()[3]  # "fsserver: HTTP on URL (...)"
    return process, line.rsplit(" ", 1)[-1].strip(), http_url


def identify_over_http(http_url: str, photo: Path) -> str:
    """Who `photo` is, asked through the HTTP API as a browser or curl would."""
    body = json.dumps({"image": base64.b64encode(photo.read_bytes()).decode()}).encode()
    request = urllib.request.Request(
        f"{http_url}/v1/collections/default/identify",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    faces = answer["results"]
    if not faces:
        return "no face"
    best = faces[0]
    name = best["person"] if best["known"] else "unknown"
    return f"{name} (similarity {best['similarity']:.2f})"


def wait_for_calibration(client: FaceSearchClient, timeout: float = 300.0) -> Stats:
    """The server calibrates its decision rule and its default ef in the background once
    writes pause: wait for both measurements over what was enrolled, so the answers below
    (and the ef printed) are the ones the server goes on using."""
    deadline = time.monotonic() + timeout
    while True:
        stats = client.stats()
        rule = stats.decision
        decided = (
            rule is not None
            and rule.reason != "not measured yet"
            and (rule.source != "calibrated" or rule.items == stats.count)
        )
        # A recall measurement stands until the index grows by REGROW; a smaller one taken
        # part way through the load would be measured again, and its ef replaced.
        at = stats.recall_measured_at
        ef_settled = not stats.target_recall or (at and stats.count < at * REGROW)
        if decided and ef_settled:
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
    process, address, http_url = start_server(args.out / "data")
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
            stats = wait_for_calibration(client)
            say(f"index holds {stats.count:,} vectors (model {stats.model})")
            say(f"default ef {format_ef(stats)}")
            if args.pad:
                say(
                    "synthetic-* items are the padding: face-like vectors with no photo (a "
                    "grey 'no photo stored' tile in the pictures); some may match a real face"
                )
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
            answer = identify_over_http(http_url, probe)
            say(f"the same over HTTP: POST {http_url}/v1/collections/default/identify: {answer}")
            say("the web page: `make serve`, then open http://127.0.0.1:8000/ and drop a photo")
            rng = np.random.default_rng(1)
            search, round_trip = [], []
            for vector in rng.choice(np.stack(vectors), size=200):
                t0 = time.perf_counter()
                answer = client.query(vector=vector, k=5)
                round_trip.append(time.perf_counter() - t0)
                search.append(answer.search_seconds)
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
