"""Assembly: a grpc.Server with the FaceSearch service, standard health and reflection.

The port opens first with health NOT_SERVING, so orchestrators can watch the model and the
snapshot load; health turns SERVING only once both are in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fsclient._proto.facesearch.v1 import facesearch_pb2 as pb
from fsserver import observability, security
from fsserver.config import Config
from fsserver.embedder import Embedder
from fsserver.engine import Engine
from fsserver.service import FaceSearchService, add_to_server

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FaceSearch"].full_name


def grpc_server(config: Config, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> grpc.Server:
    """A bare grpc.Server with this config's settings (the benchmark's echo server uses it
    too, so its round trip is the floor a FaceSearch call is measured against)."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )


class FaceSearchServer:
    def __init__(self, config: Config, embedder: Embedder | None = None) -> None:
        self.config = config
        self.engine = Engine(config, embedder)
        self._health = health.HealthServicer()
        # Observability first: the outermost interceptor also sees calls auth refuses.
        self._server = grpc_server(
            config, [*observability.interceptors(config), *security.interceptors(config)]
        )
        add_to_server(FaceSearchService(self.engine), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = security.add_port(self._server, config)
        if self.port == 0:
            raise OSError(f"cannot listen on {config.listen}")
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        host = self.config.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", SERVICE_NAME):
            self._health.set(name, status)

    def start(self) -> FaceSearchServer:
        """Open the port, load model and snapshot, then report SERVING."""
        self.open()
        self.load()
        return self

    def open(self) -> None:
        """Start answering calls: health says NOT_SERVING, FaceSearch calls UNAVAILABLE."""
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._server.start()
        log.info("listening on %s (loading)", self.address)

    def load(self) -> None:
        try:
            self.engine.load()
        except BaseException:
            self._server.stop(None)
            self.engine.close()
            raise
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        stats = self.engine.stats()
        log.info(
            "serving on %s: %d items, model %r, detector %r, dim %d, %s/%s",
            self.address,
            stats.count,
            stats.model,
            stats.detector,
            stats.dim,
            stats.space,
            stats.storage,
        )

    def stop(self, grace: float | None = 5.0, save: bool = True) -> None:
        """Refuse new calls, let in-flight ones finish, then save what is unsaved."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        try:
            if save and self.engine.unsaved_changes:
                self.engine.save()
        finally:
            self.engine.close()

    def wait(self) -> None:
        self._server.wait_for_termination()
