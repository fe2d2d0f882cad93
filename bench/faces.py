"""Sections 5 and 6: facesearch against DeepFace itself, on the real photos.

5. Enrollment: the faces folder's photos through a fresh server's `Add` stream, against the
   seed's loop of `DeepFace.represent` calls in this process (same model and detector).
6. Face query: one held-out photo → its 10 nearest faces, facesearch's `Query` against
   `DeepFace.find` over the same database (the real faces plus face-like distractors).

DeepFace runs in this process, one call at a time (it is not thread-safe), with its model
and detector built before any timing, as the server builds them before it serves.
Standalone smoke run: `python -m bench.faces [N]` (a small index, quick repetitions).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import Context, Row, ServerProcess, check, fsserver, say
from bench.facelike import IMAGE_SUFFIXES
from fsclient import FaceSearchClient
from fsclient.types import Neighbor

K = 10
ENROLL_BATCH = 8
DISTRACTOR = "distractor-"  # label prefix (facesearch) / file-name prefix (DeepFace store)
QUERY_SIZES = (10_000, 100_000)  # plus ctx.n, served by section 1's server


def _deepface(detector: str) -> Any:
    """DeepFace with the Dlib model and `detector` built, as the server has them at start."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # WARNING: find(refresh_database=False) logs an INFO line per call otherwise.
    os.environ.setdefault("DEEPFACE_LOG_LEVEL", "30")
    # The same offline weight links the server makes (idempotent; no download).
    from fsserver.faces.weights import link_packaged_weights

    link_packaged_weights()
    from deepface import DeepFace

    DeepFace.build_model("Dlib", task="facial_recognition")
    if detector != "skip":
        DeepFace.build_model(detector, task="face_detector")
    return DeepFace


