"""The HTTP edge's server: uvicorn on its own thread and event loop, in the gRPC server's
process, so both edges share the catalog, the face model's workers and the indexes.

The socket is bound here, before uvicorn starts, so a taken port fails start-up with one
line, and port 0's real port is known at once. TLS uses the gRPC edge's certificate files.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
import threading
import time

import uvicorn

from fsserver.api import security
from fsserver.api.metrics import CallMetrics
from fsserver.catalog import Catalog
from fsserver.config import Config
from fsserver.http.app import Readiness, build_app

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 30.0


def _bind(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it a response's header and body writes wait out delayed ACKs (40 ms a call).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot serve HTTP on {address}: {error.strerror}") from None
    sock.listen(512)
    return sock


class HttpServer:
    def __init__(
        self, catalog: Catalog, config: Config, metrics: CallMetrics | None = None
    ) -> None:
        self.readiness = Readiness(catalog)
        token = security.read_token(config.auth_token_file) if config.auth_token_file else None
        app = build_app(catalog, config, self.readiness, token, metrics)
        tls = config.tls_cert is not None
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                limit_concurrency=config.max_concurrent_rpcs * 4,
                ssl_certfile=str(config.tls_cert) if tls else None,
                ssl_keyfile=str(config.tls_key) if tls else None,
                ssl_ca_certs=str(config.tls_client_ca) if config.tls_client_ca else None,
                ssl_cert_reqs=ssl.CERT_REQUIRED if config.tls_client_ca else ssl.CERT_NONE,
            )
        )
        try:
            self._uvicorn.config.load()  # the TLS context: a bad file fails start-up here
        except (OSError, ssl.SSLError) as error:
            raise security.SecuritySetupError(f"HTTP TLS: {error}") from None
        self._socket = _bind(config.http)
        self.scheme = "https" if tls else "http"
        host = config.http.rpartition(":")[0] or "0.0.0.0"
        self.address = f"{host}:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def _run(self) -> None:
        asyncio.run(self._uvicorn.serve(sockets=[self._socket]))

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._uvicorn.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise OSError(f"HTTP on {self.address} did not start")
            time.sleep(0.01)
        if not self._uvicorn.started:
            raise OSError(f"HTTP on {self.address} failed to start (see the log)")
        log.info("HTTP on %s", self.url)

    def stop(self, grace: float) -> None:
        """Stop accepting; requests in flight get `grace` seconds (uvicorn's shutdown)."""
        # uvicorn reads its grace when shutdown begins: the caller's, as gRPC's drain uses
        # (None: wait as long as it takes, e.g. --shutdown-grace inf).
        forever = not grace < threading.TIMEOUT_MAX - 5.0
        self._uvicorn.config.timeout_graceful_shutdown = None if forever else math.ceil(grace)
        self.readiness.stopping = True
        self._uvicorn.should_exit = True
        self._thread.join(None if forever else grace + 5.0)
        if self._thread.is_alive():
            self._uvicorn.force_exit = True
            self._thread.join(5.0)
        self._socket.close()
