"""The CLI's pure formatters and its JSON shape: no server, no I/O."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from fsclient.format import (
    AddOutcome,
    add_report_json,
    dumps,
    format_bytes,
    format_distance,
    format_embedding,
    format_item,
    format_ms,
    format_save,
    format_stats,
    to_json,
)
from fsclient.format_add import format_add_summary
from fsclient.format_query import format_by_person, format_neighbor_line, format_neighbors
from fsclient.progress import render_bar, render_spinner
from fsclient.types import (
    AddResult,
    Box,
    Embedding,
    Face,
    FaceMatches,
    Item,
    ItemError,
    Neighbor,
    QueryResult,
    SaveResult,
    Stats,
)

TIMES = "\N{MULTIPLICATION SIGN}"  # box sizes read 64 times 64


def neighbor(
    id: int, distance: float, match: bool, label: str = "", metadata: str = ""
) -> Neighbor:
    return Neighbor(id=id, label=label, metadata=metadata, distance=distance, match=match)


def face(x: int = 10, y: int = 20, size: int = 64) -> Face:
    return Face(
        box=Box(x, y, size, size), confidence=0.99, embedding=np.arange(3, dtype=np.float32)
    )


@pytest.mark.parametrize(
    ("distance", "text"),
    [(0.31, "0.3100"), (0.3125, "0.3125"), (0.0, "0.0000"), (0.367, "0.3670"), (7.3, "7.3000")],
)
def test_distance_has_one_format_four_decimals(distance: float, text: str) -> None:
    assert format_distance(distance) == text


def test_neighbor_lines_follow_the_seed_style_with_id_and_metadata() -> None:
    assert (
        format_neighbor_line(1, neighbor(2, 0.31, True, "img2.jpg"))
        == "1. nearest neighbor is img2.jpg (id 2) with distance 0.3100 (match)"
    )
    assert format_neighbor_line(2, neighbor(0, 0.72, False, "img9.jpg", '{"a":\n 1}')) == (
        '2. nearest neighbor is img9.jpg (id 0) with distance 0.7200 (no match), metadata {"a": 1}'
    )


def test_an_unlabelled_neighbor_is_named_by_its_id() -> None:
    assert "nearest neighbor is id 42 with" in format_neighbor_line(1, neighbor(42, 0.5, False))


def test_without_a_threshold_nothing_is_called_a_match_or_not() -> None:
    result = QueryResult(
        results=[
            FaceMatches(face=None, neighbors=[neighbor(0, 0.0, False), neighbor(1, 7.3, False)])
        ]
    )
    assert format_neighbors(result).splitlines() == [
        "1. nearest neighbor is id 0 with distance 0.0000 (same vector)",
        "2. nearest neighbor is id 1 with distance 7.3000",
        "search took 0.00 ms; this server has no match threshold (fsserver --threshold sets one)",
    ]


def test_an_older_server_that_sends_no_threshold_but_decides_keeps_its_verdicts() -> None:
    result = QueryResult(
        results=[
            FaceMatches(face=None, neighbors=[neighbor(0, 0.2, True), neighbor(1, 0.9, False)])
        ]
    )
    assert format_neighbors(result).splitlines() == [
        "1. nearest neighbor is id 0 with distance 0.2000 (match)",
        "2. nearest neighbor is id 1 with distance 0.9000 (no match)",
        "search took 0.00 ms",
    ]


def test_the_neighbours_are_summed_up_by_person_nearest_first() -> None:
    neighbors = [
        neighbor(3, 0.28, True, "alice"),
        neighbor(8, 0.30, False, "bob"),
        neighbor(4, 0.31, True, "alice"),
        neighbor(9, 0.40, False, ""),
    ]
    assert format_by_person(neighbors) == (
        "by person: alice 2 of 4 (nearest 0.2800, 2 matches), bob 1 of 4 (nearest 0.3000), "
        "(no label) 1 of 4 (nearest 0.4000)"
    )
    assert format_by_person(neighbors[:1]) is None  # one neighbour needs no summary
    assert format_by_person([neighbor(1, 0.1, False), neighbor(2, 0.2, False)]) is None
    assert format_by_person(neighbors[:2]) is None  # everyone once: the list says it all


def test_one_result_has_no_face_header_and_ends_with_the_search_time() -> None:
    result = QueryResult(
        results=[FaceMatches(face=None, neighbors=[neighbor(1, 0.31, True, "img2.jpg")])],
        search_seconds=0.000123,
        threshold=0.4,
    )
    assert format_neighbors(result).splitlines() == [
        "1. nearest neighbor is img2.jpg (id 1) with distance 0.3100 (match)",
        "search took 0.12 ms; match: distance <= 0.4000",
    ]


def test_several_faces_get_a_header_each() -> None:
    result = QueryResult(
        results=[
            FaceMatches(face=face(1, 2, 30), neighbors=[neighbor(1, 0.2, True, "a.jpg")]),
            FaceMatches(face=face(100, 5, 40), neighbors=[]),
        ],
        search_seconds=0.0005,
        embed_seconds=0.4123,
        threshold=0.5,
    )
    assert format_neighbors(result).splitlines() == [
        f"face 1 at x=1,y=2,30{TIMES}30:",
        "  1. nearest neighbor is a.jpg (id 1) with distance 0.2000 (match)",
        f"face 2 at x=100,y=5,40{TIMES}40:",
        "  no neighbors (the index is empty)",
        "search took 0.50 ms (embedding 412 ms); match: distance <= 0.5000",
    ]


def test_milliseconds_and_bytes_read_naturally() -> None:
    assert format_ms(0.0123) == "12.3 ms"
    assert format_ms(1.5) == "1500 ms"
    assert format_bytes(999) == "999 B"
    assert format_bytes(75_100) == "75.1 kB"
    assert format_bytes(5_600_000) == "5.6 MB"


def test_add_summary_lists_each_failure_with_its_reason() -> None:
    failure = AddOutcome(
        "photos/bad.jpg", "photos/bad.jpg", AddResult(None, ItemError(3, "not an image"))
    )
    assert format_add_summary(7, [failure]).splitlines() == [
        "added 7, failed 1",
        "  photos/bad.jpg: INVALID_ARGUMENT: not an image",
    ]
    assert format_add_summary(1, [], added_id=42) == "added 1 (id 42), failed 0"


def test_add_summary_says_which_photos_were_enrolled_already() -> None:
    first = Neighbor(id=0, label="alice", metadata="", distance=0.0, match=True)
    again = AddOutcome("a/1.jpg", "alice", AddResult(id=5), duplicate_of=first)
    skipped = AddOutcome("b/1.jpg", "bob", AddResult(id=0), duplicate_of=first, skipped=True)
    assert format_add_summary(1, [], 5, [again, skipped]).splitlines() == [
        "added 1 (id 5), failed 0, skipped 1 already enrolled",
        "1 already enrolled, stored again (`add --skip-existing` skips such photos):",
        "  a/1.jpg: the same face as id 0 (alice); now also id 5",
        "  b/1.jpg: skipped, the same face as id 0 (alice)",
    ]
    report = add_report_json([again, skipped])
    assert (report["added"], report["failed"], report["skipped"]) == (1, 0, 1)
    assert [(i["id"], i["duplicate_of"], i["skipped"]) for i in report["items"]] == [
        (5, 0, False),
        (0, 0, True),
    ]


def test_embedding_item_stats_and_save_texts() -> None:
    embedding = Embedding(faces=[face()], model="Dlib", dim=3)
    assert format_embedding(embedding).splitlines() == [
        "1 face (model Dlib, 3-d)",
        f"face 1 at x=10,y=20,64{TIMES}64, confidence 0.99: 3-d [0.0000, 1.0000, 2.0000]",
    ]
    assert format_embedding(Embedding(faces=[], model="Dlib", dim=3)).startswith("no faces")

    item = Item(id=5, label="", metadata="{}", vector=np.zeros(128, np.float32))
    text = format_item(item)
    assert "label      (none)" in text
    assert "128-d [0.0000, 0.0000, 0.0000, 0.0000, …]" in text

    stats = Stats(
        count=3, dim=128, space="euclidean", storage="float32", model="", detector="", ef=64
    )
    assert "model          (none: vector-only)" in format_stats(stats).splitlines()
    assert "ef             64 (fixed: --target-recall is off)" in format_stats(stats)
    calibrated = replace(
        stats, target_recall=0.99, estimated_recall=0.9934, recall_measured_at=100_000
    )
    assert "ef             64 (recall@10 0.993 measured over 100000 items; target 0.99)" in (
        format_stats(calibrated)
    )
    assert format_save(SaveResult("snapshots/1", 3, 2048, 0.5)) == (
        "saved 3 items to snapshot snapshots/1 (2.0 kB) in 0.50 s"
    )


def test_to_json_has_the_documented_keys_and_plain_values() -> None:
    result = QueryResult(
        results=[FaceMatches(face=face(), neighbors=[neighbor(7, 0.25, True, "x")])],
        search_seconds=0.001,
    )
    data = to_json(result)
    assert set(data) == {"results", "search_seconds", "embed_seconds", "threshold"}
    matches = data["results"][0]
    assert matches["face"] == {
        "box": {"x": 10, "y": 20, "width": 64, "height": 64},
        "confidence": pytest.approx(0.99),
        "embedding": [0.0, 1.0, 2.0],
    }
    assert matches["neighbors"] == [
        {"id": 7, "label": "x", "metadata": "", "distance": 0.25, "match": True}
    ]
    assert json.loads(dumps(result)) == data  # JSON-able as it stands


def test_to_json_of_items_errors_and_add_reports() -> None:
    item = Item(id=1, label="a", metadata="", vector=np.ones(2, np.float32), thumbnail=b"\xff")
    assert to_json(item) == {
        "id": 1,
        "label": "a",
        "metadata": "",
        "vector": [1.0, 1.0],
        "thumbnail_base64": "/w==",
    }
    ok = AddOutcome("v.npy#0", "v.npy#0", AddResult(id=3))
    bad = AddOutcome("x.jpg", "x.jpg", AddResult(None, ItemError(9, "no face")))
    report = add_report_json([ok, bad])
    assert report["added"] == 1 and report["failed"] == 1 and report["error"] is None
    assert report["items"][0] == {
        "source": "v.npy#0",
        "label": "v.npy#0",
        "id": 3,
        "ok": True,
        "error": None,
        "face": None,
        "faces_found": 0,
        "duplicate_of": None,
        "skipped": False,
    }
    assert report["items"][1]["error"] == {
        "code": 9,
        "code_name": "FAILED_PRECONDITION",
        "message": "no face",
    }
    broken = add_report_json([ok], ItemError(8, "a batch holds 9 items; the limit is 5"))
    assert (broken["added"], broken["failed"], len(broken["items"])) == (1, 0, 1)
    assert broken["error"] == {
        "code": 8,
        "code_name": "RESOURCE_EXHAUSTED",
        "message": "a batch holds 9 items; the limit is 5",
    }
    stats = Stats(count=1, dim=2, space="cosine", storage="float32", model="m", detector="d", ef=8)
    # Every field by name, in the dataclass's order (docs/json.md documents each).
    assert list(to_json(stats)) == [
        "count",
        "dim",
        "space",
        "storage",
        "model",
        "detector",
        "ef",
        "deleted",
        "threshold",
        "normalization",
        "snapshot",
        "wal_replayed",
        "wal_dropped",
        "wal_bytes",
        "embed_queue",
        "target_recall",
        "estimated_recall",
        "recall_measured_at",
        "decision",
        "people",
        "alignment",
        "collection",
        "memory_bytes",
        "process_rss_bytes",
    ]
    assert to_json(stats)["decision"] is None


def test_to_json_refuses_unknown_types() -> None:
    with pytest.raises(TypeError):
        to_json(object())


def test_progress_bar_text() -> None:
    assert render_bar(0, 4, 0.0, width=4) == "adding 0/4 [....]   0%"
    assert render_bar(2, 4, 1.0, width=4) == "adding 2/4 [##..]  50%  2.0/s"


def test_spinner_text_turns_and_counts_the_seconds() -> None:
    assert render_spinner("saving", 0.0, 0) == "saving | 0.0 s"
    assert render_spinner("saving", 3.249, 1) == "saving / 3.2 s"
    assert render_spinner("compacting", 61.0, 2) == "compacting - 61.0 s"
    assert render_spinner("saving", 1.0, 3) == "saving \\ 1.0 s"
    assert render_spinner("saving", 1.0, 4) == render_spinner("saving", 1.0, 0)  # round again


def test_json_floats_carry_float32_precision_and_zeros_print() -> None:
    distance = float(np.float32(0.6))  # 0.6000000238418579 as a float64
    result = QueryResult(
        results=[FaceMatches(face=None, neighbors=[neighbor(0, distance, True, "x")])],
        search_seconds=0.000123456789,  # a float64: kept as it is
        threshold=float(np.float32(0.3)),
    )
    text = dumps(result)
    assert '"distance": 0.6,' in text and "0.6000000238" not in text
    assert '"threshold": 0.3}' in text
    assert '"search_seconds": 0.000123456789' in text
    assert '"id": 0,' in text  # the first id, printed
    assert '"distance": 0.0' in dumps(QueryResult([FaceMatches(None, [neighbor(0, 0.0, True)])]))
