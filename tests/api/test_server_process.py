"""The real `fsserver` entry point: start-up, health, reflection, SIGTERM saves and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fsclient import FaceSearchClient, FaceSearchError
from fsserver.storage.snapshot import snapshot_dirs
from support import RunningServer, launch_server

DIM = 8


def test_sigterm_saves_and_exits_zero_then_restart_has_the_data(
    server_process: Callable[..., tuple[subprocess.Popen[str], str]], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    process, address = server_process("--dim", str(DIM), "--data-dir", str(data))
    with FaceSearchClient(address) as client:
        client.add_vectors(np.eye(DIM), labels=[f"e{i}" for i in range(DIM)])
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert len(snapshot_dirs(data)) == 1
    _, address = server_process("--dim", str(DIM), "--data-dir", str(data))
    with FaceSearchClient(address) as client:
        assert client.stats().count == DIM
        assert client.query(vector=np.eye(DIM)[2], k=1).results[0].neighbors[0].label == "e2"


def test_env_vars_configure_the_server(
    server_process: Callable[..., tuple[subprocess.Popen[str], str]], tmp_path: Path
) -> None:
    env = {"FSSERVER_DIM": "4", "FSSERVER_SPACE": "cosine", "FSSERVER_EF": "99"}
    os.environ.update(env)
    try:
        _, address = server_process("--data-dir", str(tmp_path / "d"))
    finally:
        for name in env:
            del os.environ[name]
    with FaceSearchClient(address) as client:
        stats = client.stats()
    assert (stats.dim, stats.space, stats.ef, stats.model) == (4, "cosine", 99, "")


def test_a_contract_mismatch_stops_start_up_with_one_clear_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process, address = launch_server("--dim", str(DIM), "--data-dir", str(data))
    with FaceSearchClient(address) as client:
        client.add_vectors(np.ones(DIM))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fsserver",
            "--listen",
            "127.0.0.1:0",
            "--dim",
            "16",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("fsserver: ") and "dim 8 vs 16" in last


def test_health_is_not_serving_until_loaded(start_server: Callable[..., RunningServer]) -> None:
    from dataclasses import replace

    from fsserver.api.server import FaceSearchServer

    running = start_server(dim=DIM)
    server = FaceSearchServer(replace(running.server.config, data_dir=running.data_dir / "x"))
    server.open()
    try:
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = health.Check(health_pb2.HealthCheckRequest(service="")).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            with (
                FaceSearchClient(server.address) as client,
                pytest.raises(FaceSearchError) as error,
            ):
                client.stats()
            assert error.value.code == grpc.StatusCode.UNAVAILABLE
            assert "loading" in error.value.details
            server.load()
            for name in ("", "facesearch.v1.FaceSearch"):
                request = health_pb2.HealthCheckRequest(service=name)
                assert health.Check(request).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(grace=0)


def test_reflection_lists_the_services(vector_server: RunningServer) -> None:
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(stub.ServerReflectionInfo(iter([request])))
        names = {s.name for s in response.list_services_response.service}
        assert {"facesearch.v1.FaceSearch", "grpc.health.v1.Health"} <= names
        file_request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="facesearch.v1.FaceSearch"
        )
        described = next(stub.ServerReflectionInfo(iter([file_request])))
        assert described.file_descriptor_response.file_descriptor_proto
        # And v1 (what grpcurl, Postman and Kreya ask for), listing the same services.
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        listed = next(v1(iter([request])))
        assert {s.name for s in listed.list_services_response.service} == names
        assert "grpc.reflection.v1.ServerReflection" in names


def test_a_taken_port_stops_start_up_with_one_clear_line(
    server_process: Callable[..., tuple[subprocess.Popen[str], str]], tmp_path: Path
) -> None:
    _, address = server_process("--dim", str(DIM), "--data-dir", str(tmp_path / "a"))
    command = [sys.executable, "-m", "fsserver", "--listen", address, "--dim", str(DIM)]
    failed = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last == f"fsserver: cannot listen on {address}: the address is in use or invalid"
