"""Face detection and embedding in worker processes, so images are embedded in parallel.

DeepFace is not thread-safe (embedder.py), so in one process images are embedded one at a
time. Each worker here is a separate process ("spawn": no state forked from a threaded gRPC
server) that loads the model and detector once and then decodes, downscales, detects and
embeds whatever image bytes it is sent; the faces (and any domain error) come back pickled.

Each worker is fed by one thread of a small thread pool, so `submit` returns a Future and
the images of one Add batch are embedded on all workers at once. Workers are hand-rolled
(a Pipe each) rather than a ProcessPoolExecutor, which is broken for good once any worker
dies: here a worker that dies (a segfault in the detector, the OOM killer) fails only the
image it was embedding, with UNAVAILABLE, and is replaced. Workers exit by themselves once
the server process is gone (their pipe reaches end-of-file), so none are left behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from fsserver.errors import ServiceError, Unavailable

if TYPE_CHECKING:
    from multiprocessing.context import SpawnProcess

    from fsserver.faces.embedder import Faces

log = logging.getLogger(__name__)

# How long a stopping worker gets to exit after SIGTERM before it is killed.
_STOP_SECONDS = 5.0


class WorkerDied(Exception):
    """The worker's end of the pipe closed: the process has died."""


def _portable(error: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _serve(
    conn: Connection, model: str, detector: str, alignment: str, max_side: int, max_pixels: int
) -> None:
    """A worker process's main loop: load once, then image bytes in, faces out."""
    # The server coordinates shutdown; a terminal's Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The server's stdout carries its "serving on" line for scripts; model chatter goes to
    # stderr instead.
    os.dup2(2, 1)
    import cv2

    # One process per core already; OpenCV's own threads would only contend with the others.
    cv2.setNumThreads(1)
    from fsserver.faces.embedder import DeepFaceEmbedder, embed_bytes

    try:
        embedder = DeepFaceEmbedder(model, detector, alignment)
    except BaseException as error:
        conn.send(("failed", _portable(error)))
        return
    conn.send(
        (
            "ready",
            embedder.model,
            embedder.detector,
            embedder.alignment,
            embedder.detection,
            embedder.dim,
        )
    )
    while True:
        try:
            image = conn.recv()
        except (EOFError, OSError):
            return  # the server has gone
        if image is None:
            return
        try:
            # With their stage_times, measured here (the parent's clock would add the pipe).
            faces = embed_bytes(embedder, image, max_side, max_pixels)
            reply: tuple[Any, ...] = ("ok", faces)
        except Exception as error:
            reply = ("error", _portable(error), traceback.format_exc())
        try:
            conn.send(reply)
        except OSError:
            return


class _Worker:
    """One worker process and the parent's end of its pipe; used by one thread at a time."""

    def __init__(self, args: tuple[str, str, str, int, int]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_end = context.Pipe()
        self.process: SpawnProcess = context.Process(
            target=_serve, args=(child_end, *args), name="fsserver-embed", daemon=True
        )
        self.process.start()
        child_end.close()  # so the parent sees end-of-file once the child is gone
        self.info: tuple[str, str, str, str, int] | None = None
        self.busy = False

    @property
    def pid(self) -> int:
        assert self.process.pid is not None  # started in __init__
        return self.process.pid

    def exited(self) -> bool:
        # The sentinel, not is_alive(): that reaps the child, and two threads reaping one
        # pid at once (Process.start reaps every finished child) can see it alive.
        return bool(wait([self.process.sentinel], timeout=0))

    def _recv(self) -> Any:
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            raise WorkerDied from None

    def wait_ready(self) -> tuple[str, str, str, str, int]:
        """(model, detector, alignment, detection, dim) once the worker has loaded them."""
        if self.info is None:
            message = self._recv()
            if message[0] == "failed":
                raise message[1]
            self.info = (message[1], message[2], message[3], message[4], message[5])
        return self.info

    def embed(self, image: bytes) -> Faces:
        self.wait_ready()
        try:
            self.conn.send(image)
        except OSError:
            raise WorkerDied from None
        reply = self._recv()
        if reply[0] == "ok":
            faces: Faces = reply[1]
            return faces
        error: BaseException = reply[1]
        if not isinstance(error, ServiceError):  # a model failure: keep its traceback
            log.warning("face model worker %d failed:\n%s", self.pid, reply[2].rstrip())
        raise error

    def death(self) -> str:
        """How the process ended (its pipe has closed, so it has or is about to)."""
        self.process.join(_STOP_SECONDS)
        code = self.process.exitcode
        if code is None:
            return "its pipe closed"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"

    def stop(self) -> None:
        # Workers hold no state worth a polite goodbye, and one may be mid-image.
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(_STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class EmbedPool:
    """`workers` processes, each with the DeepFace model and detector loaded once, embedding
    with `alignment` ("dlib", "deepface" or "auto": embedder.py).

    Construction returns once every worker has loaded; it raises the loading error (an
    unknown model name, missing weights) otherwise.
    """

    def __init__(
        self,
        workers: int,
        model: str,
        detector: str,
        max_side: int,
        max_pixels: int,
        alignment: str = "auto",
    ) -> None:
        if workers < 1:
            raise ValueError(f"an embed pool needs at least one worker, not {workers}")
        started = time.perf_counter()
        self._args = (model, detector, alignment, max_side, max_pixels)
        self._lock = threading.Lock()  # guards _workers and _closed
        self._closed = False
        self._workers = [_Worker(self._args) for _ in range(workers)]
        try:
            # They load at the same time; the first failure is the one reported.
            infos = {worker.wait_ready() for worker in self._workers}
        except WorkerDied:
            self.close()
            raise Unavailable("a face model worker died while loading the model") from None
        except BaseException:
            self.close()
            raise
        assert len(infos) == 1, infos
        (self.model, self.detector, self.alignment, self.detection, self.dim) = infos.pop()
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for worker in self._workers:
            self._idle.put(worker)
        # One thread per worker: each takes an idle worker and waits on its pipe.
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="embed")
        log.info(
            "%d face model workers loaded %s / %s (%s alignment) in %.1fs (pids %s)",
            workers,
            model,
            detector,
            self.alignment,
            time.perf_counter() - started,
            " ".join(map(str, self.pids)),
        )

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [worker.pid for worker in self._workers]

    @property
    def busy_pids(self) -> list[int]:
        """Workers with an image in hand (a fresh one may still be loading its model)."""
        with self._lock:
            return [worker.pid for worker in self._workers if worker.busy]

    @property
    def ready(self) -> bool:
        """Every worker has its model loaded (a replacement may still be loading)."""
        with self._lock:
            return not self._closed and all(w.info is not None for w in self._workers)

    def submit(self, image: bytes) -> Future[Faces]:
        """Decode, downscale, detect and embed on the next free worker: every face,
        largest first; [] when there is none, with the worker's `stage_times` (embedder.py).
        Image errors are raised as in-process."""
        with self._lock:
            if self._closed:
                raise Unavailable("the server is shutting down")
            return self._threads.submit(self._embed, image)

    def embed(self, image: bytes) -> Faces:
        return self.submit(image).result()

    def _embed(self, image: bytes) -> Faces:
        worker = self._idle.get()
        try:
            if worker.exited():  # died while idle: no request is to blame
                log.warning("face model worker %d %s while idle", worker.pid, worker.death())
                worker = self._replace(worker)
            worker.busy = True
            try:
                return worker.embed(image)
            finally:
                worker.busy = False
        except WorkerDied:
            if self._closed:
                raise Unavailable("the server is shutting down") from None
            how = worker.death()
            log.error("face model worker %d died (%s) while embedding an image", worker.pid, how)
            worker = self._replace(worker)
            # UNAVAILABLE, not INVALID_ARGUMENT: the server cannot tell a crash this image
            # caused from an OOM kill or an operator's signal, and a retry may well succeed.
            raise Unavailable(
                f"the face model's worker process died while embedding this image ({how}); "
                "it has been replaced, retry the image"
            ) from None
        finally:
            self._idle.put(worker)

    def _replace(self, dead: _Worker) -> _Worker:
        """A fresh worker in the dead one's place; it loads while the first image waits."""
        with self._lock:
            if self._closed:
                return dead
            dead.stop()
            fresh = _Worker(self._args)
            self._workers[self._workers.index(dead)] = fresh
        log.info("started face model worker %d in place of %d", fresh.pid, dead.pid)
        return fresh

    def close(self) -> None:
        """Stop every worker (the server has stopped taking calls); queued images are cancelled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        threads = getattr(self, "_threads", None)
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        for worker in workers:
            worker.stop()
