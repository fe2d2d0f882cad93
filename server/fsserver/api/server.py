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

from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsserver.api import observability, reflection_v1, security
from fsserver.api.drain import Drain
from fsserver.api.servicer import FaceSearchService, add_to_server
from fsserver.catalog import Catalog
from fsserver.config import Config
from fsserver.faces.embedder import Embedder

log = logging.getLogger(__name__)

# After the grace period, calls still running are cancelled; a handler sees that at its next
# check (a streamed batch, a wait for the face model). It gets this long to return before
# the final save and the WAL's close.
CANCELLED_CALLS_WAIT_SECONDS = 10.0

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FaceSearch"].full_name


def grpc_server(config: Config, interceptors: Sequence[grpc.ServerInterceptor] = ()) -> grpc.Server:
    """A bare grpc.Server with this config's settings (the benchmark's echo server uses it
    too, so its round trip is the floor a FaceSearch call is measured against)."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.rpc_threads, thread_name_prefix="rpc"),
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
        self.catalog = Catalog(config, embedder)
        self._health = health.HealthServicer()
        self.observability = observability.Observability(config, self.catalog)
        # Counts FaceSearch calls in flight, and refuses new ones once stop() begins.
        self._drain = Drain(SERVICE_NAME)
        # Observability first: the outermost interceptor also sees calls auth refuses.
        self._server = grpc_server(
            config,
            [*self.observability.interceptors(), *security.interceptors(config), self._drain],
        )
        add_to_server(FaceSearchService(self.catalog), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        # v1alpha for older tools, v1 for grpcurl, Postman and Kreya today; both list both.
        reflected = (
            SERVICE_NAME,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
            reflection_v1.SERVICE_NAME,
        )
        reflection.enable_server_reflection(reflected, self._server)
        reflection_v1.enable_reflection_v1(reflected, self._server)
        try:
            self.port = security.add_port(self._server, config)
        except RuntimeError:  # grpc's "Failed to bind": the port is taken or not ours
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {config.listen}: the address is in use or invalid")
        self._stopped = threading.Event()
        # The HTTP edge (fsserver/http/), on its own thread; fastapi is imported only here.
        self.http = None
        if config.http:
            from fsserver.http.serving import HttpServer

            self.http = HttpServer(self.catalog, config, self.observability.call_metrics)

    @property
    def http_url(self) -> str | None:
        """http(s)://host:port of the HTTP edge; None without --http."""
        return self.http.url if self.http is not None else None

    @property
    def address(self) -> str:
        host = self.config.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @property
    def metrics_address(self) -> str | None:
        """host:port of /metrics (the bound port once open); None without --metrics-listen."""
        return self.observability.metrics_address

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
        self.observability.start()
        self._server.start()
        if self.http is not None:
            self.http.start()
        log.info("listening on %s (loading)", self.address)

    def load(self) -> None:
        try:
            self.catalog.open()
        except BaseException:
            self._server.stop(None)
            if self.http is not None:
                self.http.stop(0.0)
            self.observability.stop()
            self.catalog.close()
            raise
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        stats = self.catalog.default.stats()
        log.info(
            "serving on %s: %d collection(s); default: %d items, model %r, detector %r, "
            "dim %d, %s/%s",
            self.address,
            len(self.catalog.all()),
            stats.count,
            stats.model,
            stats.detector,
            stats.dim,
            stats.space,
            stats.storage,
        )

    def stop(self, grace: float | None = 5.0, save: bool = True) -> None:
        """Shut down: at once health says NOT_SERVING and new FaceSearch calls get
        UNAVAILABLE, while the port stays open; calls in flight get `grace` seconds (None:
        none) to finish before the rest are cancelled; then what is unsaved is saved."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._health.enter_graceful_shutdown()
        in_flight = self._drain.begin()
        grace = grace or 0.0
        if self.http is not None:
            # Closes the HTTP port and waits for requests in flight; gRPC drains meanwhile.
            http_stopped = threading.Thread(target=self.http.stop, args=(grace,), name="http-stop")
            http_stopped.start()
        if in_flight:
            log.info("shutting down: %d call(s) in flight get %gs to finish", in_flight, grace)
        if not self._drain.wait(grace):
            log.warning(
                "shutting down: cancelling %d call(s) still running after %gs",
                self._drain.in_flight,
                grace,
            )
        self._server.stop(None).wait()  # cancels what is left, health watches included
        if self.http is not None:
            http_stopped.join()
        if not self._drain.wait(CANCELLED_CALLS_WAIT_SECONDS):
            log.warning("shutting down: %d cancelled call(s) still running", self._drain.in_flight)
        try:
            self.observability.stop()
            if save:
                self.catalog.save_unsaved()
        finally:
            self.catalog.close()
        log.info("stopped")

    def wait(self) -> None:
        self._server.wait_for_termination()
