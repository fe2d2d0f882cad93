"""TLS, mutual TLS and bearer tokens, against real servers with real certificates.

The certificates are made per session (tests/certificates.py): a CA, a server certificate
for 127.0.0.1 and localhost, a client certificate, and a second CA that signed neither.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from certificates import Pki, make_pki
from fsclient import FaceSearchClient, FaceSearchError
from fsclient.connection import ConnectionSetupError
from fsproto.facesearch.v1 import facesearch_pb2 as pb
from fsproto.facesearch.v1 import facesearch_pb2_grpc as pb_grpc
from fsserver.api.security import SecuritySetupError, TokenAuthInterceptor
from fsserver.api.server import FaceSearchServer
from fsserver.config import Config
from support import RunningServer, launch_server, run_cli

DIM = 8
TOKEN = "s3cret-T0ken_for.tests"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")  # stripped: editors add the newline
    return path


@pytest.fixture
def tls_server(start_server: Callable[..., RunningServer], pki: Pki) -> RunningServer:
    return start_server(dim=DIM, model="", tls_cert=pki.server.cert, tls_key=pki.server.key)


@pytest.fixture
def mtls_server(start_server: Callable[..., RunningServer], pki: Pki) -> RunningServer:
    return start_server(
        dim=DIM,
        model="",
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=pki.ca.cert,
    )


@pytest.fixture
def token_server(start_server: Callable[..., RunningServer], token_file: Path) -> RunningServer:
    return start_server(dim=DIM, model="", auth_token_file=token_file)


def stats_error(client: FaceSearchClient) -> FaceSearchError:
    with client, pytest.raises(FaceSearchError) as caught:
        client.stats()
    return caught.value


def round_trip(client: FaceSearchClient) -> None:
    """Add, query and stream through `client`: every call shape goes through."""
    with client:
        client.add_vectors(np.eye(DIM), labels=[f"e{i}" for i in range(DIM)])
        nearest = client.query(vector=np.eye(DIM)[3], k=1).results[0].neighbors[0]
        assert nearest.label == "e3"
        assert client.stats().count == DIM


# ---- TLS -----------------------------------------------------------------------------------


def test_tls_works_with_the_ca_as_a_file_or_as_bytes(tls_server: RunningServer, pki: Pki) -> None:
    round_trip(tls_server.client(tls_ca=pki.ca.cert))
    with tls_server.client(tls_ca=pki.ca.cert_pem, timeout=10) as client:
        assert client.stats().count == DIM


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server: RunningServer) -> None:
    error = stats_error(tls_server.client(timeout=10))
    assert error.code == UNAVAILABLE
    assert "if it serves TLS, give its CA with --tls-ca" in error.details


def test_a_client_trusting_another_ca_is_refused(tls_server: RunningServer, pki: Pki) -> None:
    for client in (tls_server.client(tls_ca=pki.other_ca.cert), tls_server.client(tls=True)):
        error = stats_error(client)
        assert error.code == UNAVAILABLE
        assert "certificate is not signed by a CA this client trusts" in error.details


def test_a_tls_client_to_a_plaintext_server_is_told_so(
    vector_server: RunningServer, pki: Pki
) -> None:
    error = stats_error(vector_server.client(tls_ca=pki.ca.cert))
    assert error.code == UNAVAILABLE
    assert "the server does not speak TLS" in error.details


def test_mutual_tls_needs_a_client_certificate_its_ca_signed(
    mtls_server: RunningServer, pki: Pki
) -> None:
    error = stats_error(mtls_server.client(tls_ca=pki.ca.cert))
    assert error.code == UNAVAILABLE
    assert "may require a client certificate" in error.details
    stranger = mtls_server.client(
        tls_ca=pki.ca.cert, tls_cert=pki.other_ca.cert, tls_key=pki.other_ca.key
    )
    assert stats_error(stranger).code == UNAVAILABLE
    round_trip(
        mtls_server.client(tls_ca=pki.ca.cert, tls_cert=pki.client.cert, tls_key=pki.client.key)
    )


def test_the_client_reads_tls_and_token_settings_from_the_environment(
    start_server: Callable[..., RunningServer],
    pki: Pki,
    token_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_server(
        dim=DIM,
        model="",
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=pki.ca.cert,
        auth_token_file=token_file,
    )
    monkeypatch.setenv("FSCLIENT_TLS_CA", str(pki.ca.cert))
    monkeypatch.setenv("FSCLIENT_TLS_CERT", str(pki.client.cert))
    monkeypatch.setenv("FSCLIENT_TLS_KEY", str(pki.client.key))
    monkeypatch.setenv("FSCLIENT_TOKEN", TOKEN)
    round_trip(server.client())  # TLS with call credentials: the token in composite creds
    assert stats_error(server.client(token="")).code == UNAUTHENTICATED


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"tls_ca": "/no/such/ca.pem"}, "TLS CA /no/such/ca.pem: cannot read"),
        ({"tls_ca": b"not a certificate"}, "not a PEM certificate"),
        ({"tls_ca": "CA", "tls_cert": "CLIENT"}, "certificate and its key go together"),
        ({"tls": False, "tls_ca": "CA"}, "tls=False takes no TLS CA"),
        ({"tls_ca": "CA", "tls_cert": "CLIENT", "tls_key": "CA"}, "not a PEM private key"),
        ({"token": "two words"}, "printable ASCII without spaces"),
    ],
)
def test_unusable_client_settings_fail_at_once(
    pki: Pki, options: dict[str, object], says: str
) -> None:
    files = {"CA": pki.ca.cert, "CLIENT": pki.client.cert}
    options = {name: files.get(v, v) if isinstance(v, str) else v for name, v in options.items()}
    with pytest.raises(ConnectionSetupError, match=says) as caught:
        FaceSearchClient("127.0.0.1:1", **options)  # type: ignore[arg-type]
    assert "two words" not in str(caught.value)


# ---- tokens --------------------------------------------------------------------------------


def test_calls_without_the_right_token_are_unauthenticated(token_server: RunningServer) -> None:
    missing = stats_error(token_server.client())
    assert missing.code == UNAUTHENTICATED
    assert missing.details == TokenAuthInterceptor.MISSING
    wrong = stats_error(token_server.client(token=TOKEN + "x"))
    assert wrong.code == UNAUTHENTICATED
    assert wrong.details == TokenAuthInterceptor.WRONG
    # A streaming call is refused the same way, before any request is read.
    with token_server.client() as client, pytest.raises(FaceSearchError) as caught:
        client.add_vectors(np.eye(DIM))
    assert caught.value.code == UNAUTHENTICATED
    round_trip(token_server.client(token=TOKEN))


def test_the_authorization_metadata_must_be_a_bearer_token(token_server: RunningServer) -> None:
    with grpc.insecure_channel(token_server.address) as channel:
        stats = pb_grpc.FaceSearchStub(channel).Stats
        for value in (f"Basic {TOKEN}", TOKEN, "Bearer "):
            with pytest.raises(grpc.RpcError) as caught:
                stats(pb.StatsRequest(), metadata=[("authorization", value)], timeout=10)
            assert caught.value.code() == UNAUTHENTICATED
            assert caught.value.details() == TokenAuthInterceptor.MALFORMED
        # The scheme is case-insensitive (RFC 7235).
        stats(pb.StatsRequest(), metadata=[("authorization", f"bearer {TOKEN}")], timeout=10)


def test_health_is_open_and_reflection_and_unknown_methods_need_the_token(
    token_server: RunningServer,
) -> None:
    with grpc.insecure_channel(token_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as caught:
            list(reflect(iter([ask]), timeout=10))
        assert caught.value.code() == UNAUTHENTICATED
        (answer,) = reflect(iter([ask]), metadata=[("authorization", f"Bearer {TOKEN}")])
        assert "facesearch.v1.FaceSearch" in {s.name for s in answer.list_services_response.service}

        # Which methods exist is not told to a caller without the token either.
        unknown = channel.unary_unary("/facesearch.v1.FaceSearch/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as caught:
            unknown(b"", timeout=10)
        assert caught.value.code() == UNAUTHENTICATED


def test_the_token_never_reaches_the_log(
    token_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    presented = "presented-but-wrong-7d1e"
    assert stats_error(token_server.client(token=presented)).code == UNAUTHENTICATED
    round_trip(token_server.client(token=TOKEN))
    assert "refused /facesearch.v1.FaceSearch/Stats" in caplog.text
    assert presented not in caplog.text and TOKEN not in caplog.text


# ---- start-up checks -----------------------------------------------------------------------


def _start_up_error(tmp_path: Path, **security: object) -> str:
    config = Config(listen="127.0.0.1:0", data_dir=tmp_path / "data", dim=DIM, model="")
    with pytest.raises(SecuritySetupError) as caught:
        FaceSearchServer(replace(config, **security))  # type: ignore[arg-type]
    return str(caught.value)


def test_unusable_tls_files_stop_start_up_with_one_line(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "missing.pem"
    said = _start_up_error(tmp_path, tls_cert=missing, tls_key=pki.server.key)
    assert said == f"--tls-cert {missing}: cannot read: No such file or directory"
    said = _start_up_error(tmp_path, tls_cert=pki.server.key, tls_key=pki.server.key)
    assert said == f"--tls-cert {pki.server.key}: not a PEM certificate"
    said = _start_up_error(tmp_path, tls_cert=pki.server.cert, tls_key=pki.client.key)
    assert (
        said
        == f"--tls-key {pki.client.key}: not the PEM private key of --tls-cert {pki.server.cert}"
    )
    said = _start_up_error(
        tmp_path, tls_cert=pki.server.cert, tls_key=pki.server.key, tls_client_ca=pki.server.key
    )
    assert said == f"--tls-client-ca {pki.server.key}: not a PEM certificate"

    locked = tmp_path / "locked-key.pem"
    key = serialization.load_pem_private_key(pki.server.key_pem, password=None)
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    said = _start_up_error(tmp_path, tls_cert=pki.server.cert, tls_key=locked)
    assert said == f"--tls-key {locked}: is encrypted; gRPC needs an unencrypted PEM key"


def test_unusable_token_files_stop_start_up_without_showing_the_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(" \n")
    assert _start_up_error(tmp_path, auth_token_file=token).endswith(": the file is empty")
    token.write_text("two words")
    said = _start_up_error(tmp_path, auth_token_file=token)
    assert "printable ASCII without spaces" in said and "two" not in said
    said = _start_up_error(tmp_path, auth_token_file=tmp_path)
    assert said.startswith(f"--auth-token-file {tmp_path}: cannot read")


# ---- the real processes --------------------------------------------------------------------


def _env(**values: str) -> dict[str, str]:
    """The environment without any FSCLIENT_* of the caller's, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSCLIENT_")}
    return {**env, **values}


