"""How the client reaches the server: plaintext or TLS (optionally mutual), and a token.

Each setting falls back to an environment variable when not given, as the server address
falls back to $FSCLIENT_SERVER:

    FSCLIENT_TLS_CA     PEM file of the CA that signed the server's certificate (TLS on)
    FSCLIENT_TLS_CERT   PEM file of this client's certificate, for mutual TLS (TLS on)
    FSCLIENT_TLS_KEY    PEM file of its private key
    FSCLIENT_TOKEN      the bearer token, sent as `authorization: Bearer <token>`

A token travels in call credentials over TLS. gRPC refuses call credentials on a plaintext
channel (they would cross the network in clear), so there it is sent as plain metadata on
every call instead: fine on loopback, readable by anyone on the path elsewhere.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass
from pathlib import Path

import grpc

PemSource = str | os.PathLike[str] | bytes
Metadata = tuple[tuple[str, str], ...]

# gRPC metadata values are printable ASCII; a bearer token has no spaces either (RFC 6750).
_TOKEN_CHARACTERS = frozenset(string.printable) - frozenset(string.whitespace)


class ConnectionSetupError(ValueError):
    """A TLS file or token the client cannot use; raised before anything is sent."""


DEFAULT_PORT = 50051  # fsserver's default --listen port
# Target schemes gRPC resolves itself, whose addresses carry no port or take one their way.
_OTHER_SCHEMES = ("unix:", "unix-abstract:", "vsock:", "ipv4:", "ipv6:", "xds:")


def with_default_port(target: str) -> str:
    """`target` with fsserver's port added where it names none.

    gRPC dials port 443 for a bare host (its https default), where no fsserver listens
    unless told to: `--server search.internal` would fail with "connection refused".
    """
    if target.startswith(_OTHER_SCHEMES):
        return target
    prefix = ""
    if target.startswith("dns:"):
        # dns:host, dns:///host or dns://authority/host: the host is after the last slash.
        cut = target.rfind("/") + 1 or len("dns:")
        prefix, target = target[:cut], target[cut:]
    if target.startswith("["):  # [IPv6] or [IPv6]:port
        has_port = "]:" in target
    elif target.count(":") > 1:  # a bare IPv6 address, which cannot carry a port
        return f"{prefix}[{target}]:{DEFAULT_PORT}"
    else:
        has_port = ":" in target
    return f"{prefix}{target}" if has_port or not target else f"{prefix}{target}:{DEFAULT_PORT}"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _pem(source: PemSource | None, what: str, kind: str) -> bytes | None:
    """PEM bytes from bytes or a file, checked for the block gRPC will look for."""
    if source is None:
        return None
    shown = "the bytes given" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as error:
            raise ConnectionSetupError(f"{what} {shown}: cannot read: {error.strerror}") from None
    if b"-----BEGIN " not in data or f"{kind.upper()}-----".encode() not in data:
        raise ConnectionSetupError(f"{what} {shown}: not a PEM {kind}")
    return data


def _check_token(token: str) -> str:
    if not set(token) <= _TOKEN_CHARACTERS:
        # Said without the token itself, which must not end up in a log or a terminal.
        raise ConnectionSetupError("the token must be printable ASCII without spaces")
    return token


@dataclass(frozen=True)
class Security:
    """The settled transport settings of one client (environment applied, files read)."""

    tls: bool = False
    ca: bytes | None = None  # None with tls: the system's trusted roots
    cert: bytes | None = None
    key: bytes | None = None
    token: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        tls: bool | None,
        tls_ca: PemSource | None,
        tls_cert: PemSource | None,
        tls_key: PemSource | None,
        token: str | None,
    ) -> Security:
        """Settings from the arguments, else the environment (see the module docstring).

        tls None: TLS when a CA or client certificate is given; True: TLS, trusting the
        system's roots when no CA is given; False: plaintext, the TLS variables ignored.
        token "": no token, even with $FSCLIENT_TOKEN set.
        """
        if tls is False:
            if any(x is not None for x in (tls_ca, tls_cert, tls_key)):
                raise ConnectionSetupError("tls=False takes no TLS CA, certificate or key")
        else:
            tls_ca = tls_ca if tls_ca is not None else _env("FSCLIENT_TLS_CA")
            tls_cert = tls_cert if tls_cert is not None else _env("FSCLIENT_TLS_CERT")
            tls_key = tls_key if tls_key is not None else _env("FSCLIENT_TLS_KEY")
        if (tls_cert is None) != (tls_key is None):
            raise ConnectionSetupError(
                "a TLS client certificate and its key go together "
                "(--tls-cert/--tls-key, $FSCLIENT_TLS_CERT/$FSCLIENT_TLS_KEY)"
            )
        token = token if token is not None else _env("FSCLIENT_TOKEN")
        return cls(
            tls=bool(tls) or tls_ca is not None or tls_cert is not None,
            ca=_pem(tls_ca, "TLS CA", "certificate"),
            cert=_pem(tls_cert, "TLS client certificate", "certificate"),
            key=_pem(tls_key, "TLS client key", "private key"),
            token=_check_token(token.strip()) if token else None,
        )

    def channel(self, target: str, options: list[tuple[str, int]]) -> grpc.Channel:
        if not self.tls:
            return grpc.insecure_channel(target, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )
        if self.token is not None:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(self.token)
            )
        return grpc.secure_channel(target, credentials, options=options)

    @property
    def call_metadata(self) -> Metadata | None:
        """Metadata each call must carry itself: the token, on a plaintext channel."""
        if self.token is None or self.tls:
            return None
        return (("authorization", f"Bearer {self.token}"),)

    def explain_unavailable(self, details: str) -> str | None:
        """What most likely went wrong, when gRPC's UNAVAILABLE details point at TLS.

        gRPC reports every failed handshake as UNAVAILABLE; its own words ("Socket closed",
        "WRONG_VERSION_NUMBER") say little to someone who just mistyped a flag.
        """
        if "CERTIFICATE_VERIFY_FAILED" in details:
            return (
                "TLS: the server's certificate is not signed by a CA this client trusts "
                "(give its CA with --tls-ca or $FSCLIENT_TLS_CA)"
            )
        if "Hostname Verification" in details:
            return "TLS: the server's certificate is not issued for this host name"
        if "WRONG_VERSION_NUMBER" in details:
            return "TLS: the server does not speak TLS (connect without --tls-ca/--tls)"
        if "security handshaker" in details:
            return "TLS: the CA or client certificate given is not usable"
        if "Socket closed" not in details and "reset by peer" not in details:
            return None
        # The server hung up on us: what that likely means depends on what we sent.
        if not self.tls:
            return (
                "the server closed the connection; if it serves TLS, give its CA with "
                "--tls-ca or $FSCLIENT_TLS_CA"
            )
        if self.cert is None:
            return (
                "the server closed the connection during the TLS handshake; it may require "
                "a client certificate (--tls-cert/--tls-key)"
            )
        return (
            "the server closed the connection during the TLS handshake; it may not accept "
            "this client certificate"
        )
