"""Graceful shutdown: refuse new calls to one service while the ones in flight finish.

grpc's own Server.stop(grace) refuses every new call at once, health checks included, so a
load balancer probing health would see errors rather than NOT_SERVING. Draining first keeps
the port open: health answers NOT_SERVING, new FaceSearch calls get UNAVAILABLE (clients
retry elsewhere), and calls in flight run to their end, streams included.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from fsserver.api import calls


class Drain(grpc.ServerInterceptor):
    def __init__(self, service: str) -> None:
        self._prefix = f"/{service}/"
        self._changed = threading.Condition()
        self._in_flight = 0
        self._draining = False

    @property
    def in_flight(self) -> int:
        """Calls to the service that have started and not yet ended."""
        return self._in_flight

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        return calls.watch(handler, self._started)

    def _started(self, context: grpc.ServicerContext) -> calls.OnEnd:
        with self._changed:
            refuse = self._draining
            if not refuse:
                self._in_flight += 1
        if refuse:
            context.abort(
                grpc.StatusCode.UNAVAILABLE, "the server is shutting down: retry on another"
            )
        return self._ended

    def _ended(self, outcome: calls.Outcome) -> None:
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def begin(self) -> int:
        """Refuse new calls from now on; returns how many are in flight."""
        with self._changed:
            self._draining = True
            return self._in_flight

    def wait(self, timeout: float | None) -> bool:
        """Wait until no call is in flight, at most `timeout` seconds; whether none is."""
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None  # e.g. --shutdown-grace inf: a lock cannot take that as a timeout
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)
