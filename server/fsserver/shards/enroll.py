"""`fsserver enroll SOURCE --server ADDR`: embed many photos with Ray Data, add them to a server.

SOURCE is a folder (searched recursively for photos) or a .csv / .parquet list with a
`path` or `file` column (relative paths are taken from the list's folder), an optional
`label`, `person` or `identity` column and an optional `metadata` column (the columns
`fsclient add --labels-csv` reads: fsclient.labels). Ray Data runs `map_batches` over a
pool of actors (`--workers`), each loading the face model once; they decode the bytes
themselves (images.py: header checks, downscale; DeepFace never sees a client's path or
string) and embed each photo's largest face. This process streams the embeddings to the
running server (any backend: with `--backend ray` its shards store them), as packed rows
whose model the server checks.

Photos without a face, or that cannot be read or decoded, are reported at the end, not
fatal. Ray Data shows its own progress bar; a count line follows each added batch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fsclient.labels import Columns, find_columns, listed_path
from fsclient.sources import LocalFileError
from fsserver.contract import ALIGN_CHOICES, resolve_alignment

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
NO_FACE = "no face was found in the image"


class EmbedPhotos:
    """A Ray Data actor: the face model loaded once, then one batch of photos at a time."""

    def __init__(
        self, model: str, detector: str, max_side: int, max_pixels: int, alignment: str = "auto"
    ) -> None:
        from fsserver.faces.embedder import DeepFaceEmbedder

        self._embedder = DeepFaceEmbedder(model, detector, alignment)
        self._max_side, self._max_pixels = max_side, max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fsserver.errors import ServiceError
        from fsserver.faces.images import decode_image

        dim = self._embedder.dim
        paths = [str(p) for p in batch["path"]]
        embeddings = np.zeros((len(paths), dim), np.float32)
        errors: list[str] = []
        for row, path in enumerate(paths):
            try:
                decoded = decode_image(Path(path).read_bytes(), self._max_side, self._max_pixels)
                faces = self._embedder.embed(decoded)
            except (OSError, ServiceError) as error:
                errors.append(str(error))
                continue
            if not faces:
                errors.append(NO_FACE)
                continue
            embeddings[row] = faces[0].face.embedding  # the largest face
            errors.append("")
        return {**batch, "embedding": embeddings, "error": np.array(errors, dtype=object)}


def ray_missing(error: ImportError) -> str:
    """The one line `fsserver enroll` prints without Ray (or its [data] extra)."""
    return (
        f"fsserver enroll: Ray Data is not installed ({error.name or error}): "
        "pip install 'facesearch[server,ray]' (make test-ray installs it into .venv)"
    )


def _alignment(align: str, stats: Any) -> str:
    """The alignment to embed with: `align` resolved against the server's model, checked
    against the server's own alignment where its Stats report one."""
    try:
        alignment = resolve_alignment(align, stats.model)
    except ValueError as error:
        raise SystemExit(f"fsserver enroll: {error}") from None
    served = str(getattr(stats, "alignment", "") or "")
    if served and served != alignment:
        if align != "auto":
            raise SystemExit(
                f"fsserver enroll: --align {align} but the server aligns faces with {served}"
            )
        alignment = served
    return alignment


@dataclass
class Summary:
    added: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def list_source(source: Path, label_from_dir: bool) -> Any:
    """A Ray Dataset of path, label and metadata rows."""
    import ray.data

    if source.is_dir():
        photos = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return ray.data.from_items(
            [
                {
                    "path": str(p.resolve()),
                    "label": p.parent.name if label_from_dir else p.name,
                    "metadata": str(p.relative_to(source)),
                }
                for p in photos
            ]
        )
    readers = {".csv": ray.data.read_csv, ".parquet": ray.data.read_parquet}
    reader = readers.get(source.suffix.lower())
    if reader is None or not source.is_file():
        raise SystemExit(f"fsserver enroll: {source} is neither a folder nor a .csv/.parquet list")
    listed = reader(str(source.resolve()))
    try:
        columns = find_columns(listed.columns(), str(source), need_label=False)
    except LocalFileError as error:
        raise SystemExit(f"fsserver enroll: {error}") from None
    base = source.resolve().parent
    return listed.map(lambda row: listed_row(row, columns, base))


def _text(value: Any) -> str:
    """A list's cell as text; "" for a missing one (None, or a float NaN from pandas)."""
    return "" if value is None or value != value else str(value).strip()


