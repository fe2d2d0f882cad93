"""Transport security and call authentication: TLS (optionally mutual) and bearer tokens.

Every file is read and checked at start-up, so a wrong path or a key that does not belong
to its certificate stops the server with one line instead of failing each handshake later.

With --auth-token-file, every call must carry `authorization: Bearer <token>` metadata,
except grpc.health.v1.Health: orchestrators probe health without credentials, and it tells
nothing about the data. Server reflection needs the token like FaceSearch itself: the
method list is of no use to a caller that may not call the methods.
"""

from __future__ import annotations

import hmac
import logging
import ssl
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from fsserver.config import Config
from fsserver.errors import ServiceError

log = logging.getLogger(__name__)

# Open without a token (see the module docstring).
OPEN_SERVICES = ("/grpc.health.v1.Health/",)
# gRPC metadata values are printable ASCII; a bearer token has no spaces either (RFC 6750).
TOKEN_CHARACTERS = frozenset(string.printable) - frozenset(string.whitespace)


class SecuritySetupError(ServiceError):
    """A TLS or token file that cannot be used: start-up stops with this one line."""


# ---- files -------------------------------------------------------------------------------


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SecuritySetupError(f"{flag} {path}: cannot read: {error.strerror}") from None


def read_token(path: Path) -> str:
    """The token in `path`, surrounding whitespace stripped."""
    raw = _read(path, "--auth-token-file").strip()
    if not raw:
        raise SecuritySetupError(f"--auth-token-file {path}: the file is empty")
    try:
        token = raw.decode("ascii")
    except UnicodeDecodeError:
        token = ""
    if not token or not set(token) <= TOKEN_CHARACTERS:
        # Said without the token itself, which must never reach a log.
        raise SecuritySetupError(
            f"--auth-token-file {path}: the token must be printable ASCII without spaces "
            "(gRPC metadata carries nothing else)"
        )
    return token


def _refuse_encrypted_key() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal; gRPC cannot use such a key.
    raise SecuritySetupError("is encrypted; gRPC needs an unencrypted PEM key")


def _check_certificates(config: Config) -> None:
    """Let OpenSSL parse the PEM files and match the key to its certificate."""
    assert config.tls_cert is not None and config.tls_key is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=str(config.tls_cert))
    except ssl.SSLError:
        raise SecuritySetupError(f"--tls-cert {config.tls_cert}: not a PEM certificate") from None
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key, password=_refuse_encrypted_key)
    except SecuritySetupError as error:
        raise SecuritySetupError(f"--tls-key {config.tls_key}: {error}") from None
    except ssl.SSLError:
        raise SecuritySetupError(
            f"--tls-key {config.tls_key}: not the PEM private key of --tls-cert {config.tls_cert}"
        ) from None
    if config.tls_client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(config.tls_client_ca))
        except ssl.SSLError:
            raise SecuritySetupError(
                f"--tls-client-ca {config.tls_client_ca}: not a PEM certificate"
            ) from None


def server_credentials(config: Config) -> grpc.ServerCredentials:
    """TLS credentials from --tls-cert/--tls-key, requiring client certificates signed by
    --tls-client-ca when it is given."""
    assert config.tls_cert is not None and config.tls_key is not None
    cert = _read(config.tls_cert, "--tls-cert")
    key = _read(config.tls_key, "--tls-key")
    client_ca = (
        _read(config.tls_client_ca, "--tls-client-ca") if config.tls_client_ca is not None else None
    )
    _check_certificates(config)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


# ---- the seam server.py calls --------------------------------------------------------------


def interceptors(config: Config) -> list[grpc.ServerInterceptor]:
    """The interceptors that authenticate calls under this config (none without a token)."""
    if config.auth_token_file is None:
        return []
    return [TokenAuthInterceptor(read_token(config.auth_token_file))]


def add_port(server: grpc.Server, config: Config) -> int:
    """Bind config.listen, with TLS when configured; returns the port (0: failed)."""
    if config.tls_cert is None:
        return server.add_insecure_port(config.listen)
    return server.add_secure_port(config.listen, server_credentials(config))


# ---- token authentication ------------------------------------------------------------------


def _refusal(message: str) -> grpc.RpcMethodHandler:
    """A handler that answers UNAUTHENTICATED without reading the request.

    Stream-stream fits every method shape: the call ends before a message is read or
    written, and no request bytes from an unauthenticated caller are ever parsed.
    """

    def refuse(requests: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.stream_stream_rpc_method_handler(refuse)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls without `authorization: Bearer <token>`, except OPEN_SERVICES."""

    MISSING = "this server requires a token: send metadata 'authorization: Bearer <token>'"
    MALFORMED = "the authorization metadata is not of the form 'Bearer <token>'"
    WRONG = "the bearer token is not valid for this server"

    def __init__(self, token: str) -> None:
        self._token = token.encode("ascii")
        self._refusals = {
            reason: _refusal(reason) for reason in (self.MISSING, self.MALFORMED, self.WRONG)
        }

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method.startswith(OPEN_SERVICES):
            return continuation(handler_call_details)
        refusal = self._check(handler_call_details.invocation_metadata)
        if refusal is None:
            return continuation(handler_call_details)
        # The reason and method only: the presented credential is never logged.
        log.debug("refused %s: %s", method, refusal)
        return self._refusals[refusal]

    def _check(self, metadata: Any) -> str | None:
        """None when the call carries the token, else the reason it is refused."""
        values = [value for key, value in metadata or () if key == "authorization"]
        if not values:
            return self.MISSING
        scheme, _, presented = str(values[0]).partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return self.MALFORMED
        # Constant time: how long the comparison takes says nothing about the token.
        if not hmac.compare_digest(presented.strip().encode("utf-8"), self._token):
            return self.WRONG
        return None
