"""The floor a Query round trip is measured against: a gRPC server that echoes bytes.

It is built by `fsserver.api.server.grpc_server` with the server's default Config (the same
thread pool, message limits and concurrent-call limit), so a Query's round trip divided by
an echo's is what facesearch itself adds: parsing, search, labels, the client's conversion.
Run by the bench as `python -m bench.echo`; prints `echo: serving on HOST:PORT`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

METHOD = "/bench.Echo/Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def serve(listen: str = "127.0.0.1:0") -> None:
    from fsserver.api.server import grpc_server
    from fsserver.config import Config

    server = grpc_server(Config())
    # No (de)serializers: the handler gets the request's bytes and returns them as they are.
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"echo: serving on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop.wait()
    server.stop(1).wait()


@contextmanager
def echo_server() -> Iterator[str]:
    """Start `python -m bench.echo`; yield its address; stop it with SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.echo"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise RuntimeError(f"the echo server did not start: {line!r}")
    try:
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


class EchoClient:
    """A channel set up as FaceSearchClient's; `call` sends bytes and returns the echo."""

    def __init__(self, address: str, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        # Identity (de)serializers: bytes go out and come back untouched.
        self.call = self._channel.unary_unary(METHOD)

    def close(self) -> None:
        self._channel.close()


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:0")