def _folder_photos(faces_dir: Path) -> list[Path]:
    return sorted(p for p in faces_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# ---- 5. enrollment ------------------------------------------------------------------------


def run_enrollment(ctx: Context) -> list[Row]:
    section = "5 image enrollment"
    if ctx.faces_dir is None:
        return []
    photos = _folder_photos(ctx.faces_dir)
    if ctx.quick:
        photos = photos[:16]
    # facesearch: a fresh face server with default flags; the model loads before it serves.
    with (
        tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp,
        fsserver("--data-dir", tmp, "--log-level", "WARNING") as server,
        FaceSearchClient(server.address) as client,
    ):
        detector = client.stats().detector or "dlib"
        started = time.perf_counter()
        results = client.add_images(
            photos, labels=[p.name for p in photos], batch_size=ENROLL_BATCH
        )
        fs_seconds = time.perf_counter() - started
    fs_found = sum(r.ok for r in results)

    # DeepFace: the seed's sequential loop, full-size files, the server's detector. One
    # untimed call first, so the first timed photo pays no lazy initialisation.
    deepface = _deepface(detector)
    smallest = min(photos, key=lambda p: p.stat().st_size)
    _represent(deepface, smallest, detector)
    started = time.perf_counter()
    df_found = sum(_represent(deepface, p, detector) for p in photos)
    df_seconds = time.perf_counter() - started

    fs_rate, df_rate = len(photos) / fs_seconds, len(photos) / df_seconds
    ratio, floor = fs_rate / df_rate, ">= 1.8"
    say(f"enrollment: facesearch {fs_rate:.2f} images/s, DeepFace loop {df_rate:.2f} images/s")
    return [
        Row(
            section=section,
            metric=f"images/s enrolled ({len(photos)} full-size photos, Add stream)",
            facesearch=fs_rate,
            baseline=df_rate,
            baseline_name=f"DeepFace.represent loop (Dlib, {detector}, in-process)",
            ratio=ratio,
            floor=floor,
            passed=check(ratio, floor),
            params={
                "photos": len(photos),
                "batch_size": ENROLL_BATCH,
                "detector": detector,
                "facesearch_seconds": round(fs_seconds, 2),
                "deepface_seconds": round(df_seconds, 2),
                "facesearch_faces_found": fs_found,
                "deepface_faces_found": df_found,
            },
            note=(
                f"facesearch {fs_seconds:.1f} s, a face in {fs_found}/{len(photos)} photos; "
                f"DeepFace {df_seconds:.1f} s, a face in {df_found}/{len(photos)}"
            ),
        )
    ]


def _represent(deepface: Any, photo: Path, detector: str) -> bool:
    """One seed-loop call; whether DeepFace found a face (else it raises FaceNotDetected)."""
    from deepface.modules.exceptions import FaceNotDetected

    try:
        deepface.represent(img_path=str(photo), model_name="Dlib", detector_backend=detector)
    except FaceNotDetected:
        return False
    return True


# ---- 6. face query ------------------------------------------------------------------------


class DeepFaceStore:
    """DeepFace.find's datastore in a db folder, refilled for each database size.

    How it is filled: the db folder holds symlinks to the enrolled photos, and one
    `DeepFace.find(refresh_database=True)` call represents them into DeepFace's own
    datastore file (ds_model_dlib_detector_<det>_..._expand_0.npz; 0.0.103 writes npz, not
    a pickle). Of its rows, the largest face of each photo is kept (facesearch enrolls the
    largest face; photos where DeepFace found none are dropped). For each size the file is
    rewritten with DeepFace's npz columns (`recognition.__serialize_npz`'s layout: float64
    `embedding` matrix, `has_embedding`, `identity`, `hash`, int64 `target_x/y/w/h`): the
    real rows, then one row per distractor, identity `<db>/distractor-NNNNNNN.jpg` (no such
    file), hash "", box 0, the vector as embedding. find is called with
    refresh_database=False: with True it would drop every row whose file is missing.
    """

    def __init__(self, deepface: Any, root: Path, photos: list[Path], detector: str) -> None:
        self.deepface, self.detector = deepface, detector
        self.db = root / "deepface-db"
        self.db.mkdir(parents=True)
        for photo in photos:
            (self.db / photo.name).symlink_to(photo.resolve())
        self.names = sorted(p.name for p in photos)
        self.build_seconds = 0.0
        self.real: dict[str, npt.NDArray[Any]] = {}
        self.missing: list[str] = []  # enrolled photos DeepFace's store has no face of
        self.path: Path | None = None
        self._kept: npt.NDArray[Any] = np.zeros(0)  # real embeddings set aside by a swap

    def represent_photos(self, probe: Path) -> None:
        """DeepFace's own first find: it represents every photo into its datastore."""
        started = time.perf_counter()
        self.find(probe, refresh=True)
        self.build_seconds = time.perf_counter() - started
        (self.path,) = self.db.glob("ds_*.npz")
        with np.load(self.path) as npz:
            columns = {name: npz[name] for name in npz.files}
        area = columns["target_w"] * columns["target_h"]
        keep: dict[str, int] = {}  # identity -> row of its largest face
        for row, identity in enumerate(columns["identity"].tolist()):
            if columns["has_embedding"][row] and (
                identity not in keep or area[row] > area[keep[identity]]
            ):
                keep[identity] = row
        rows = np.array(sorted(keep.values()), dtype=np.int64)
        self.real = {name: values[rows] for name, values in columns.items()}
        # e.g. img47.jpg, a WebP file: find only lists files whose header says JPEG or PNG.
        kept = {Path(identity).name for identity in keep}
        self.missing = [name for name in self.names if name not in kept]

    @property
    def real_count(self) -> int:
        return len(self.real.get("identity", ()))

    def swap_real_embeddings(self, by_name: dict[str, npt.NDArray[np.float32]]) -> None:
        """Give the real rows these embeddings (by photo file name), the old ones kept for
        restore_real_embeddings; call fill after."""
        self._kept = self.real["embedding"].copy()
        for row, identity in enumerate(self.real["identity"].tolist()):
            vector = by_name.get(Path(identity).name)
            if vector is not None:
                self.real["embedding"][row] = vector

    def restore_real_embeddings(self) -> None:
        self.real["embedding"] = self._kept

    def fill(self, distractors: npt.NDArray[np.float32]) -> float:
        """Rewrite the datastore as the real rows + `distractors`; returns the seconds."""
        assert self.path is not None
        started = time.perf_counter()
        n = len(distractors)
        names = np.char.add(
            np.char.add(f"{self.db}/{DISTRACTOR}", np.char.zfill(np.arange(n).astype(str), 7)),
            ".jpg",
        )
        columns: dict[str, Any] = {
            "embedding": np.concatenate([self.real["embedding"], distractors.astype(np.float64)]),
            "has_embedding": np.concatenate([self.real["has_embedding"], np.ones(n, bool)]),
            "identity": np.concatenate([self.real["identity"], names]),
            "hash": np.concatenate([self.real["hash"], np.full(n, "")]),
        }
        for name in ("target_x", "target_y", "target_w", "target_h"):
            columns[name] = np.concatenate([self.real[name], np.zeros(n, np.int64)])
        with self.path.open("wb") as f:
            np.savez(f, **columns)  # uncompressed, as DeepFace writes it
        return time.perf_counter() - started

    def find(self, probe: Path, *, k: int | None = K, refresh: bool = False) -> list[Any]:
        """find's fastest mode: return_type='dict' (numpy over the whole store at once; the
        pandas mode loops in Python per row), the 10 nearest whatever their distance (as
        facesearch's k=10), Euclidean on raw embeddings (facesearch's space and scale)."""
        results: list[Any] = self.deepface.find(
            img_path=str(probe),
            db_path=str(self.db),
            model_name="Dlib",
            detector_backend=self.detector,
            distance_metric="euclidean",
            similarity_search=True,
            k=k,
            refresh_database=refresh,
            silent=True,
            return_type="dict",
        )
        return results


def run_face_query(ctx: Context, sizes: tuple[int, ...] = QUERY_SIZES) -> list[Row]:
    server: ServerProcess | None = ctx.shared.get("server")
    probe: Path | None = ctx.shared.get("probe")
    if ctx.faces_dir is None or server is None or probe is None:
        return []
    faces: list[tuple[Path, str]] = ctx.shared["faces"]
    vectors: npt.NDArray[np.float32] = ctx.shared["vectors"]
    with FaceSearchClient(server.address) as client:
        stats = client.stats()
    detector = stats.detector or "dlib"
    if stats.space != "euclidean":
        raise RuntimeError(f"section 6 compares euclidean distances; the server is {stats.space}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as tmp:
        store = DeepFaceStore(_deepface(detector), Path(tmp), [p for p, _ in faces], detector)
        say(f"face query: DeepFace represents {len(faces)} photos into its datastore")
        store.represent_photos(probe)
        smaller = [s for s in sizes if len(faces) < s < ctx.n]
        if smaller:
            # One fresh server grows through the smaller sizes: the photos, then distractors.
            with (
                fsserver("--data-dir", f"{tmp}/fs", "--log-level", "WARNING") as fresh,
                FaceSearchClient(fresh.address) as client,
            ):
                # As section 1 enrolls them: label the person, metadata the file name.
                enrolled = client.add_images(
                    [p for p, _ in faces],
                    labels=[label for _, label in faces],
                    metadata=[p.name for p, _ in faces],
                    batch_size=ENROLL_BATCH,
                )
                real = sum(r.ok for r in enrolled)
                added = 0
                for size in smaller:
                    upto = size - real
                    labels = [f"{DISTRACTOR}{i:07d}" for i in range(added, upto)]
                    client.add_vectors(vectors[added:upto], labels=labels)
                    added = upto
                    rows.append(_compare(ctx, client, store, probe, vectors[:upto], "fresh"))
        with FaceSearchClient(server.address) as client:
            rows.append(_compare(ctx, client, store, probe, vectors, "section 1"))
    return rows


def _compare(
    ctx: Context,
    client: FaceSearchClient,
    store: DeepFaceStore,
    probe: Path,
    distractors: npt.NDArray[np.float32],
    which: str,
) -> Row:
    """One database size: both sides warm, median of several calls, and their top match."""
    count = client.stats().count
    fill_seconds = store.fill(distractors)
    store_rows = store.real_count + len(distractors)
    # Warm-up: one untimed call each. Up to 200k rows DeepFace's asks for every row
    # (k=None), which shows find kept them all (refresh_database=True would drop the
    # distractors); past that, a million result dicts would cost more than the check says.
    client.query(image=probe, k=K)
    everything = store_rows <= 200_000
    started = time.perf_counter()
    warm = store.find(probe, k=None if everything else K)
    warm_seconds = time.perf_counter() - started
    if everything and max(len(face) for face in warm) != store_rows:
        raise RuntimeError(f"DeepFace.find saw {len(warm[0])} rows of {store_rows} written")
    reps = 3 if ctx.quick else 10
    fs_times, result = _timed(lambda: client.query(image=probe, k=K), reps)
    df_reps = 2 if ctx.quick else (5 if store_rows <= 200_000 else 3)
    df_times, found = _timed(lambda: store.find(probe), df_reps)
    fs_matches = max(result.results, key=_face_area)
    fs_top = fs_matches.neighbors[0]
    df_face = max(found, key=lambda face: face[0]["source_w"] * face[0]["source_h"])
    df_top = df_face[0]
    same = _same_top(client, fs_top, str(df_top["identity"]), distractors)
    person_of = {path.name: label for path, label in ctx.shared["faces"]}
    # The server detects on the photo downscaled to <= 640 px, DeepFace on the full-size
    # file, so their embeddings differ a little and close matches may swap places.
    same_person = person_of.get(Path(str(df_top["identity"])).name) == fs_top.label
    pixels_same = _same_on_same_pixels(ctx, client, store, probe, distractors)
    fs_s, df_s = statistics.median(fs_times), statistics.median(df_times)
    ratio = df_s / fs_s
    floor = ">= 20" if count >= 1_000_000 else (">= 2" if count <= 20_000 else "")
    df_name = Path(str(df_top["identity"])).name
    say(
        f"face query at {count:,}: facesearch {fs_s * 1e3:.0f} ms, DeepFace.find {df_s:.2f} s "
        f"(x{ratio:.1f}); top {fs_top.metadata or fs_top.label} / {df_name}, same: {same}"
    )
    return Row(
        section="6 face query vs DeepFace",
        metric=f"face query seconds, photo -> top {K}, {count:,} faces",
        facesearch=fs_s,
        baseline=df_s,
        baseline_name="DeepFace.find (Dlib, dlib, euclidean, dict mode, warm)",
        ratio=ratio,
        floor=floor,
        passed=check(ratio, floor),
        params={
            "facesearch_items": count,
            "deepface_rows": store_rows,
            "facesearch_server": which,
            "facesearch_calls": reps,
            "deepface_calls": df_reps,
            "top_facesearch": f"{fs_top.metadata or fs_top.label} ({fs_top.distance:.4f})",
            "top_deepface": f"{df_name} ({float(df_top['distance']):.4f})",
            "same_top": same,
            "same_person": same_person,
            "same_top_on_same_pixels": pixels_same,
            "top5_facesearch": [n.metadata or n.label for n in fs_matches.neighbors[:5]],
            "top5_deepface": [Path(str(r["identity"])).name for r in df_face[:5]],
            "deepface_missing_photos": store.missing,
            "deepface_store_write_s": round(fill_seconds, 2),
            "deepface_represent_s": round(store.build_seconds, 1),
        },
        note=(
            f"ratio = DeepFace ÷ facesearch; same top match: {same} (same person: "
            f"{same_person}; given the same 640-px pixels and the same stored vectors: "
            f"{pixels_same}). DeepFace's store: its own "
            f"find represented {store.real_count} photos ({store.build_seconds:.0f} s; none of "
            f"{', '.join(store.missing) or '-'}), then "
            f"{len(distractors):,} distractor rows written into its npz datastore "
            f"({fill_seconds:.1f} s); find(refresh_database=False) reloads that file on "
            f"every call (its real cost: warm-up call {warm_seconds:.1f} s)"
        ),
    )


def _same_on_same_pixels(
    ctx: Context,
    client: FaceSearchClient,
    store: DeepFaceStore,
    probe: Path,
    distractors: npt.NDArray[np.float32],
) -> bool:
    """Whether both sides find the same nearest face when they see the same pixels.

    Timed, each side does what it does: facesearch detects on the photo downscaled to
    640 px, DeepFace on the full-size file, so their embeddings differ a little and near
    ties can swap. Here both get the probe already downscaled (as a PNG, so no re-encoding
    changes a pixel) and DeepFace's store holds facesearch's embeddings of the real photos
    (also made from 640-px pixels): the same model on the same pixels, so the same query
    vector, and the nearest face must be the same item.
    """
    import cv2

    from fsserver.faces.images import decode_image

    small = ctx.work_dir / f"probe-640-{probe.stem}.png"
    pixels = decode_image(probe.read_bytes(), 640, 120_000_000).pixels
    cv2.imwrite(str(small), pixels)
    enrolled, embeddings = ctx.shared["faces"], ctx.shared["real_embeddings"]
    by_name = {path.name: vector for (path, _), vector in zip(enrolled, embeddings, strict=True)}
    store.swap_real_embeddings(by_name)
    try:
        store.fill(distractors)
        found = store.find(small)
        result = client.query(image=small.read_bytes(), k=K)
    finally:
        store.restore_real_embeddings()
        store.fill(distractors)
    fs_top = max(result.results, key=_face_area).neighbors[0]
    df_face = max(found, key=lambda face: face[0]["source_w"] * face[0]["source_h"])
    same = _same_top(client, fs_top, str(df_face[0]["identity"]), distractors)
    say(
        f"  same pixels: facesearch top {fs_top.metadata or fs_top.label} "
        f"({fs_top.distance:.4f}), DeepFace top {Path(str(df_face[0]['identity'])).name} "
        f"({float(df_face[0]['distance']):.4f}): same {same}"
    )
    return same


def _timed(call: Any, reps: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(reps):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return times, result


def _face_area(matches: Any) -> int:
    box = matches.face.box if matches.face is not None else None
    return box.width * box.height if box is not None else 0


def _same_top(
    client: FaceSearchClient,
    fs_top: Neighbor,
    df_identity: str,
    distractors: npt.NDArray[np.float32],
) -> bool:
    """Whether both nearest faces are the same stored item: a distractor by its vector
    (facesearch stores the float32 row itself), a photo by its file name (facesearch's
    metadata, as section 1 enrolls photos)."""
    name = Path(df_identity).name
    if name.startswith(DISTRACTOR):
        row = int(name[len(DISTRACTOR) :].split(".")[0])
        return bool(np.array_equal(client.get(fs_top.id).vector, distractors[row]))
    return name == (fs_top.metadata or fs_top.label)


# ---- standalone smoke run -----------------------------------------------------------------


def main() -> int:
    """A small Context as section 1 leaves it: a face server with the photos but one, plus
    N face-like distractors, then sections 5 and 6 in quick mode (sizes 2k and N)."""
    from bench.facelike import facelike_vectors, pick_photos

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    faces_dir = Path(os.environ.get("FACES", "../shared/faces")).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(n=n, dim=128, seed=0, faces_dir=faces_dir, work_dir=Path(tmp), quick=True)
        enroll, probe, people = pick_photos(faces_dir)
        with (
            fsserver("--data-dir", f"{tmp}/big", "--log-level", "WARNING") as server,
            FaceSearchClient(server.address) as client,
        ):
            labels = [people.get(p.name, p.stem) for p in enroll]
            names = [p.name for p in enroll]
            results = client.add_images(enroll, labels=labels, metadata=names)
            embeddings = np.stack([r.face.embedding for r in results if r.face is not None])
            vectors = facelike_vectors(embeddings, n, seed=0)
            client.add_vectors(vectors, labels=["synthetic"] * n)
            ctx.shared.update(
                server=server,
                vectors=vectors,
                faces=list(zip(enroll, labels, strict=True)),
                probe=probe,
                real_embeddings=embeddings,
                template=embeddings,
            )
            rows = run_enrollment(ctx) + run_face_query(ctx, sizes=(2_000,))
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
