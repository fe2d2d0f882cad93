"""The HTTP edge's /v1 routes against a real server (vector collections: no face model).

Each operation is checked against the gRPC edge on the same server where both answer, so
the two edges stay one API (qdrant-client's congruence tests do the same across clients).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from certificates import make_pki
from support import RunningServer

DIM = 8
Server = Callable[..., RunningServer]


@pytest.fixture
def http_server(start_server: Server) -> RunningServer:
    return start_server(dim=DIM, model="", http="127.0.0.1:0")


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def _post(url: str, **kwargs: Any) -> requests.Response:
    return requests.post(url, timeout=30, **kwargs)


def _error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert body["message"]
    return str(body["message"])


def _fill(server: RunningServer, rows: np.ndarray) -> dict[str, Any]:
    labels = [f"person-{i % 5}" for i in range(len(rows))]
    answer = _post(
        f"{server.http_url}/v1/collections/default/add",
        json={
            "rows": {
                "vectors": rows.tolist(),
                "labels": labels,
                "metadata": [f"m{i}" for i in range(len(rows))],
            }
        },
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_add_then_query_answers_as_grpc_does(http_server: RunningServer) -> None:
    rows = _rows(200)
    added = _fill(http_server, rows)
    assert added["rows"]["ids"] == list(range(200)) and added["rows"]["errors"] == {}
    base = f"{http_server.http_url}/v1/collections/default"
    raw = _post(f"{base}/query", json={"vector": rows[0].tolist(), "k": 5, "exact": True})
    assert raw.status_code == 200, raw.text
    # Zero values print: the first id is 0 and an exact hit's distance is 0.
    assert '"id": 0' in raw.text and '"distance": 0.0' in raw.text
    neighbors = raw.json()["results"][0]["neighbors"]
    with http_server.client() as client:
        expected = client.query(vector=rows[0], k=5, exact=True).results[0].neighbors
    assert [n["id"] for n in neighbors] == [n.id for n in expected]
    assert [n["label"] for n in neighbors] == [n.label for n in expected]
    assert [n["metadata"] for n in neighbors] == [n.metadata for n in expected]
    # Floats at float32's precision: the shortest decimal that reads back as the same float32.
    for got, want in zip(neighbors, expected, strict=True):
        assert np.float32(got["distance"]) == np.float32(want.distance)
        assert len(repr(got["distance"])) <= len(str(np.float32(want.distance))) + 2
    by_id = _post(f"{base}/query", json={"id": 7, "k": 3}).json()["results"][0]["neighbors"]
    assert by_id[0]["id"] == 7 and by_id[0]["distance"] == 0.0
    batch = _post(f"{base}/query-batch", json={"vectors": rows[:3].tolist(), "k": 2}).json()
    assert [row[0] for row in batch["ids"]] == [0, 1, 2]
    # k 0 (or none) means the default, as an unset proto3 field does over gRPC.
    with http_server.client() as client:
        default_k = len(client.query(vector=rows[1]).results[0].neighbors)
    for body in ({"vector": rows[1].tolist(), "k": 0}, {"vector": rows[1].tolist()}):
        answer = _post(f"{base}/query", json=body).json()
        assert len(answer["results"][0]["neighbors"]) == default_k == 5


def test_items_people_and_deletes(http_server: RunningServer) -> None:
    rows = _rows(50, seed=1)
    _fill(http_server, rows)
    base = f"{http_server.http_url}/v1/collections/default"
    item = requests.get(f"{base}/items/3", timeout=30).json()
    assert item["id"] == 3 and item["label"] == "person-3" and item["metadata"] == "m3"
    assert np.allclose(item["vector"], rows[3])
    people = requests.get(f"{base}/people", timeout=30).json()
    assert people["total"] == 5 and {p["count"] for p in people["people"]} == {10}
    page = requests.get(f"{base}/items", params={"label": "person-1", "page_size": 4}, timeout=30)
    assert page.json()["total"] == 10 and len(page.json()["items"]) == 4
    assert page.json()["next_page_token"] == "4"
    renamed = _post(f"{base}/people/person-1/rename", json={"new_label": "person-2"}).json()
    assert renamed == {"renamed": 10, "merged": True}
    assert requests.delete(f"{base}/people/person-2", timeout=30).json() == {"deleted": 20}
    assert requests.delete(f"{base}/items/0", timeout=30).json() == {"deleted": 1}
    assert _post(f"{base}/delete", json={"ids": [5, 10]}).json() == {"deleted": 2}
    # As over gRPC: an unknown id deletes nothing and says which.
    assert "id 0" in _error(_post(f"{base}/delete", json={"ids": [0, 15]}), 404, "NOT_FOUND")
    _error(requests.get(f"{base}/items/0", timeout=30), 404, "NOT_FOUND")
    stats = requests.get(f"{base}/stats", timeout=30).json()
    assert stats["count"] == 50 - 20 - 3 and stats["people"] == 3 and stats["dim"] == DIM
    saved = _post(f"{base}/save").json()
    assert saved["count"] == stats["count"] and saved["snapshot"]
    with http_server.client() as client:
        assert client.stats().count == stats["count"]


def test_collections_are_created_used_and_dropped(http_server: RunningServer) -> None:
    url = f"{http_server.http_url}/v1/collections"
    created = _post(url, json={"name": "emb", "dim": 3, "space": "cosine"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "emb" and created.json()["dim"] == 3
    _error(_post(url, json={"name": "emb", "dim": 3}), 409, "ALREADY_EXISTS")
    _error(_post(url, json={"name": "bad name!", "dim": 3}), 400, "INVALID_ARGUMENT")
    _post(f"{url}/emb/add", json={"items": [{"vector": [1, 0, 0], "label": "x", "id": 41}]})
    answer = _post(f"{url}/emb/query", json={"vector": [1, 0.1, 0]}).json()
    assert answer["results"][0]["neighbors"][0]["id"] == 41
    names = [c["name"] for c in requests.get(url, timeout=30).json()["collections"]]
    assert names == ["default", "emb"]
    assert requests.delete(f"{url}/emb", timeout=30).json() == {"items": 1}
    _error(requests.get(f"{url}/emb/stats", timeout=30), 404, "NOT_FOUND")


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    http_server: RunningServer,
) -> None:
    _fill(http_server, _rows(20))
    base = f"{http_server.http_url}/v1/collections/default"
    query = f"{base}/query"
    said = _error(
        _post(query, data=b"x", headers={"content-type": "text/plain"}), 415, "INVALID_ARGUMENT"
    )
    assert "application/json" in said
    _error(
        _post(query, data=b"{not json", headers={"content-type": "application/json"}),
        400,
        "INVALID_ARGUMENT",
    )
    _error(_post(query, json=[1, 2]), 400, "INVALID_ARGUMENT")
    broken = b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc'
    _error(
        _post(query, data=broken, headers={"content-type": "multipart/form-data; boundary=xyz"}),
        400,
        "INVALID_ARGUMENT",
    )
    _error(_post(query, json={"image": "not base64!!"}), 400, "INVALID_ARGUMENT")
    assert "URL" in _error(
        _post(query, json={"image": "https://example.com/a.jpg"}), 400, "INVALID_ARGUMENT"
    )
    assert (
        "dimension"
        in _error(_post(query, json={"vector": [1, 2]}), 400, "INVALID_ARGUMENT").lower()
    )
    _error(_post(query, json={"vector": [1, 2, 3, 4, 5, 6, 7, "x"]}), 400, "INVALID_ARGUMENT")
    _error(_post(query, json={"vector": [0.0] * DIM, "k": "many"}), 400, "INVALID_ARGUMENT")
    _error(_post(query, json={"vector": [0.0] * DIM, "k": 10**9}), 400, "INVALID_ARGUMENT")
    _error(_post(query, json={"vector": [0.0] * DIM, "id": 1}), 400, "INVALID_ARGUMENT")
    _error(
        _post(f"{base}/query-batch", json={"vectors": [[0.0] * DIM, [0.0]]}),
        400,
        "INVALID_ARGUMENT",
    )
    _error(
        _post(f"{base}/add", json={"rows": {"vectors": [[1.0] * DIM, [1.0]]}}),
        400,
        "INVALID_ARGUMENT",
    )
    _error(_post(f"{base}/delete", json={"ids": [-1]}), 400, "INVALID_ARGUMENT")
    _error(requests.get(f"{base}/items/abc", timeout=30), 400, "INVALID_ARGUMENT")
    _error(
        _post(f"{http_server.http_url}/v1/collections/nope/query", json={"vector": [0] * DIM}),
        404,
        "NOT_FOUND",
    )
    _error(requests.get(f"{http_server.http_url}/v1/nothing-here", timeout=30), 404, "NOT_FOUND")
    _error(requests.put(query, timeout=30), 405, "INVALID_ARGUMENT")
    # Still serving, and what was acknowledged is there.
    answer = _post(query, json={"vector": [0.0] * DIM, "k": 20}).json()
    assert len(answer["results"][0]["neighbors"]) == 20


def test_a_body_over_the_limit_is_refused_before_it_is_read(start_server: Server) -> None:
    server = start_server(dim=DIM, model="", http="127.0.0.1:0", max_message_mb=1)
    query = f"{server.http_url}/v1/collections/default/query"
    big = {"image": base64.b64encode(b"\0" * (2 * 1024 * 1024)).decode()}
    said = _error(_post(query, json=big), 413, "RESOURCE_EXHAUSTED")
    assert "--max-message-mb" in said

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        yield b'{"image": "'
        for _ in range(40):
            yield b"A" * 65536
        yield b'"}'

    chunked = _post(query, data=chunks(), headers={"content-type": "application/json"})
    _error(chunked, 413, "RESOURCE_EXHAUSTED")
    assert _post(query, json={"vector": [0.0] * DIM}).status_code == 200


def test_probes_schema_and_docs_are_served(http_server: RunningServer) -> None:
    url = http_server.http_url
    assert requests.get(f"{url}/healthz", timeout=30).json() == {"status": "ok"}
    assert requests.get(f"{url}/readyz", timeout=30).json() == {"status": "ready"}
    schema = requests.get(f"{url}/openapi.json", timeout=30).json()
    paths = set(schema["paths"])
    for route in (
        "query",
        "query-batch",
        "add",
        "identify",
        "verify",
        "people",
        "stats",
        "embed",
        "save",
        "compact",
        "delete",
        "items",
        "items/{id}",
    ):
        assert f"/v1/collections/{{collection}}/{route}" in paths, route
    docs = requests.get(f"{url}/docs", timeout=30).text
    assert "cdn" not in docs.lower()  # no internet needed to read them
    script = next(part.split('"')[0] for part in docs.split('src="')[1:])
    assert requests.get(f"{url}{script}", timeout=30).status_code == 200
    page = requests.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_the_token_guards_v1_but_not_the_probes(start_server: Server, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-T0ken\n")
    server = start_server(dim=DIM, model="", http="127.0.0.1:0", auth_token_file=tmp_path / "token")
    stats = f"{server.http_url}/v1/collections/default/stats"
    _error(requests.get(stats, timeout=30), 401, "UNAUTHENTICATED")
    wrong = {"authorization": "Bearer nope"}
    _error(requests.get(stats, headers=wrong, timeout=30), 401, "UNAUTHENTICATED")
    right = {"authorization": "Bearer s3cret-T0ken"}
    assert requests.get(stats, headers=right, timeout=30).json()["count"] == 0
    assert requests.get(f"{server.http_url}/readyz", timeout=30).status_code == 200


def test_https_with_the_grpc_edges_certificate(start_server: Server, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = start_server(
        dim=DIM, model="", http="127.0.0.1:0", tls_cert=pki.server.cert, tls_key=pki.server.key
    )
    assert server.http_url.startswith("https://")
    answer = requests.get(f"{server.http_url}/readyz", verify=str(pki.ca.cert), timeout=30)
    assert answer.json() == {"status": "ready"}
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.http_url}/readyz", timeout=30)  # not signed by a CA it trusts


def _fsserver(data_dir: Path, http: str) -> list[str]:
    """The real `fsserver` command line, vector-only, --http last (a test may replace it)."""
    return [
        *(sys.executable, "-m", "fsserver", "--dim", str(DIM), "--listen", "127.0.0.1:0"),
        *("--data-dir", str(data_dir), "--http", http),
    ]


def test_fsserver_serves_http_and_says_where(tmp_path: Path) -> None:
    command = _fsserver(tmp_path / "a", "127.0.0.1:0")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert "serving on" in process.stdout.readline()
        line = process.stdout.readline()
        assert line.startswith("fsserver: HTTP on http://127.0.0.1:"), line
        url = line.split()[3]
        assert requests.get(f"{url}/readyz", timeout=30).json() == {"status": "ready"}
        # A taken HTTP port stops a second server with one line, before it loads anything.
        port = int(url.rsplit(":", 1)[1])
        taken = subprocess.run(
            [*command[:-1], f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "b")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert taken.returncode == 1
        assert (
            taken.stderr.strip()
            .splitlines()[-1]
            .startswith(f"fsserver: cannot serve HTTP on 127.0.0.1:{port}")
        ), taken.stderr
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0


def test_http_off_serves_none(tmp_path: Path) -> None:
    command = _fsserver(tmp_path, "off")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert "serving on" in process.stdout.readline()
        process.terminate()
        rest, _ = process.communicate(timeout=60)
        assert "HTTP" not in rest
    finally:
        if process.poll() is None:
            process.kill()


def test_json_has_no_float32_noise(http_server: RunningServer) -> None:
    _post(
        f"{http_server.http_url}/v1/collections/default/add",
        json={"items": [{"vector": [0.6] * DIM, "label": "a"}]},
    )
    text = requests.get(f"{http_server.http_url}/v1/collections/default/items/0", timeout=30).text
    assert json.loads(text)["vector"] == [0.6] * DIM
    assert "0.6000000238" not in text


def test_readyz_says_loading_until_the_indexes_are_in(tmp_path: Path) -> None:
    from fsserver.api.server import FaceSearchServer
    from fsserver.config import Config

    config = Config(listen="127.0.0.1:0", data_dir=tmp_path, dim=DIM, model="", http="127.0.0.1:0")
    server = FaceSearchServer(config)
    server.open()  # ports open, nothing loaded yet
    try:
        url = server.http_url
        assert url is not None
        loading = requests.get(f"{url}/readyz", timeout=30)
        assert loading.status_code == 503 and loading.json() == {"status": "loading"}
        assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
        _error(requests.get(f"{url}/v1/collections/default/stats", timeout=30), 503, "UNAVAILABLE")
        server.load()
        assert requests.get(f"{url}/readyz", timeout=30).status_code == 200
    finally:
        server.stop(grace=1.0)
    with pytest.raises(requests.ConnectionError):  # the port is closed once stopped
        requests.get(f"{url}/healthz", timeout=5)


def test_a_label_with_a_slash_is_one_path_segment(http_server: RunningServer) -> None:
    base = f"{http_server.http_url}/v1/collections/default"
    _post(f"{base}/add", json={"items": [{"vector": [1.0] * DIM, "label": "a/b rename"}]})
    quoted = "a%2Fb%20rename"
    renamed = _post(f"{base}/people/{quoted}/rename", json={"new_label": "x/rename"}).json()
    assert renamed == {"renamed": 1, "merged": False}
    assert requests.delete(f"{base}/people/x%2Frename", timeout=30).json() == {"deleted": 1}


def test_an_oversized_body_is_refused_in_each_apis_own_shape(start_server: Server) -> None:
    server = start_server(
        dim=DIM, model="", http="127.0.0.1:0", max_message_mb=1, http_compreface_open=True
    )
    big = b"\0" * (2 * 1024 * 1024)
    native = _post(f"{server.http_url}/v1/collections/default/embed", data=big)
    assert native.status_code == 413 and native.json()["code"] == "RESOURCE_EXHAUSTED"
    compreface = _post(f"{server.http_url}/api/v1/recognition/recognize", data=big)
    assert compreface.status_code == 413
    assert compreface.json()["code"] == 0 and "--max-message-mb" in compreface.json()["message"]


def test_what_http_acknowledged_survives_a_kill(tmp_path: Path) -> None:
    """An add answered over HTTP is in the WAL: SIGKILL, restart, and it is there."""
    command = _fsserver(tmp_path, "127.0.0.1:0")
    rows = _rows(300, seed=3)
    for attempt in ("before", "after"):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            assert "serving on" in process.stdout.readline()
            url = process.stdout.readline().split()[3]
            base = f"{url}/v1/collections/default"
            if attempt == "before":
                answer = _post(f"{base}/add", json={"rows": {"vectors": rows.tolist()}})
                assert answer.json()["rows"]["ids"] == list(range(300))
            else:
                assert requests.get(f"{base}/stats", timeout=30).json()["count"] == 300
                item = requests.get(f"{base}/items/299", timeout=30).json()
                assert np.array_equal(np.float32(item["vector"]), rows[299])
        finally:
            process.kill()
            process.wait(timeout=60)