@pytest.fixture
def secure_process(
    tmp_path: Path, pki: Pki, token_file: Path
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, address = launch_server(
        "--dim",
        str(DIM),
        "--data-dir",
        str(tmp_path / "data"),
        "--tls-cert",
        str(pki.server.cert),
        "--tls-key",
        str(pki.server.key),
        "--auth-token-file",
        str(token_file),
    )
    yield process, address
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_fsserver_serves_tls_with_a_token(
    secure_process: tuple[subprocess.Popen[str], str], pki: Pki
) -> None:
    process, address = secure_process
    round_trip(FaceSearchClient(address, tls_ca=pki.ca.cert, token=TOKEN))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_pem)
    with grpc.secure_channel(address, credentials) as channel:
        checked = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stderr is not None and TOKEN not in process.stderr.read()


def test_the_cli_over_tls_with_a_token(
    secure_process: tuple[subprocess.Popen[str], str], pki: Pki, tmp_path: Path
) -> None:
    _, address = secure_process
    ca = str(pki.ca.cert)
    shown = run_cli(
        "--tls-ca", ca, "--json", "stats", server=address, env=_env(FSCLIENT_TOKEN=TOKEN)
    )
    assert shown.returncode == 0, shown.stderr
    assert '"count": 0' in shown.stdout

    (tmp_path / "cli-token").write_text(TOKEN + "\n")
    from_file = run_cli(
        "stats",
        "--tls-ca",
        ca,
        "--token-file",
        str(tmp_path / "cli-token"),
        server=address,
        env=_env(),
    )
    assert from_file.returncode == 0, from_file.stderr

    refused = run_cli("--tls-ca", ca, "stats", server=address, env=_env())
    assert refused.returncode == 1 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line.startswith("fsclient: UNAUTHENTICATED: this server requires a token")
    assert "$FSCLIENT_TOKEN" in line

    untrusted = run_cli(
        "--tls-ca", str(pki.other_ca.cert), "stats", server=address, env=_env(FSCLIENT_TOKEN=TOKEN)
    )
    assert untrusted.returncode == 1
    (line,) = untrusted.stderr.splitlines()
    assert "not signed by a CA this client trusts" in line

    half = run_cli("--tls-ca", ca, "--tls-cert", ca, "stats", server=address, env=_env())
    assert half.returncode == 1
    (line,) = half.stderr.splitlines()
    assert line.startswith("fsclient: error: a TLS client certificate and its key go together")


def test_fsserver_with_an_unreadable_token_file_says_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-token"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "fsserver", "--dim", str(DIM), "--listen", "127.0.0.1:0"),
            *("--data-dir", str(tmp_path / "d"), "--auth-token-file", str(missing)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    said = f"fsserver: --auth-token-file {missing}: cannot read: No such file or directory"
    assert said in run.stderr.splitlines()
