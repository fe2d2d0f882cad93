"""Prometheus metrics: call counts and latencies, and the collections' state read at scrape time.

Each server has its own CollectorRegistry (tests run several servers in one process, and a
shared registry would mix their counts) and its own HTTP server for /metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fsserver.errors import FailedPrecondition, ServiceError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from fsserver.catalog import Catalog

log = logging.getLogger(__name__)

# From a raw-vector query (a few hundred microseconds) to an image enrollment (about half a
# second per photo) and Add streams that load a whole index (minutes).
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class CallMetrics:
    """What the interceptor records about each call."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "facesearch_requests",
            "Calls that ended, by RPC and gRPC status code (errors are the codes other than OK).",
            ["rpc", "code"],
            registry=registry,
        )
        self._seconds = Histogram(
            "facesearch_request_seconds",
            "Time from a call's start to its end (for streams, the end of the stream), by RPC.",
            ["rpc"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._in_flight = Gauge(
            "facesearch_requests_in_flight",
            "Calls started and not yet ended, by RPC.",
            ["rpc"],
            registry=registry,
        )
        self._add_items = Counter(
            "facesearch_add_items",
            "Items and packed rows received in Add streams, stored or refused.",
            registry=registry,
        )

        self._http = Counter(
            "facesearch_http_requests",
            "HTTP requests answered, by route (its template) and HTTP status.",
            ["route", "status"],
            registry=registry,
        )
        self._http_seconds = Histogram(
            "facesearch_http_request_seconds",
            "Time from an HTTP request's arrival to its answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def http_answered(self, route: str, status: int, seconds: float) -> None:
        self._http.labels(route, str(status)).inc()
        self._http_seconds.labels(route).observe(seconds)

    def started(self, rpc: str) -> None:
        self._in_flight.labels(rpc).inc()

    def ended(self, rpc: str, code: grpc.StatusCode, seconds: float, items: int | None) -> None:
        self._in_flight.labels(rpc).dec()
        self._requests.labels(rpc, code.name).inc()
        self._seconds.labels(rpc).observe(seconds)
        if rpc == "Add" and items:
            self._add_items.inc(items)

    def refused(self, rpc: str, code: grpc.StatusCode) -> None:
        """A call answered before any handler ran (an unknown method)."""
        self._requests.labels(rpc, code.name).inc()


class CatalogCollector(Collector):
    """The face models' queues and every collection's index, read at each scrape; index
    figures carry a `collection` label."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def collect(self) -> Iterator[Metric]:
        yield from self._face_models()
        if not self._catalog.loaded:
            return  # still loading: there is no index yet
        families = {
            name: GaugeMetricFamily(name, documentation, labels=["collection"])
            for name, documentation in _INDEX_GAUGES.items()
        }
        for collection in self._catalog.all():
            try:
                stats = collection.stats()
            except ServiceError:
                continue  # dropped or closing
            values: dict[str, float] = {
                "facesearch_index_items": stats.count,
                "facesearch_index_deleted_items": stats.deleted,
                "facesearch_index_memory_bytes": stats.memory_bytes,
                "facesearch_wal_bytes": stats.wal_bytes,
                "facesearch_search_ef": stats.ef,
            }
            if stats.recall_measured_at:
                values["facesearch_search_estimated_recall"] = stats.estimated_recall
            for name, value in values.items():
                families[name].add_metric([stats.collection], value)
        yield from families.values()

    def _face_models(self) -> Iterator[Metric]:
        models = self._catalog.faces.loaded
        queues = [m.queue for m in models]
        yield _gauge(
            "facesearch_embed_queue_depth",
            "Requests carrying images that hold a place in a face model's queue, waiting or "
            "embedding (an Add batch counts once).",
            sum(q.depth for q in queues),
        )
        yield _gauge(
            "facesearch_embed_queue_capacity",
            "Places in the face models' queues (--max-embed-queue each).",
            sum(q.slots for q in queues),
        )
        pools = [m.pool for m in models if m.pool is not None]
        if pools:
            yield _gauge(
                "facesearch_embed_workers",
                "Face model worker processes.",
                sum(len(p.pids) for p in pools),
            )
            yield _gauge(
                "facesearch_embed_workers_busy",
                "Face model worker processes with an image in hand.",
                sum(len(p.busy_pids) for p in pools),
            )


_INDEX_GAUGES = {
    "facesearch_index_items": "Items in the index (not deleted).",
    "facesearch_index_deleted_items": "Deleted items still in the HNSW graph until a compaction.",
    "facesearch_index_memory_bytes": "An estimate of the index's memory (graph, vectors, records).",
    "facesearch_wal_bytes": "Size of the write-ahead log on disk, all segments (Save trims it).",
    "facesearch_search_ef": "The default ef of searches now.",
    "facesearch_search_estimated_recall": "Recall@10 measured at the default ef on a sample.",
}


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def new_registry(catalog: Catalog) -> CollectorRegistry:
    """A registry with this server's collections and the process's own metrics."""
    registry = CollectorRegistry()
    registry.register(CatalogCollector(catalog))
    # Memory, CPU and open files of the process, Python's version and its GC: the same in
    # every registry of one process, which is harmless.
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def split_host_port(listen: str) -> tuple[str, int]:
    """'HOST:PORT' → (host, port); an empty host or '[::]' style brackets are allowed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-listen wants HOST:PORT, not {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """Serves a registry over HTTP at /metrics, in a daemon thread."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        self._host, self._port = split_host_port(listen)
        self._registry = registry
        self._httpd: WSGIServer | None = None

    @property
    def address(self) -> str:
        """host:port it listens on (the bound port, when asked for port 0)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def start(self) -> None:
        try:
            self._httpd, _thread = start_http_server(
                self._port, addr=self._host, registry=self._registry
            )
        except OSError as error:  # e.g. the port is taken: a start-up error, not a crash
            raise FailedPrecondition(
                f"cannot serve metrics on {self.address}: {error.strerror or error}"
            ) from error
        self._port = self._httpd.server_address[1]  # the one bound, when asked for port 0
        log.info("metrics on http://%s/metrics", self.address)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()  # returns once serve_forever has returned
            self._httpd.server_close()
            self._httpd = None
