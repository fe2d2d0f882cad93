"""`python -m bench`: run the benchmark sections, write bench/results/<date>.{json,md}.

Sections run in a fixed order (the big index first, the restarts last); each is a
function `(ctx) -> list[Row]` in its own module, imported only when it runs, so a
missing module (a peer not installed, a section not written yet) skips that section
instead of the run. A section that raises becomes a failed row and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Context, Row, say
from bench.report import floor_summary, markdown_report, markdown_table, row_dict, to_json

REPO = Path(__file__).resolve().parent.parent
DEFAULT_N = 100_000


@dataclass(frozen=True)
class Section:
    id: str  # the number
    title: str
    module: str
    function: str
    # Works on the big index that section 1 builds (and leaves in ctx.shared).
    needs_index: bool = True


SECTIONS = [
    Section("1", "bulk add", "bench.vectors", "run", needs_index=False),
    Section("2", "query latency", "bench.latency", "run_query_latency"),
    Section("3", "batch query", "bench.latency", "run_batch_query"),
    Section("4", "recall", "bench.recall", "run"),
    Section("9", "concurrency", "bench.concurrency", "run"),
    Section("13", "http", "bench.http_edge", "run"),
    Section("6", "face query", "bench.faces", "run_face_query"),
    Section("10", "milvus lite", "bench.milvus", "run"),
    Section("5", "image enrollment", "bench.faces", "run_enrollment"),
    Section("7", "memory", "bench.memory", "run_memory"),
    Section("8", "cold start", "bench.memory", "run_cold_start"),
    Section("11", "operations overhead", "bench.operations", "run", needs_index=False),
    Section("12", "face pipeline", "bench.pipeline", "run", needs_index=False),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--n", type=int, default=DEFAULT_N, help="vectors in the big index")
    p.add_argument("--dim", type=int, default=128, help=argparse.SUPPRESS)  # Dlib's; fixed
    p.add_argument("--only", default="", help="comma-separated section ids, e.g. 1,2,4")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument(
        "--faces",
        default=None,
        help="face photos (default $FACESEARCH_FACES "
        "or ../shared/faces); absent: face-dependent parts are skipped",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results",
        help="where <date>.json and <date>.md go (default bench/results)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    if args.n < 1000:
        p.error("--n must be at least 1000")
    known = {s.id for s in SECTIONS}
    args.only_ids = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(args.only_ids) - known:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; known: {sorted(known)}")
    return args


def faces_dir(given: str | None) -> tuple[Path | None, str]:
    """The face folder and, when there is none, why."""
    candidate = given or os.environ.get("FACESEARCH_FACES") or str(REPO.parent / "shared/faces")
    path = Path(candidate)
    if path.is_dir():
        return path.resolve(), ""
    return None, f"no face folder at {path} (--faces DIR or FACESEARCH_FACES)"


def selected(only: list[str]) -> list[Section]:
    """The sections to run, in run order; section 1 comes along when another needs it."""
    if not only:
        return SECTIONS
    wanted = set(only)
    if any(s.needs_index for s in SECTIONS if s.id in wanted) and "1" not in wanted:
        say("section 1 (the big index) runs too: the selected sections need it")
        wanted.add("1")
    return [s for s in SECTIONS if s.id in wanted]


def load(section: Section) -> Callable[[Context], list[Row]] | str:
    """The section's function, or why it cannot run (its module is missing)."""
    try:
        module = importlib.import_module(section.module)
    except ModuleNotFoundError as error:
        if error.name and section.module.startswith(error.name):
            return f"skipped: {section.module} is not written yet"
        return f"skipped: {section.module} needs {error.name}, which is not installed"
    function = getattr(module, section.function, None)
    if function is None:
        return f"skipped: {section.module} has no {section.function}()"
    return function


def run_section(section: Section, ctx: Context) -> tuple[list[Row], dict[str, Any]]:
    name = f"{section.id} {section.title}"
    started = time.perf_counter()
    status: dict[str, Any] = {"id": section.id, "title": section.title}
    function = load(section)
    if isinstance(function, str):
        say(f"section {name}: {function}")
        rows = [Row(name, "(section skipped)", math.nan, note=function)]
        return rows, {**status, "status": "skipped", "seconds": 0.0, "error": function}
    if section.needs_index and "server" not in ctx.shared:
        why = "skipped: section 1 did not build the big index"
        return [Row(name, "(section skipped)", math.nan, note=why)], {
            **status,
            "status": "skipped",
            "seconds": 0.0,
            "error": why,
        }
    say(f"section {name} ...")
    try:
        rows = function(ctx)
        outcome = "ok"
        error = ""
    except Exception as exc:  # recorded, and the run goes on
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        rows = [Row(name, "(section failed)", math.nan, passed=False, note=error)]
        outcome = "failed"
    seconds = time.perf_counter() - started
    say(f"section {name}: {outcome} in {seconds:.1f} s")
    return rows, {**status, "status": outcome, "seconds": seconds, "error": error}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def machine_facts() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    memory = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        memory = next((int(line.split()[1]) * 1024 for line in f if "MemTotal" in line), 0)
    commit = _git("rev-parse", "HEAD")
    if commit and _git("status", "--porcelain"):
        commit += " (with uncommitted changes)"
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "memory_gib": round(memory / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: _version(name) for name in ("voyager", "grpcio", "numpy", "protobuf")},
        **{name: _version(name) for name in ("deepface", "pymilvus", "milvus-lite")},
        "git_commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    faces, no_faces = faces_dir(args.faces)
    if no_faces:
        say(f"{no_faces}: face-dependent parts are skipped")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="facesearch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        n=args.n, dim=args.dim, seed=args.seed, faces_dir=faces, work_dir=work, quick=args.quick
    )
    date = datetime.date.today().isoformat()
    parameters: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "seed": args.seed,
        "quick": args.quick,
        "sections": ",".join(s.id for s in selected(args.only_ids)),
        "faces": str(faces) if faces else no_faces,
        "server": "fsserver defaults: Dlib model, dlib detector, euclidean, float32, "
        "M 12, ef_construction 200 (query ef: the server's default, Stats.ef)",
        "work_dir": str(work),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    rows: list[Row] = []
    statuses: list[dict[str, Any]] = []
    started = time.perf_counter()
    # Servers that outlive a section (the big one) are stopped here, after the last one.
    with contextlib.ExitStack() as stack:
        ctx.shared["exit_stack"] = stack
        try:
            for section in selected(args.only_ids):
                section_rows, status = run_section(section, ctx)
                rows += section_rows
                statuses.append(status)
        finally:
            say("stopping servers ...")
    parameters["total_seconds"] = round(time.perf_counter() - started, 1)
    if not args.keep and args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "date": date,
        "parameters": parameters,
        "machine": machine_facts(),
        "sections": statuses,
        "rows": [row_dict(r) for r in rows],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    # The default size is <date>; other sizes say theirs, so a 1M run keeps the 100k one.
    name = date if args.n == DEFAULT_N else f"{date}-n{args.n}"
    (args.out / f"{name}.json").write_text(to_json(result))
    (args.out / f"{name}.md").write_text(markdown_report(result))
    print(markdown_table(rows))
    print()
    print(floor_summary(rows))
    print(f"written: {args.out / name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
