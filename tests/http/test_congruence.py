"""One scenario, two edges: each read answered over HTTP equals the same read over gRPC,
written as `fsclient --json` writes it (qdrant-client's congruence tests, across edges).

Times (search_seconds, embed_seconds, a decision's seconds) differ from call to call and
are left out of the comparison; everything else must be equal, key for key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests

from fsclient import FaceSearchClient
from fsclient.format import tidy_floats, to_json
from support import RunningServer, wait_calibrated

DIM = 16
PEOPLE, PHOTOS = 24, 4
TIMES = {"search_seconds", "embed_seconds", "seconds", "process_rss_bytes", "memory_bytes"}


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _as_cli_json(value: Any) -> Any:
    return _untimed(tidy_floats(to_json(value)))


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    """A vector collection of labelled people, calibrated, served on both edges."""
    from fsserver.api.server import FaceSearchServer
    from fsserver.config import Config

    folder = tmp_path_factory.mktemp("congruence")
    config = Config(listen="127.0.0.1:0", data_dir=folder, dim=DIM, model="", http="127.0.0.1:0")
    running = RunningServer(FaceSearchServer(config).start(), folder)
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(PEOPLE, DIM)).astype(np.float32)
    vectors = np.repeat(centres, PHOTOS, axis=0) + rng.normal(
        scale=0.05, size=(PEOPLE * PHOTOS, DIM)
    ).astype(np.float32)
    labels = [f"person-{i:02d}" for i in range(PEOPLE) for _ in range(PHOTOS)]
    with running.client() as client:
        client.add_vectors(vectors, labels=labels, metadata=[f"m{i}" for i in range(len(labels))])
        wait_calibrated(client)
    yield running, vectors
    running.stop()


def _http(running: RunningServer, method: str, path: str, **kwargs: Any) -> Any:
    url = f"{running.http_url}/v1/collections/default/{path}"
    answer = requests.request(method, url, timeout=30, **kwargs)
    assert answer.status_code == 200, answer.text
    return _untimed(answer.json())


Read = Callable[[FaceSearchClient, np.ndarray], Any]
CASES: dict[str, tuple[Read, str, str, Callable[[np.ndarray], dict[str, Any]]]] = {
    "stats": (lambda c, v: c.stats(), "GET", "stats", lambda v: {}),
    "query by vector": (
        lambda c, v: c.query(vector=v[5] + 0.01, k=7),
        "POST",
        "query",
        lambda v: {"json": {"vector": (v[5] + 0.01).tolist(), "k": 7}},
    ),
    "query by id 0": (
        lambda c, v: c.query(id=0, k=3),
        "POST",
        "query",
        lambda v: {"json": {"id": 0, "k": 3}},
    ),
    "exact query": (
        lambda c, v: c.query(vector=v[9], k=4, exact=True),
        "POST",
        "query",
        lambda v: {"json": {"vector": v[9].tolist(), "k": 4, "exact": True}},
    ),
    "query batch": (
        lambda c, v: c.query_batch(v[:6], k=3, with_metadata=True),
        "POST",
        "query-batch",
        lambda v: {"json": {"vectors": v[:6].tolist(), "k": 3, "with_metadata": True}},
    ),
    "identify a known vector": (
        lambda c, v: c.identify(vector=v[13] + 0.02, candidates=3),
        "POST",
        "identify",
        lambda v: {"json": {"vector": (v[13] + 0.02).tolist(), "candidates": 3}},
    ),
    "identify a stranger": (
        lambda c, v: c.identify(vector=np.full(DIM, 3.0, np.float32), candidates=2),
        "POST",
        "identify",
        lambda v: {"json": {"vector": [3.0] * DIM, "candidates": 2}},
    ),
    "get": (lambda c, v: c.get(17), "GET", "items/17", lambda v: {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_http_answers_as_grpc_does(scenario: Any, case: str) -> None:
    running, vectors = scenario
    read, method, path, request = CASES[case]
    with running.client() as client:
        over_grpc = _as_cli_json(read(client, vectors))
    over_http = _http(running, method, path, **request(vectors))
    assert over_http == over_grpc


def test_listings_answer_as_grpc_does(scenario: Any) -> None:
    running, _ = scenario
    with running.client() as client:
        people, token = client.people(page_size=5, page_token="5")
        items, item_token = client.items("person-03")
    assert _http(running, "GET", "people", params={"page_size": 5, "page_token": "5"}) == {
        "people": _as_cli_json(people.entries),
        "total": people.total,
        "next_page_token": token,
    }
    assert _http(running, "GET", "items", params={"label": "person-03"}) == {
        "items": _as_cli_json(items.entries),
        "total": items.total,
        "next_page_token": item_token,
    }
