"""Verify on the labelled pairs of shared/faces (master.csv), through the real server.

The gallery (every labelled photo, 13 people) is enrolled first, so the server calibrates
its pair threshold on it; then each pair is sent as two images to Verify. master.csv holds
300 pairs (38 same-person); DeepFace's own pipeline reached 0.997 on
them (shared/faces/README.md).
"""

from __future__ import annotations

import csv
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import Launch

from fsclient import FaceSearchClient

FLOOR = 0.95


def test_verify_accuracy_on_master_pairs(
    faces_dir: Path, identities: dict[str, str], server_process: Launch, tmp_path: Path
) -> None:
    _, address = server_process("--data-dir", str(tmp_path / "data"), "--embed-workers", "2")
    with (faces_dir / "master.csv").open() as f:
        pairs = [(r["file_x"], r["file_y"], r["Decision"] == "Yes") for r in csv.DictReader(f)]
    with FaceSearchClient(address) as client:
        files = sorted(identities)
        results = client.add_images(
            [faces_dir / f for f in files], labels=[identities[f] for f in files]
        )
        assert all(r.ok for r in results)
        deadline = time.monotonic() + 60
        while (rule := client.stats().decision) is None or rule.items != len(files):
            assert time.monotonic() < deadline, rule
            time.sleep(0.5)
        assert rule.source == "calibrated", rule

    def verify(pair: tuple[str, str, bool]) -> bool:
        with FaceSearchClient(address) as client:
            answer = client.verify(faces_dir / pair[0], faces_dir / pair[1])
        assert answer.threshold == rule.pair_threshold
        assert (answer.similarity >= 0.5) == answer.same
        return answer.same == pair[2]

    with ThreadPoolExecutor(2) as pool:
        right = list(pool.map(verify, pairs))
    accuracy = sum(right) / len(pairs)
    wrong = [p for p, ok in zip(pairs, right, strict=True) if not ok]
    print(f"Verify on master.csv: accuracy {accuracy:.3f} over {len(pairs)} pairs; wrong {wrong}")
    assert accuracy >= FLOOR, (accuracy, wrong)
