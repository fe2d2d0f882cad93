"""What operators watch: one DEBUG log line per call, and Prometheus metrics.

The interceptor is the outermost one, so it also sees the calls that authentication or a
shutdown refuses. FaceSearch calls are labelled by their method's name ("Query"); health,
reflection and anything else by their full method name ("/grpc.health.v1.Health/Check").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from fsclient import convert
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsserver.api import calls
from fsserver.api.metrics import CallMetrics, MetricsServer, new_registry
from fsserver.catalog import Catalog
from fsserver.config import Config

# One line per call at DEBUG, under a logger of its own so it can be routed or silenced.
request_log = logging.getLogger("fsserver.requests")

FACESEARCH_PREFIX = "/{}/".format(pb.DESCRIPTOR.services_by_name["FaceSearch"].full_name)
# Methods no handler serves: one label, whatever a client made up.
UNKNOWN_RPC = "unknown"


def rpc_label(method: str) -> str:
    return method.removeprefix(FACESEARCH_PREFIX)


def items_in(request: Any) -> int:
    """What one streamed request carries: an Add batch's items and packed rows; else 1."""
    if isinstance(request, pb.AddRequest):
        # dim unset: read as the servicer reads it (the index's dim is not known here).
        row_bytes = 4 * convert.packed_dim(request.rows)
        rows = len(request.rows.vectors) // row_bytes if row_bytes else 0
        return len(request.items) + rows
    return 1


class Observability:
    """The call interceptor and, with --metrics-listen, the /metrics HTTP server."""

    def __init__(self, config: Config, catalog: Catalog) -> None:
        self._metrics: CallMetrics | None = None
        self._server: MetricsServer | None = None
        if config.metrics_listen:
            registry = new_registry(catalog)
            self._metrics = CallMetrics(registry)
            self._server = MetricsServer(config.metrics_listen, registry)

    @property
    def call_metrics(self) -> CallMetrics | None:
        """What the HTTP edge records its requests in (None with metrics off)."""
        return self._metrics

    @property
    def metrics_address(self) -> str | None:
        """host:port serving /metrics once started; None with metrics off."""
        return self._server.address if self._server is not None else None

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        """The call interceptor, or none when there is nothing to record: wrapping every
        call costs tens of microseconds on the query path. The log level is read here, at
        construction, so raise it to DEBUG before the server is built to log calls."""
        if self._metrics is None and not request_log.isEnabledFor(logging.DEBUG):
            return []
        return [_CallInterceptor(self._metrics)]

    def start(self) -> None:
        if self._server is not None:
            self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


class _CallInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: CallMetrics | None) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None:  # grpc answers UNIMPLEMENTED
            if self._metrics is not None:
                self._metrics.refused(UNKNOWN_RPC, grpc.StatusCode.UNIMPLEMENTED)
            request_log.debug(
                "%s UNIMPLEMENTED: no such method",
                method,
                extra={"rpc": UNKNOWN_RPC, "code": "UNIMPLEMENTED", "method": method},
            )
            return None
        rpc = rpc_label(method)
        return calls.watch(handler, lambda context: self._started(rpc, context), items_in)

    def _started(self, rpc: str, context: grpc.ServicerContext) -> calls.OnEnd:
        started = time.perf_counter()
        metrics = self._metrics
        if metrics is not None:
            metrics.started(rpc)
        logged = request_log.isEnabledFor(logging.DEBUG)
        peer = context.peer() if logged else ""

        def ended(outcome: calls.Outcome) -> None:
            seconds = outcome.handler_done_at - started
            if metrics is not None:
                metrics.ended(rpc, outcome.code, seconds, outcome.items)
            if logged:
                _log_call(rpc, outcome, seconds, peer)

        return ended


def _log_call(rpc: str, outcome: calls.Outcome, seconds: float, peer: str) -> None:
    fields: dict[str, Any] = {
        "rpc": rpc,
        "code": outcome.code.name,
        "duration_ms": round(seconds * 1000, 3),
        "peer": peer,
    }
    text = "%(rpc)s %(code)s in %(duration_ms).3f ms from %(peer)s"
    if outcome.items is not None:
        fields["items"] = outcome.items
        text += ", %(items)d items"
    request_log.debug(text, fields, extra=fields)