def listed_row(row: dict[str, Any], columns: Columns, base: Path) -> dict[str, str]:
    """One row of a list as path (absolute), label (default: the file's name) and metadata
    (default: the path as listed)."""
    cell = _text(row.get(columns.path))
    label = _text(row.get(columns.label)) if columns.label else ""
    metadata = _text(row.get(columns.metadata)) if columns.metadata else ""
    return {
        "path": str(Path(listed_path(base, cell))),
        "label": label or Path(cell).name,
        "metadata": metadata or cell,
    }


def enroll(
    source: Path,
    address: str,
    *,
    workers: int,
    worker_cpus: float,
    batch_size: int,
    label_from_dir: bool = False,
    align: str = "auto",
    out: Any = sys.stdout,
) -> Summary:
    """Embed every photo of `source` on Ray and add it to the server at `address`.

    `align` must be the server's --align: its Stats name the model and detector but not the
    alignment, so "auto" resolves against the server's model as the server's own default
    does (a server started with --align deepface for Dlib needs --align deepface here)."""
    from fsclient import FaceSearchClient
    from fsserver.config import Config

    limits = Config()
    summary = Summary()
    with FaceSearchClient(address) as client:
        stats = client.stats()
        if not stats.detector:
            raise SystemExit(
                f"fsserver enroll: the server at {address} is vector-only (no face model): "
                "enroll into a face server"
            )
        alignment = _alignment(align, stats)
        embedded = list_source(source, label_from_dir).map_batches(
            EmbedPhotos,
            fn_constructor_kwargs={
                "model": stats.model,
                "detector": stats.detector,
                "max_side": limits.max_image_side,
                "max_pixels": limits.max_image_pixels,
                "alignment": alignment,
            },
            batch_size=batch_size,
            concurrency=workers,
            num_cpus=worker_cpus,
        )
        for batch in embedded.iter_batches(batch_size=batch_size, batch_format="numpy"):
            errors = [str(e) for e in batch["error"]]
            paths = [str(p) for p in batch["path"]]
            good = [row for row, error in enumerate(errors) if not error]
            summary.refused.extend((paths[r], errors[r]) for r in range(len(paths)) if errors[r])
            if good:
                results = client.add_vectors(
                    batch["embedding"][good],
                    labels=[str(batch["label"][r]) for r in good],
                    metadata=[str(batch["metadata"][r]) for r in good],
                    vector_model=stats.model,
                )
                for row, result in zip(good, results, strict=True):
                    if result.ok:
                        summary.added += 1
                    else:
                        summary.refused.append((paths[row], str(result.error)))
            print(
                f"enroll: {summary.added} added, {len(summary.refused)} not added",
                file=out,
                flush=True,
            )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fsserver enroll",
        description="Embed a folder or a .csv/.parquet list of photos with Ray Data (actors "
        "that each load the face model once) and add them to a running fsserver.",
    )
    parser.add_argument("source", type=Path, help="a folder, or a list with a `path` column")
    parser.add_argument("--server", default="127.0.0.1:50051", help="the fsserver to add to")
    parser.add_argument("--backend", choices=("ray",), default="ray", help="(Ray Data only)")
    parser.add_argument("--ray-address", default="", help="join this Ray cluster (default: local)")
    parser.add_argument("--workers", type=int, default=2, help="embedding actors (model copies)")
    parser.add_argument("--worker-cpus", type=float, default=1.0, help="CPUs per actor")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per batch")
    parser.add_argument(
        "--label-from-dir", action="store_true", help="label = the photo's folder name"
    )
    parser.add_argument(
        "--align",
        choices=ALIGN_CHOICES,
        default="auto",
        help="the server's --align (auto: dlib for the Dlib model, deepface for others)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        import ray
        import ray.data  # Ray without its [data] extra lacks pandas, pyarrow
    except ImportError as error:
        print(ray_missing(error), file=sys.stderr)
        return 1

    if not ray.is_initialized():
        # The actors load DeepFace's weights from where this process finds them.
        env = {k: v for k, v in os.environ.items() if k == "DEEPFACE_HOME"}
        runtime_env = {"env_vars": env} if env else None
        if args.ray_address:
            ray.init(address=args.ray_address, runtime_env=runtime_env)
        else:
            ray.init(object_store_memory=512 * 2**20, runtime_env=runtime_env)
    summary = enroll(
        args.source,
        args.server,
        workers=args.workers,
        worker_cpus=args.worker_cpus,
        batch_size=args.batch_size,
        label_from_dir=args.label_from_dir,
        align=args.align,
    )
    for path, why in summary.refused:
        print(f"not added: {path}: {why}")
    print(f"enroll: {summary.added} photos added, {len(summary.refused)} not added")
    return 0
