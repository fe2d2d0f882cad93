"""Section 12: a photo answered in a fraction of the time (issue 18).

Per photo and per face, where the time goes (decode, detect, align, embed: median and p90)
for the faces folder and for a crowd photo, in this process with the server's own
embedder; then, through real servers, what users feel, each against the previous pipeline
in the same run (`--align deepface`: DeepFace's padded dlib detector and its crop, what
the server did before issue 12):

- Identify of a one-face photo (<= 640 px), round trip p50/p90 (floor: p50 <= 200 ms with
  dlib's wheel, <= 100 ms with `make native`'s build);
- a photo with no face: how fast "no face" comes back (floor: p50 < 150 ms);
- enrollment of the folder through the Add stream on all cores, images/s (floor: >= 2.5x);
- faces found in the folder (floor: at least as many as before).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import Context, Row, check, fsserver, say
from bench.facelike import IMAGE_SUFFIXES
from fsclient import FaceSearchClient, FaceSearchError

SECTION = "12 face pipeline"
CROWD = "selfie-many-people.jpg"
ONE_FACE = "img1.jpg"
OLD = ("--align", "deepface")  # the pipeline before issues 12 and 18
REPEATS = 15


def _photos(faces_dir: Path) -> list[Path]:
    return sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _dlib_build() -> tuple[str, float]:
    """Which dlib answers (the wheel, or `make native`'s build with BLAS) and the issue's
    Identify floor for it: 200 ms with the wheel, 100 ms native."""
    import dlib

    return ("native (make native)", 100.0) if dlib.DLIB_USE_BLAS else ("wheel", 200.0)


def _no_face_jpeg() -> bytes:
    """A 640 x 480 photo of nothing: a smooth gradient with some texture, no face."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = (x / 640 * 180 + y / 480 * 60).astype(np.float32)
    image = np.clip(base[..., None] + rng.normal(0, 12, (480, 640, 3)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def stage_rows(ctx: Context, photos: list[Path]) -> list[Row]:
    """Stage timings in this process, with the server's default embedder (the times a
    worker process measures for each image it embeds)."""
    from fsserver.faces.embedder import DeepFaceEmbedder, embed_bytes

    embedder = DeepFaceEmbedder("Dlib", "dlib")
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "align": [], "embed": []}
    per_face: dict[str, list[float]] = {"align": [], "embed": []}
    totals: list[float] = []
    crowd: dict[str, float] = {}
    faces_found = 0
    embed_bytes(embedder, photos[0].read_bytes(), 640, 120_000_000)  # warm-up, untimed
    for photo in photos:
        faces = embed_bytes(embedder, photo.read_bytes(), 640, 120_000_000)
        times = faces.stage_times
        faces_found += len(faces)
        for name in stages:
            stages[name].append(getattr(times, name))
        totals.append(times.total)
        if faces:
            per_face["align"].append(times.align / len(faces))
            per_face["embed"].append(times.embed / len(faces))
        if photo.name == CROWD:
            crowd = {"faces": len(faces)} | {
                f"{name}_ms": getattr(times, name) * 1e3 for name in (*stages, "thumbnail")
            }
    rows = [
        Row(
            SECTION,
            f"{name} ms per photo, median ({len(photos)} photos, <= 640 px)",
            _p(values, 50) * 1e3,
            note=f"p90 {_p(values, 90) * 1e3:.1f} ms",
            params={"p90_ms": round(_p(values, 90) * 1e3, 2)},
        )
        for name, values in (*stages.items(), ("all stages", totals))
    ]
    rows += [
        Row(
            SECTION,
            f"{name} ms per face, median",
            _p(values, 50) * 1e3,
            note=f"p90 {_p(values, 90) * 1e3:.1f} ms",
        )
        for name, values in per_face.items()
        if values
    ]
    if crowd:
        rows.append(
            Row(
                SECTION,
                f"crowd photo ({CROWD}): ms in all, {crowd['faces']:.0f} faces",
                sum(v for k, v in crowd.items() if k.endswith("_ms")),
                params={k: round(v, 1) for k, v in crowd.items()},
                note=", ".join(f"{k} {v:.0f}" for k, v in crowd.items()),
            )
        )
    rows.append(Row(SECTION, "faces found in the folder (in-process)", faces_found))
    return rows


def _identify_times(address: str, image: bytes, repeats: int) -> tuple[list[float], bool]:
    """Round trips of Identify on `image`; whether a face was found."""
    seconds = []
    found = True
    with FaceSearchClient(address) as client:
        for _ in range(repeats + 1):
            started = time.perf_counter()
            try:
                client.identify(image=image)
            except FaceSearchError as error:
                if "no face" not in error.details:
                    raise
                found = False
            seconds.append(time.perf_counter() - started)
    return seconds[1:], found  # the first call warms the worker


def server_rows(ctx: Context, photos: list[Path]) -> list[Row]:
    """Identify latency, no-face latency, enrollment rate and faces found: new vs old."""
    measured: dict[str, dict[str, float]] = {}
    repeats = 5 if ctx.quick else REPEATS
    one_face = (ctx.faces_dir / ONE_FACE).read_bytes()  # type: ignore[operator]
    no_face = _no_face_jpeg()
    for name, flags in (("new", ()), ("old", OLD)):
        with (
            tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp,
            fsserver("--data-dir", tmp, "--log-level", "WARNING", *flags) as server,
            FaceSearchClient(server.address) as client,
        ):
            started = time.perf_counter()
            results = client.add_images(photos, labels=[p.name for p in photos], batch_size=8)
            enroll_seconds = time.perf_counter() - started
            found = sum(
                len(client.embed(p.read_bytes()).faces) if r.ok else 0
                for p, r in zip(photos, results, strict=True)
            )
            identify, _ = _identify_times(server.address, one_face, repeats)
            nothing, any_face = _identify_times(server.address, no_face, repeats)
            measured[name] = {
                "images_per_s": len(photos) / enroll_seconds,
                "faces": found,
                "identify_p50": _p(identify, 50),
                "identify_p90": _p(identify, 90),
                "no_face_p50": _p(nothing, 50),
                "no_face_found": float(any_face),
            }
            say(f"pipeline {name}: {measured[name]}")
    new, old = measured["new"], measured["old"]
    faster = old["identify_p50"] / new["identify_p50"]
    rate_ratio = new["images_per_s"] / old["images_per_s"]
    build, floor_ms = _dlib_build()
    return [
        Row(
            SECTION,
            f"Identify round trip p50 ms ({ONE_FACE}, one face; dlib {build})",
            new["identify_p50"] * 1e3,
            baseline=floor_ms,
            baseline_name=f"the issue's floor for {build}, {floor_ms:.0f} ms",
            ratio=new["identify_p50"] * 1e3 / floor_ms,
            floor="<= 1",
            passed=check(new["identify_p50"] * 1e3 / floor_ms, "<= 1"),
            note=(
                f"p90 {new['identify_p90'] * 1e3:.0f} ms; old pipeline p50 "
                f"{old['identify_p50'] * 1e3:.0f} ms ({faster:.1f}x slower)"
            ),
        ),
        Row(
            SECTION,
            "a photo with no face: Identify p50 ms",
            new["no_face_p50"] * 1e3,
            baseline=150.0,
            baseline_name="the issue's floor, 150 ms",
            ratio=new["no_face_p50"] * 1e3 / 150.0,
            floor="<= 1",
            passed=check(new["no_face_p50"] * 1e3 / 150.0, "<= 1") and not new["no_face_found"],
            note=f"old pipeline {old['no_face_p50'] * 1e3:.0f} ms",
        ),
        Row(
            SECTION,
            f"images/s enrolled through Add ({len(photos)} photos, all cores)",
            new["images_per_s"],
            baseline=old["images_per_s"],
            baseline_name="--align deepface (the pipeline before issue 12), same run",
            ratio=rate_ratio,
            floor=">= 2.5",
            passed=check(rate_ratio, ">= 2.5"),
        ),
        Row(
            SECTION,
            "faces found in the folder (Embed through the server)",
            new["faces"],
            baseline=old["faces"],
            baseline_name="--align deepface, same run",
            ratio=new["faces"] / max(old["faces"], 1),
            floor=">= 1",
            passed=check(new["faces"] / max(old["faces"], 1), ">= 1"),
        ),
    ]


def run(ctx: Context) -> list[Row]:
    if ctx.faces_dir is None:
        return []
    photos = _photos(ctx.faces_dir)
    if ctx.quick:
        photos = photos[:16] + [p for p in photos[16:] if p.name == CROWD]
    rows = stage_rows(ctx, photos)
    rows += server_rows(ctx, photos)
    say(f"{SECTION}: " + "; ".join(f"{r.metric}: {r.facesearch:.1f}" for r in rows))
    return rows


def main() -> int:
    """`python -m bench.pipeline [FACES]`: this section alone, printed."""
    import sys

    faces = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/faces")
    with tempfile.TemporaryDirectory() as work:
        ctx = Context(n=1000, dim=128, seed=0, faces_dir=faces, work_dir=Path(work))
        for row in run(ctx):
            print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
