"""Identify, Verify and the people RPCs on a real server, with labelled raw vectors.

Synthetic people (a random centre each, photos scattered around it) make the decision's
behaviour checkable exactly: known people's new photos are accepted as themselves,
strangers are not, and the rule the server calibrated says what it estimated.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import numpy as np
import pytest

from fsclient import FaceSearchClient, FaceSearchError
from support import RunningServer, wait_calibrated

DIM = 16
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SPREAD = 0.12  # one person's photos around their centre (centres are ~5.7 apart)


def people(rng: np.random.Generator, count: int, photos: int) -> tuple[np.ndarray, list[str]]:
    centres = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors = np.repeat(centres, photos, axis=0) + rng.normal(
        scale=SPREAD, size=(count * photos, DIM)
    ).astype(np.float32)
    labels = [f"person-{i:03d}" for i in range(count) for _ in range(photos)]
    return vectors.astype(np.float32), labels


@pytest.fixture
def gallery_server(
    start_server: Callable[..., RunningServer],
) -> tuple[RunningServer, np.ndarray, list[str]]:
    running = start_server(dim=DIM, model="")
    rng = np.random.default_rng(7)
    vectors, labels = people(rng, 30, 4)
    with running.client() as client:
        client.add_vectors(vectors, labels=labels)
        wait_calibrated(client)
    return running, vectors, labels


def test_known_people_are_named_and_strangers_are_not(
    gallery_server: tuple[RunningServer, np.ndarray, list[str]],
) -> None:
    running, vectors, labels = gallery_server
    rng = np.random.default_rng(8)
    with running.client() as client:
        rule = client.stats().decision
        assert rule is not None and rule.people == 30 and rule.items == 120
        assert 0 < rule.estimated_far <= rule.target_far == pytest.approx(0.01)
        assert rule.estimated_tar > 0.9
        for row in range(0, 120, 7):  # a new photo of a known person
            probe = vectors[row] + rng.normal(scale=SPREAD, size=DIM).astype(np.float32)
            answer = client.identify(vector=probe).results[0]
            assert answer.known and answer.person == labels[row], answer
            assert answer.similarity > 0.5
            assert answer.candidates[0].person == labels[row]
            assert answer.candidates[0].near >= 1
        strangers, _ = people(np.random.default_rng(9), 10, 1)
        for probe in strangers:
            answer = client.identify(vector=probe).results[0]
            assert not answer.known and answer.person == "", answer
            assert answer.similarity < 0.5
            assert answer.candidates  # the nearest people are still shown


def test_query_match_uses_the_calibrated_threshold(
    gallery_server: tuple[RunningServer, np.ndarray, list[str]],
) -> None:
    running, vectors, _ = gallery_server
    with running.client() as client:
        threshold = client.stats().decision.threshold  # type: ignore[union-attr]
        assert client.stats().threshold == pytest.approx(threshold)
        neighbors = client.query(vector=vectors[0], k=10).results[0].neighbors
        assert [n.match for n in neighbors] == [n.distance <= threshold for n in neighbors]
        assert neighbors[0].match and not neighbors[-1].match
        # A request's own threshold wins.
        loose = client.query(vector=vectors[0], k=10, threshold=100.0).results[0].neighbors
        assert all(n.match for n in loose)
        strict = client.identify(vector=vectors[0], threshold=0.0).results[0]
        assert strict.known  # the stored vector itself: distance 0
        moved = vectors[0] + 0.05
        assert not client.identify(vector=moved, threshold=0.0).results[0].known


def test_people_listing_forget_and_rename(
    gallery_server: tuple[RunningServer, np.ndarray, list[str]],
) -> None:
    running, vectors, labels = gallery_server
    with running.client() as client:
        page, token = client.people(page_size=7)
        assert [p.label for p in page.entries] == sorted(set(labels))[:7]
        assert page.total == 30 and token
        assert {p.count for p in client.all_people()} == {4}
        items, _ = client.items(label="person-003")
        assert items.total == 4 and {i.label for i in items.entries} == {"person-003"}
        assert len(client.all_items()) == 120
        assert client.rename("person-003", "Ada") == (4, False)
        assert client.rename("person-004", "Ada") == (4, True)
        assert client.identify(vector=vectors[12]).results[0].person == "Ada"
        assert client.forget("Ada") == 8
        assert client.stats().people == 28
        answer = client.identify(vector=vectors[12]).results[0]
        assert answer.person != "Ada"


def test_verify_vectors_server_refuses_images_and_names_unknown_people(
    gallery_server: tuple[RunningServer, np.ndarray, list[str]],
) -> None:
    running, _, _ = gallery_server
    with running.client() as client:
        with pytest.raises(FaceSearchError) as refused:
            client.verify(b"\xff\xd8not-a-photo", person="person-001")
        assert refused.value.code in (
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.INVALID_ARGUMENT,
        )


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.forget("nobody"), grpc.StatusCode.NOT_FOUND),
        (lambda c: c.forget(""), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.rename("nobody", "x"), grpc.StatusCode.NOT_FOUND),
        (lambda c: c.rename("person-001", ""), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.rename("person-001", "person-001"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.people(page_token="x"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.people(page_size=10**6), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.identify(vector=np.zeros(3)), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda c: c.identify(vector=np.zeros(DIM), threshold=-1), INVALID),
        (lambda c: c.identify(vector=np.zeros(DIM), candidates=10**6), INVALID),
    ],
)
def test_bad_requests_get_their_status_and_the_server_keeps_serving(
    gallery_server: tuple[RunningServer, np.ndarray, list[str]],
    call: Callable[[FaceSearchClient], object],
    code: grpc.StatusCode,
) -> None:
    running, _, _ = gallery_server
    with running.client() as client:
        with pytest.raises(FaceSearchError) as failed:
            call(client)
        assert failed.value.code == code, failed.value
        assert client.stats().count == 120


def test_too_small_a_gallery_falls_back_to_the_pair_threshold(
    start_server: Callable[..., RunningServer],
) -> None:
    running = start_server(dim=DIM, model="", threshold=None)
    vectors, labels = people(np.random.default_rng(3), 4, 3)
    with running.client() as client:
        client.add_vectors(vectors, labels=labels)
        time.sleep(1.5)
        rule = client.stats().decision
        assert rule is not None and rule.source == "none"  # no model: no pair threshold
        assert "4 people" in rule.reason
        answer = client.identify(vector=vectors[0]).results[0]
        assert not answer.known and answer.candidates[0].person == labels[0]


def test_an_empty_index_identifies_nobody(vector_server: RunningServer) -> None:
    with vector_server.client() as client:
        answer = client.identify(vector=np.ones(16)).results[0]
        assert not answer.known and answer.candidates == []
