"""The HTTP application: /v1 JSON routes, /api/v1 CompreFace-compatible routes (when keys
are configured), health probes, OpenAPI at /openapi.json with docs at /docs, the web page
at /.

With --auth-token-file, /v1 wants `Authorization: Bearer <token>` as gRPC calls do; the
probes, the schema and the page's static files are open (they say nothing about the
data). The CompreFace routes are guarded by their own x-api-key instead.
"""

from __future__ import annotations

import hmac
import logging
import time
from importlib.resources import files
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi_offline import FastAPIOffline
from starlette.responses import FileResponse, JSONResponse
from starlette.staticfiles import StaticFiles

from fsserver.api.metrics import CallMetrics
from fsserver.catalog import Catalog
from fsserver.config import Config
from fsserver.http import routes, routes_people
from fsserver.http.bodies import BodyLimit
from fsserver.http.errors import HttpError, install_handlers

STATIC = files("fsserver.http") / "static"
log = logging.getLogger(__name__)
# The page loads only its own files and talks only to this server; photos are shown from
# blob: URLs. No other site may frame it.
PAGE_HEADERS = {
    "cache-control": "no-cache",
    "content-security-policy": "default-src 'self'; img-src 'self' blob: data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class Readiness:
    """Whether the model and the indexes are loaded and the server is not stopping."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self.stopping = False

    @property
    def ready(self) -> bool:
        return self._catalog.loaded and not self.stopping


def bearer_check(token: str | None) -> Any:
    """A dependency refusing requests without the server's bearer token (None: open)."""
    expected = token.encode("ascii") if token else b""

    async def check(request: Request) -> None:
        if not expected:
            return
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise HttpError(
                401,
                "UNAUTHENTICATED",
                "this server requires a token: send 'Authorization: Bearer <token>'",
            )
        # Constant time: how long the comparison takes says nothing about the token.
        if not hmac.compare_digest(presented.strip().encode("utf-8"), expected):
            raise HttpError(401, "UNAUTHENTICATED", "the bearer token is not valid for this server")

    return check


def build_app(
    catalog: Catalog,
    config: Config,
    readiness: Readiness,
    token: str | None = None,
    metrics: CallMetrics | None = None,
) -> FastAPI:
    # /docs and /redoc from the package's own copy of Swagger UI: this server may have
    # no internet, and a page that loads from a CDN would stay blank there.
    app = FastAPIOffline(
        title="facesearch",
        summary="Face and vector search: DeepFace embeddings, Voyager HNSW indexes, "
        "calibrated open-set identification.",
        version="1",
    )
    install_handlers(app)
    guarded = [Depends(bearer_check(token))]
    app.include_router(routes.router(catalog), dependencies=guarded)
    app.include_router(routes_people.router(catalog), dependencies=guarded)
    compreface = _compreface_router(catalog, config)
    if compreface is not None:
        app.include_router(compreface)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Readiness: the face model and every collection's index are loaded."""
        if readiness.ready:
            return JSONResponse({"status": "ready"})
        state = "stopping" if readiness.stopping else "loading"
        return JSONResponse({"status": state}, status_code=503)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers=PAGE_HEADERS)

    async def observe(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        seconds = time.perf_counter() - started
        route = getattr(request.scope.get("route"), "path", "unmatched")
        if metrics is not None:
            metrics.http_answered(f"{request.method} {route}", response.status_code, seconds)
        log.debug(
            "%s %s %d %.1f ms",
            request.method,
            request.url.path,
            response.status_code,
            seconds * 1e3,
        )
        return response

    # Counted and timed by route (/metrics), and with --log-level DEBUG one line per
    # request, as the gRPC edge does per call; not installed otherwise (it costs each
    # request a task switch).
    if metrics is not None or log.isEnabledFor(logging.DEBUG):
        app.middleware("http")(observe)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_middleware(BodyLimit, max_bytes=config.max_message_bytes)
    return app


def _compreface_router(catalog: Catalog, config: Config) -> Any:
    """The CompreFace-compatible routes, when --api-keys or --http-compreface-open says so."""
    if config.api_keys is None and not config.http_compreface_open:
        return None
    from fsserver.http.compreface import compreface_router

    return compreface_router(catalog, config)
