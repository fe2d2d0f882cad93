"""`make bench-peers`' pure parts: the ef it picks, the floors it judges, the tables it writes,
and its exact neighbours. None of the peers (pgvector, Chroma) need be installed."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# bench/ is a folder of the repository, not an installed package: `python -m pytest` from
# the root finds it, a bare `pytest` needs the root on the path.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.peers_data import (  # noqa: E402
    Dataset,
    RowOf,
    default_template,
    exact_neighbours,
    recall_at_k,
)
from bench.peers_report import (  # noqa: E402
    choose_ef,
    echo_line,
    floors,
    markdown_report,
    results_table,
    to_json,
)

EFS = [16, 32, 64]


def _system(name: str, recalls: list[float], p50: float, qps1: float, qps4: float) -> Any:
    per_ef = [
        {"ef": ef, "recall": r, "p50_ms": p50 * ef / 16, "p99_ms": 2 * p50 * ef / 16}
        for ef, r in zip(EFS, recalls, strict=True)
    ]
    chosen, reached = choose_ef(per_ef, 0.99)
    return {
        "system": name,
        "status": "ok",
        "error": "",
        "load_rate": 12345.6,
        "rss_bytes": 200 * 2**20,
        "pss_bytes": 150 * 2**20,
        "per_ef": per_ef,
        "chosen_ef": chosen,
        "reached": reached,
        "qps": {"1": qps1, "4": qps4},
        "notes": {"count": 1000},
    }


def test_choose_ef_takes_the_smallest_that_reaches_the_target() -> None:
    per_ef = [{"ef": 16, "recall": 0.95}, {"ef": 32, "recall": 0.991}, {"ef": 64, "recall": 1.0}]
    assert choose_ef(per_ef, 0.99) == (32, True)
    assert choose_ef(per_ef[::-1], 0.99) == (32, True)


def test_choose_ef_falls_back_to_the_most_exact_when_none_reaches() -> None:
    per_ef = [{"ef": 16, "recall": 0.90}, {"ef": 32, "recall": 0.97}, {"ef": 64, "recall": 0.97}]
    assert choose_ef(per_ef, 0.99) == (64, False)
    with pytest.raises(ValueError):
        choose_ef([], 0.99)


def test_floors_are_judged_at_the_chosen_ef() -> None:
    fs = _system("facesearch", [0.99, 1.0, 1.0], p50=0.3, qps1=1000, qps4=1900)
    pg = _system("pgvector", [0.98, 0.995, 1.0], p50=0.3, qps1=900, qps4=1800)
    checks = floors({"facesearch": fs, "pgvector": pg})
    verdicts = [v for _, _, v in checks]
    # 1900 / 1000 >= 1.8; 1900 >= 1800; p50 0.3 (ef 16) vs 0.6 (pgvector's ef 32) <= 0.75.
    assert verdicts == ["met", "met", "met"], checks
    slow = _system("facesearch", [1.0, 1.0, 1.0], p50=0.5, qps1=1000, qps4=1100)
    assert [v for _, _, v in floors({"facesearch": slow, "pgvector": pg})] == ["not met"] * 3


def test_floors_without_a_peer_are_not_measured() -> None:
    fs = _system("facesearch", [1.0, 1.0, 1.0], p50=0.3, qps1=1000, qps4=1900)
    failed = {"system": "pgvector", "status": "failed", "error": "start: no server"}
    verdicts = [v for _, _, v in floors({"facesearch": fs, "pgvector": failed})]
    assert verdicts == ["met", "not measured", "not measured"]


def test_tables_show_every_system_and_why_one_failed() -> None:
    fs = _system("facesearch", [0.95, 0.97, 0.98], p50=0.3, qps1=1000, qps4=1500)
    failed = {"system": "chroma", "status": "failed", "error": "start: chroma | exited 1"}
    table = results_table([fs, failed], EFS, 0.99)
    lines = table.splitlines()
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]
    assert len(lines) == 4 and len(set(cells)) == 1, lines  # every row as wide as the header
    assert "0.950 / 0.300 / 0.600" in table and "64 (not reached)" in table
    assert "200 (150)" in table and "1.50" in table
    assert "failed: start: chroma \\| exited 1" in table  # a pipe would split the cell
    doc = {
        "date": "2026-12-01",
        "parameters": {"k": 10, "queries": 3, "seconds": 1.0, "efs": EFS},
        "machine": {"cpu_count": 2},
        "systems": [fs, failed],
        "floors": floors({"facesearch": fs}),
    }
    doc["parameters"] |= {"target_recall": 0.99, "clients": 4}
    report = markdown_report(doc)
    assert table in report and "- chroma: error start: chroma | exited 1" in report
    assert '"recall": NaN' not in to_json({**doc, "x": float("nan")})


def test_exact_neighbours_over_blocks_match_one_brute_force() -> None:
    data = Dataset(default_template(16), 2500, seed=3)
    rows = np.concatenate(list(data.blocks()))
    queries = data.queries(20, seed=4)
    truth = exact_neighbours(data.blocks(), queries, 10)
    # The running top k across blocks, as at N = 1M (ten thousand rows a block there).
    assert (exact_neighbours(iter(np.array_split(rows, 7)), queries, 10) == truth).all()
    full = ((queries[:, None, :].astype(np.float64) - rows[None].astype(np.float64)) ** 2).sum(-1)
    expected = np.argsort(full, axis=1, kind="stable")[:, :10]
    assert recall_at_k(expected.tolist(), truth) == 1.0
    assert truth.shape == (20, 10)
    # Held-out queries are new photos: none is a stored row.
    assert full.min() > 0


def test_row_of_maps_ids_back_and_misses_unknown_ones() -> None:
    row_of = RowOf([7, 3, 9])
    assert row_of([9, 7, 3, 4]) == [2, 0, 1, -1]
    assert RowOf()([5, 1]) == [5, 1]
    truth = np.array([[0, 1], [2, 1]])
    assert recall_at_k([[0, 5], [1, 2]], truth) == 0.75


def test_the_echo_floor_is_measured_through_a_real_echo_server() -> None:
    from bench.echo import echo_server
    from bench.peers_clients import Endpoint, sweep

    queries = np.random.default_rng(0).normal(size=(60, 128)).astype(np.float32)
    with echo_server() as address:
        times, found = sweep(Endpoint("echo", address, 0), queries)
    assert len(times) == 60 and all(t > 0 for t in times)
    assert found == [[]] * 60
    line = echo_line({"p50_ms": 0.41, "p99_ms": 0.9, "qps": {"1": 2400.0, "4": 3300.0}}, 4)
    assert "p50 0.410 ms" in line and "1 client 2,400" in line and "4 clients 3,300" in line
    assert "(1.38 times)" in line
    assert "not measured (OSError: no port)" in echo_line({"error": "OSError: no port"}, 4)
