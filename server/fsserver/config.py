"""Flags and environment variables → one frozen Config.

Every flag has an FSSERVER_* environment variable; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from fsserver.contract import ALIGN_CHOICES, SPACES, STORAGES, resolve_alignment

DEFAULT_MODEL = "Dlib"
# Measured on ../shared/faces (61 photos, 13 people, 2 cores; see README "Detector"):
# dlib found every face with no false ones and 100% leave-one-out top-1 at 0.46 s/photo
# (≤640 px); opencv was 0.21 s but found a false face and scored 98.4%; ssd missed 8 of 61.
DEFAULT_DETECTOR = "dlib"
# Face-model worker processes: one per core (detection is single-threaded), at most 8, as
# each holds its own copy of the model (about 200 MB for Dlib).
# `fsserver` serves HTTP here unless told otherwise; a Config made in code serves none.
DEFAULT_HTTP = "127.0.0.1:8000"
DEFAULT_EMBED_WORKERS = min(
    len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8
)


@dataclass(frozen=True)
class Config:
    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("data")
    model: str = DEFAULT_MODEL
    detector: str = DEFAULT_DETECTOR
    # Face alignment before embedding: "dlib" (dlib's 5-point chip, how the Dlib model was
    # trained), "deepface" (DeepFace's eye-levelled crop), or "auto": dlib for the Dlib
    # model, deepface for any other. Read `alignment` for the one in force.
    align: str = "auto"
    # Set: vector-only mode, no face model is loaded; `model` then only names the vectors.
    dim: int | None = None
    space: str = "euclidean"
    storage: str = "float32"
    # HNSW: M and ef_construction fix the graph at build time; ef is the query default.
    m: int = 12
    ef_construction: int = 200
    ef: int = 64
    # The default ef is calibrated to reach this recall@10 on the index's own vectors
    # (0: off, and `ef` stays the default); `ef` is used until the first measurement.
    target_recall: float = 0.99
    # Identify, Verify and Query's match are decided by a rule calibrated on the labelled
    # gallery so that at most this share of strangers is accepted as somebody (0: off, and
    # the pair threshold below decides).
    target_far: float = 0.01
    # A fixed distance threshold (turns calibration off); None: calibrated, falling back to
    # DeepFace's pair threshold for the model, if any.
    threshold: float | None = None
    max_image_side: int = 640
    # Limits on what one request may hold; over one → INVALID_ARGUMENT/RESOURCE_EXHAUSTED.
    max_image_pixels: int = 120_000_000  # checked from the header, before decoding
    max_message_mb: int = 64
    max_batch_items: int = 10_000
    max_k: int = 10_000
    max_label_bytes: int = 1024
    max_metadata_bytes: int = 65_536
    # Requests waiting to detect and embed an image; beyond it, Add streams wait (flow
    # control) and Embed/Query calls get RESOURCE_EXHAUSTED.
    max_embed_queue: int = 16
    max_collections: int = 64
    # Processes that decode, detect and embed images in parallel; 0: in the server process,
    # one image at a time (DeepFace is not thread-safe).
    embed_workers: int = DEFAULT_EMBED_WORKERS
    max_concurrent_rpcs: int = 64
    rpc_threads: int = 16
    # Save compacts first when this share of the stored vectors is deleted.
    compact_deleted_share: float = 0.25
    # A snapshot is taken in the background once the WAL has grown this much since the
    # last one, so a restart after a crash replays at most this much (0: never).
    checkpoint_wal_mb: int = 256
    log_level: str = "INFO"
    # "text" or "json" (one JSON object per line, for log shippers).
    log_format: str = "text"
    # host:port serving Prometheus metrics over HTTP at /metrics; "" (the default): off.
    metrics_listen: str = ""
    # host:port of the HTTP edge (JSON API, CompreFace routes, the web page); "": off.
    http: str = ""
    api_keys: Path | None = None  # "KEY COLLECTION" lines: CompreFace's x-api-key → collection
    http_compreface_open: bool = False  # no api_keys: CompreFace routes, every key "default"
    thumbnails: bool = True  # keep a small JPEG of each enrolled face
    # On SIGTERM/SIGINT: seconds in-flight calls get to finish before they are cancelled.
    shutdown_grace: float = 10.0
    # TLS: both or neither of cert and key (PEM files); a client CA makes clients present a
    # certificate it signed (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # A file holding the bearer token every call but health must carry; None: no auth.
    auth_token_file: Path | None = None
    # "local": one index in this process (the default; Ray is never imported). "ray": the
    # index is split over `shards` Ray actors (fsserver/shards/), each with its own WAL and
    # snapshots in data_dir/shards/<i>/, on the Ray cluster at ray_address ("" = start a
    # local Ray with an object store of ray_object_store_mb).
    backend: str = "local"
    shards: int = 1
    ray_address: str = ""
    ray_object_store_mb: int = 512
    # CPUs Ray reserves for each shard actor; the total must fit the cluster (it leaves the
    # rest to the gRPC threads, the face model and other work).
    shard_cpus: float = 0.5
    # How long a call waits for a shard (e.g. one restarting after a crash: it reloads its
    # snapshot and replays its WAL) before answering UNAVAILABLE.
    shard_timeout: float = 60.0

    @property
    def vector_only(self) -> bool:
        return self.dim is not None

    @property
    def alignment(self) -> str:
        """The alignment in force: "dlib" or "deepface" ("auto" resolved); "" when
        vector-only. ValueError for "dlib" with a model other than Dlib."""
        if self.vector_only:
            return ""
        return resolve_alignment(self.align, self.model)

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {text}")
        return value

    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {text}")
    return value


def _recall(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), not {text}")
    return value


def _metrics_listen(text: str) -> str:
    """HOST:PORT (HOST may be empty: every interface), or "" for off."""
    _host, sep, port = text.rpartition(":")
    if text and not (sep and port.isdigit() and int(port) < 65536):
        raise argparse.ArgumentTypeError(f"wants HOST:PORT, not {text!r}")
    return text


def _http(text: str) -> str:
    """HOST:PORT, or "off" (or "") for no HTTP."""
    return "" if text in ("", "off") else _metrics_listen(text)


def _env(name: str) -> str | None:
    return os.environ.get(f"FSSERVER_{name.upper()}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fsserver",
        description="facesearch server: DeepFace embeddings + a Voyager HNSW index over gRPC. "
        "Every flag can also be set as FSSERVER_<FLAG> (e.g. FSSERVER_DATA_DIR).",
        epilog="fsserver enroll --help: embed a folder or list of photos with Ray Data and "
        "add them to a running server.",
    )
    d = Config()
    p.add_argument("--listen", default=d.listen, help="host:port to serve on (port 0: any)")
    p.add_argument("--data-dir", type=Path, default=d.data_dir, help="snapshot directory")
    p.add_argument("--model", default=None, help=f"DeepFace model name (default {d.model})")
    p.add_argument("--detector", default=d.detector, help="DeepFace detector backend")
    p.add_argument(
        "--align",
        choices=ALIGN_CHOICES,
        default=d.align,
        help="face alignment before embedding: dlib (5-point landmarks, 150 px chip: how the "
        "Dlib model was trained), deepface (DeepFace's crop levelled on the eyes); "
        "auto: dlib for the Dlib model, deepface for others",
    )
    p.add_argument(
        "--dim",
        type=_positive_int,
        default=None,
        help="vector-only mode: store raw vectors of this dimension, load no face model",
    )
    p.add_argument("--space", choices=SPACES, default=d.space)
    p.add_argument("--storage", choices=STORAGES, default=d.storage)
    p.add_argument("--m", type=_positive_int, default=d.m, help="HNSW links per node (build time)")
    p.add_argument("--ef-construction", type=_positive_int, default=d.ef_construction)
    p.add_argument(
        "--ef",
        type=_positive_int,
        default=d.ef,
        help="default query ef while calibration is off or has not yet measured",
    )
    p.add_argument(
        "--target-recall",
        type=_recall,
        default=d.target_recall,
        help="calibrate the default ef to reach this recall@10, measured on a sample of "
        "the index against brute force as it grows (0: off)",
    )
    p.add_argument(
        "--target-far",
        type=_recall,
        default=d.target_far,
        help="calibrate Identify/Verify/match decisions on the labelled gallery so that at "
        "most this share of unenrolled people's photos is accepted as somebody (0: off)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="a fixed match/identify distance threshold instead of the calibrated rule",
    )
    p.add_argument("--max-image-side", type=_positive_int, default=d.max_image_side)
    p.add_argument("--max-image-pixels", type=_positive_int, default=d.max_image_pixels)
    p.add_argument("--max-message-mb", type=_positive_int, default=d.max_message_mb)
    p.add_argument("--max-batch-items", type=_positive_int, default=d.max_batch_items)
    p.add_argument("--max-k", type=_positive_int, default=d.max_k)
    p.add_argument(
        "--max-collections",
        type=_positive_int,
        default=d.max_collections,
        help="collections one server holds, the default one included",
    )
    p.add_argument("--max-label-bytes", type=_positive_int, default=d.max_label_bytes)
    p.add_argument("--max-metadata-bytes", type=_positive_int, default=d.max_metadata_bytes)
    p.add_argument(
        "--max-embed-queue",
        type=_positive_int,
        default=d.max_embed_queue,
        help="image requests waiting for the face model before new ones are refused",
    )
    p.add_argument(
        "--embed-workers",
        type=_non_negative_int,
        default=d.embed_workers,
        help="processes embedding images in parallel, each with its own model "
        f"(default: one per core, at most 8; here {d.embed_workers}); 0: in the server process",
    )
    p.add_argument(
        "--max-concurrent-rpcs",
        type=_positive_int,
        default=d.max_concurrent_rpcs,
        help="calls in progress at once; more get RESOURCE_EXHAUSTED",
    )
    p.add_argument(
        "--checkpoint-wal-mb",
        type=_non_negative_int,
        default=d.checkpoint_wal_mb,
        help="save a snapshot in the background once the WAL grows this much (0: never)",
    )
    p.add_argument(
        "--compact-deleted-share",
        type=_share,
        default=d.compact_deleted_share,
        help="past this share of deleted items (0..1; 1 = never), Save also starts a compaction",
    )
    # --workers was this flag's first name; kept so existing command lines work.
    p.add_argument(
        "--rpc-threads",
        "--workers",
        type=_positive_int,
        default=d.rpc_threads,
        help="threads answering gRPC calls (not --embed-workers, the face model's processes)",
    )
    p.add_argument("--log-level", default=d.log_level, help="DEBUG logs one line per call")
    p.add_argument("--log-format", choices=("text", "json"), default=d.log_format)
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        type=_metrics_listen,
        default=d.metrics_listen,
        help="serve Prometheus metrics over HTTP at http://HOST:PORT/metrics (default: off)",
    )
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        type=_http,
        default=DEFAULT_HTTP,
        help=f"serve the HTTP/JSON API, the CompreFace-compatible routes and the web page "
        f"here (default {DEFAULT_HTTP}; off: none; port 0: any)",
    )
    p.add_argument(
        "--api-keys",
        type=Path,
        metavar="FILE",
        help="CompreFace-compatible routes: one 'KEY COLLECTION' pair a line; a request's "
        "x-api-key picks its collection (created as a face collection if missing)",
    )
    p.add_argument(
        "--http-compreface-open",
        action="store_true",
        default=d.http_compreface_open,
        help="without --api-keys, serve the CompreFace routes with every key meaning the "
        "default collection (for trying it out on 127.0.0.1)",
    )
    p.add_argument(
        "--no-thumbnails",
        dest="thumbnails",
        action="store_false",
        default=d.thumbnails,
        help="do not keep a small JPEG crop of each enrolled face",
    )
    p.add_argument(
        "--shutdown-grace",
        type=_non_negative_float,
        default=d.shutdown_grace,
        metavar="SECONDS",
        help="on SIGTERM, time in-flight calls get to finish before the final save",
    )
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve TLS with this certificate")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert")
    p.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS; needs --tls-cert)",
    )
    p.add_argument(
        "--auth-token-file",
        type=Path,
        metavar="FILE",
        help="require 'authorization: Bearer <the file's token>' on every call but health",
    )
    sharding = p.add_argument_group("Ray shards (--backend ray; needs facesearch[ray])")
    sharding.add_argument(
        "--backend",
        choices=("local", "ray"),
        default=d.backend,
        help="local: one index in this process; ray: the index split over Ray shard actors",
    )
    sharding.add_argument(
        "--shards",
        type=_positive_int,
        default=d.shards,
        help="Ray shard actors (fixed for the data directory: an id lives in shard id %% N)",
    )
    sharding.add_argument(
        "--ray-address",
        default=d.ray_address,
        metavar="ADDR",
        help="join this Ray cluster (e.g. auto, or ray://host:10001); default: start Ray here",
    )
    sharding.add_argument(
        "--ray-object-store-mb",
        type=_positive_int,
        default=d.ray_object_store_mb,
        help="object store of a Ray started here (Ray's own default takes 30%% of RAM)",
    )
    sharding.add_argument(
        "--shard-cpus",
        type=_positive_float,
        default=d.shard_cpus,
        help="CPUs Ray reserves for each shard actor",
    )
    sharding.add_argument(
        "--shard-timeout",
        type=_positive_float,
        default=d.shard_timeout,
        metavar="SECONDS",
        help="a call waits this long for a shard (e.g. one restarting) before UNAVAILABLE",
    )
    # Environment variables become defaults, so an explicit flag still wins.
    for action in p._actions:
        if action.dest == "help":
            continue
        if action.nargs == 0:  # a switch: named as the flag, FSSERVER_NO_THUMBNAILS=1
            flag = action.option_strings[0].lstrip("-").replace("-", "_")
            if (value := _env(flag)) is not None:
                on = value.strip().lower() in ("1", "true", "yes", "on")
                action.default = action.const if on else action.default
        elif (value := _env(action.dest)) is not None:
            action.default = action.type(value) if callable(action.type) else value
    return p


def parse_config(argv: Sequence[str] | None = None) -> Config:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    if args.backend != "ray" and (args.shards != 1 or args.ray_address):
        parser.error("--shards and --ray-address need --backend ray")
    values = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    if values["model"] is None:
        # A vector-only server holds vectors of an unnamed model unless told otherwise.
        values["model"] = "" if args.dim is not None else DEFAULT_MODEL
    if args.dim is not None:
        values["detector"] = ""
    config = Config(**values)
    try:
        config.alignment  # noqa: B018 (checks --align against --model)
    except ValueError as error:
        parser.error(str(error))
    return config
