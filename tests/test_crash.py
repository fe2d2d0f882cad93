"""SIGKILL the real server at random moments, also mid-Save; nothing acknowledged is lost.

Each trial starts `python -m fsserver` on the same data directory, streams raw vectors with
labels and metadata from this process, saves now and then from a second thread, deletes a
few items, and kills the server with SIGKILL: at a random moment, or (every other trial) as
soon as a snapshot is being written. After the restart every item the client saw
acknowledged must be there, exactly, and every acknowledged delete must have held. Items
sent but not acknowledged may be there or not, but whole batches only.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fsclient import AddItem, FaceSearchClient, FaceSearchError
from support import launch_server

DIM = 16
BATCH = 20
TRIALS = 12
SEED = 20261123


@dataclass
class Ledger:
    """What the client knows: acknowledged items and deletes, and what is in doubt."""

    acked: dict[int, tuple[str, str, np.ndarray]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    doubtful_batches: list[dict[int, tuple[str, str, np.ndarray]]] = field(default_factory=list)
    doubtful_deletes: set[int] = field(default_factory=set)
    next_id: int = 0


def _stream(address: str, ledger: Ledger, rng: random.Random, stop: threading.Event) -> None:
    """Add batches until the server dies; record each batch as acked or doubtful."""
    handed_out: list[tuple[int, str, str, np.ndarray]] = []
    numbers = np.random.default_rng(rng.randrange(2**32))

    acked_count = 0

    def items() -> Iterator[AddItem]:
        while not stop.is_set():
            # At most three batches in flight, as a client that waits for acks would have.
            while len(handed_out) - acked_count >= 3 * BATCH and not stop.is_set():
                time.sleep(0.001)
            id = ledger.next_id
            ledger.next_id += 1
            vector = numbers.normal(size=DIM).astype(np.float32)
            label, metadata = f"item-{id}", f'{{"n": {id}, "text": "ünïcode {id}"}}'
            handed_out.append((id, label, metadata, vector))
            yield AddItem(vector=vector, label=label, id=id, metadata=metadata)

    try:
        with FaceSearchClient(address) as client:
            for results in client.add(items(), batch_size=BATCH):
                batch = handed_out[acked_count : acked_count + len(results)]
                assert all(r.id == id for r, (id, *_) in zip(results, batch, strict=True))
                for id, label, metadata, vector in batch:
                    ledger.acked[id] = (label, metadata, vector)
                acked_count += len(results)
                if rng.random() < 0.1:  # delete a few acknowledged items
                    victims = rng.sample(sorted(set(ledger.acked) - ledger.deleted), 3)
                    ledger.doubtful_deletes.update(victims)
                    client.delete(victims)
                    ledger.deleted.update(victims)
                    ledger.doubtful_deletes.difference_update(victims)
    except FaceSearchError:
        pass  # the server was killed
    unacked = handed_out[acked_count:]
    for start in range(0, len(unacked), BATCH):
        chunk = unacked[start : start + BATCH]
        ledger.doubtful_batches.append({id: (lab, meta, v) for id, lab, meta, v in chunk})


def _save_now_and_then(address: str, saving: threading.Event, stop: threading.Event) -> None:
    try:
        with FaceSearchClient(address) as client:
            while not stop.is_set():
                saving.set()
                client.save()
                time.sleep(0.02)
    except FaceSearchError:
        pass


def _kill_mid_save(process: subprocess.Popen[str], data: Path, deadline: float) -> bool:
    """Poll for a snapshot being written; True if the kill landed while one was."""
    snapshots = data / "snapshots"
    while time.monotonic() < deadline:
        if snapshots.is_dir() and any(p.name.startswith(".tmp-") for p in snapshots.iterdir()):
            process.kill()  # SIGKILL
            return True
    return False


def _check(address: str, ledger: Ledger, recent: set[int], full: bool) -> int:
    """Acknowledged items exact (the recent ones and a sample, or all), deletes held,
    the count right; returns the live count."""
    with FaceSearchClient(address) as client:
        present_doubtful = 0
        for batch in ledger.doubtful_batches:
            found = []
            for id in batch:
                try:
                    client.get(id)
                    found.append(id)
                except FaceSearchError as error:
                    assert error.code.name == "NOT_FOUND"
            assert found in ([], list(batch)), (
                f"a batch came back in part: {found} of {list(batch)}"
            )
            if found:  # stored but unacknowledged: now it is known, and counted
                ledger.acked.update(batch)
                present_doubtful += len(batch)
        ledger.doubtful_batches.clear()
        for id in sorted(ledger.doubtful_deletes):
            try:
                client.get(id)
            except FaceSearchError:
                ledger.deleted.add(id)
        ledger.doubtful_deletes.clear()
        live = {id: item for id, item in ledger.acked.items() if id not in ledger.deleted}
        assert client.stats().count == len(live)
        sample = random.Random(len(live)).sample(sorted(live), min(300, len(live)))
        checked = live if full else {id: live[id] for id in (recent & set(live)) | set(sample)}
        for id, (label, metadata, vector) in checked.items():
            got = client.get(id)
            assert (got.label, got.metadata) == (label, metadata)
            np.testing.assert_array_equal(got.vector, vector)
        for id in ledger.deleted:
            with pytest.raises(FaceSearchError) as error:
                client.get(id)
            assert error.value.code.name == "NOT_FOUND"
        for id in sample[:50]:
            nearest = client.query(vector=live[id][2], k=1, ef=500).results[0].neighbors[0]
            assert nearest.id == id and nearest.distance == pytest.approx(0.0, abs=1e-5)
    return len(live)


@pytest.mark.timeout(300)
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    args = ("--dim", str(DIM), "--model", "", "--data-dir", str(data), "--log-level", "WARNING")
    ledger = Ledger()
    recent: set[int] = set()
    mid_save_kills = 0
    for trial in range(TRIALS):
        process, address = launch_server(*args)
        try:
            _check(address, ledger, recent, full=False)
            before = set(ledger.acked)
            stop, saving = threading.Event(), threading.Event()
            threads = [
                threading.Thread(target=_stream, args=(address, ledger, rng, stop)),
                threading.Thread(target=_save_now_and_then, args=(address, saving, stop)),
            ]
            for thread in threads:
                thread.start()
            run_for = rng.uniform(0.2, 1.0)
            if trial % 2:
                time.sleep(run_for / 2)
                mid_save_kills += _kill_mid_save(process, data, time.monotonic() + 5)
            else:
                time.sleep(run_for)
            process.kill()
            process.wait(timeout=30)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            assert not any(t.is_alive() for t in threads)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
        recent = set(ledger.acked) - before
    process, address = launch_server(*args)
    try:
        final = _check(address, ledger, recent, full=True)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert final > TRIALS * BATCH  # the trials did add data
    assert mid_save_kills >= TRIALS // 4, f"only {mid_save_kills} kills landed mid-save"
