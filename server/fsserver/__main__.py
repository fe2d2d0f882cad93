"""`fsserver`: run the facesearch server until SIGTERM/SIGINT, then save and exit 0.

`fsserver enroll SOURCE --server ADDR` embeds photos with Ray Data and adds them to a running
server instead (fsserver/shards/enroll.py; needs the facesearch[ray] extra).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["enroll"]:
        try:
            from fsserver.shards.enroll import main as enroll
        except ImportError as error:
            print(
                f"fsserver enroll: Ray is not installed ({error.name}): "
                "pip install 'facesearch[server,ray]'",
                file=sys.stderr,
            )
            return 1
        return enroll(arguments[1:])
    from fsserver import logs
    from fsserver.config import parse_config

    config = parse_config(arguments)
    from fsserver.storage.heap import tune_malloc

    malloc = tune_malloc()  # before any thread starts: see heap.py
    try:
        logs.configure(config.log_level, config.log_format)
    except ValueError as error:
        print(f"fsserver: {error}", file=sys.stderr)
        return 2
    logging.getLogger("fsserver").debug("malloc: %s", ", ".join(malloc) or "glibc defaults")
    try:
        from fsserver.api.server import FaceSearchServer
    except ImportError as error:
        print(
            f"fsserver: the server stack is not installed ({error.name}): "
            "pip install 'facesearch[server]'",
            file=sys.stderr,
        )
        return 1
    from fsserver.errors import ServiceError

    try:
        server = FaceSearchServer(config)
    except (ServiceError, OSError) as error:  # e.g. the port is taken
        print(f"fsserver: {error}", file=sys.stderr)
        return 1
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("fsserver").info("%s: shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        server.start()
    except ServiceError as error:
        print(f"fsserver: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # e.g. an unknown model name, or weights it cannot fetch
        logging.getLogger("fsserver").debug("start-up failed", exc_info=True)
        what = f"model {config.model!r} / detector {config.detector!r}"
        print(f"fsserver: start-up failed loading {what}: {error}", file=sys.stderr)
        return 1
    if config.backend == "ray":
        # ray.init installed its own SIGTERM handler (it dumps a stack and dies, with no
        # final save and Ray left running): take the signals back.
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    # Printed on stdout for scripts (and `make demo`) that start the server on port 0.
    print(f"fsserver: serving on {server.address}", flush=True)
    if server.http_url is not None:
        print(f"fsserver: HTTP on {server.http_url} (the web page: {server.http_url}/)", flush=True)
    stop_requested.wait()
    server.stop(grace=config.shutdown_grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
