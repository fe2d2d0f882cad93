"""SIGKILL the real server at random moments, also mid-Save; nothing acknowledged is lost.

Each trial starts `python -m fsserver` on the same data directory, streams raw vectors with
labels and metadata from this process, saves now and then from a second thread, deletes a
few items, forgets people and renames them (to a fresh label, or merging into an existing
person), and kills the server with SIGKILL: at a random moment, as soon as a snapshot is
being written, or just after a forget or rename was sent. After the restart every item the
client saw acknowledged must be there, exactly, with the label the acknowledged forgets and
renames left it, and every acknowledged delete and forget must have held. Items sent but not
acknowledged may be there or not, but whole batches only; the one delete, forget or rename
in flight at the kill may have happened or not, but wholly. A last restart after a Save
must find the same.
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fsclient import AddItem, FaceSearchClient, FaceSearchError
from fsclient.types import Person
from support import launch_server

DIM = 16
BATCH = 20
TRIALS = 12
SEED = 20261123
# Items are labelled by the group of GROUP consecutive ids they fall in: `g7-2`, ten items
# in two batches. Once every id of a group is acknowledged the stream never sends its
# labels again, so forgets and renames touch only such settled labels (and renamed ones),
# never one an unacknowledged add may still carry.
GROUP, LABELS_PER_GROUP = 40, 4
GENERATED = re.compile(r"g(\d+)-\d+")


def _label(id: int) -> str:
    return f"g{id // GROUP}-{id % LABELS_PER_GROUP}"


@dataclass(frozen=True)
class PersonOp:
    """A forget (`new` None) or a rename of `old`, and the live ids it was sent for."""

    old: str
    new: str | None
    ids: frozenset[int]


@dataclass
class Ledger:
    """What the client knows: acknowledged items (with their labels as the acknowledged
    renames left them), deletes and forgets, and what is in doubt."""

    acked: dict[int, tuple[str, str, np.ndarray]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    doubtful_batches: list[dict[int, tuple[str, str, np.ndarray]]] = field(default_factory=list)
    doubtful_deletes: set[int] = field(default_factory=set)
    doubtful_op: PersonOp | None = None
    next_id: int = 0
    fresh_names: int = 0
    done: Counter[str] = field(default_factory=Counter)  # acknowledged person calls, by kind

    def live(self) -> dict[int, tuple[str, str, np.ndarray]]:
        return {id: item for id, item in self.acked.items() if id not in self.deleted}

    def apply(self, op: PersonOp) -> None:
        if op.new is None:
            self.deleted.update(op.ids)
        else:
            for id in op.ids:
                _, metadata, vector = self.acked[id]
                self.acked[id] = (op.new, metadata, vector)


def _person_op(
    client: FaceSearchClient,
    ledger: Ledger,
    rng: random.Random,
    frontier: int,
    calling: threading.Event,
) -> None:
    """Forget or rename one settled person (every id below `frontier` is acknowledged)."""
    by_label: dict[str, set[int]] = {}
    for id, (label, _, _) in ledger.live().items():
        by_label.setdefault(label, set()).add(id)

    def settled(label: str) -> bool:
        match = GENERATED.fullmatch(label)
        return match is None or (int(match[1]) + 1) * GROUP <= frontier

    candidates = sorted(label for label in by_label if settled(label))
    if not candidates:
        return
    old = rng.choice(candidates)
    kind = rng.choice(["forget", "rename", "merge"])
    if kind == "merge" and len(by_label) < 2:
        kind = "rename"
    if kind == "forget":
        new = None
    elif kind == "rename":
        ledger.fresh_names += 1
        new = f"renamed-{ledger.fresh_names}-ünï"
    else:  # into a person with live items, maybe one whose adds are still streaming in
        new = rng.choice(sorted(set(by_label) - {old}))
    op = PersonOp(old, new, frozenset(by_label[old]))
    ledger.doubtful_op = op
    calling.set()
    if new is None:
        assert client.forget(old) == len(op.ids)
    else:
        assert client.rename(old, new) == (len(op.ids), kind == "merge")
    ledger.apply(op)
    ledger.doubtful_op = None
    ledger.done[kind] += 1


def _stream(
    address: str,
    ledger: Ledger,
    rng: random.Random,
    stop: threading.Event,
    calling: threading.Event,
) -> None:
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
            label, metadata = _label(id), f'{{"n": {id}, "text": "ünïcode {id}"}}'
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
                if rng.random() < 0.25:  # forget or rename a person
                    _person_op(client, ledger, rng, batch[-1][0] + 1, calling)
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


def _resolve_doubtful_op(ledger: Ledger, labels: dict[int, str]) -> None:
    """The forget or rename cut off by the kill: wholly done, or not at all."""
    op, ledger.doubtful_op = ledger.doubtful_op, None
    if op is None:
        return
    found = {id: labels.get(id) for id in sorted(op.ids)}
    before, after = dict.fromkeys(op.ids, op.old), dict.fromkeys(op.ids, op.new)
    assert found in (before, after), f"{op} was half applied: {found}"
    if found == after:
        ledger.apply(op)
        ledger.done["in flight, applied"] += 1
    else:
        ledger.done["in flight, not applied"] += 1


def _check(address: str, ledger: Ledger, recent: set[int], full: bool) -> int:
    """Acknowledged items exact (every label and metadata; the vectors of the recent ones and
    a sample, or all), deletes and forgets held, the people and counts right; returns the
    live count."""
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
        listed = client.all_items()
        assert len(listed) == len({s.id for s in listed})
        _resolve_doubtful_op(ledger, {s.id: s.label for s in listed})
        live = ledger.live()
        # Exactly the acknowledged state, label by label and id by id.
        assert {s.id: (s.label, s.metadata) for s in listed} == {
            id: (label, metadata) for id, (label, metadata, _) in live.items()
        }
        people = Counter(label for label, _, _ in live.values())
        assert client.all_people() == [Person(label, n) for label, n in sorted(people.items())]
        stats = client.stats()
        assert (stats.count, stats.people) == (len(live), len(people))
        sample = random.Random(len(live)).sample(sorted(live), min(300, len(live)))
        checked = live if full else {id: live[id] for id in (recent & set(live)) | set(sample)}
        for id, (label, metadata, vector) in checked.items():
            got = client.get(id)
            assert (got.label, got.metadata) == (label, metadata)
            np.testing.assert_array_equal(got.vector, vector)
        for id in ledger.deleted:
            with pytest.raises(FaceSearchError) as gone:
                client.get(id)
            assert gone.value.code.name == "NOT_FOUND"
        for id in sample[:50]:
            nearest = client.query(vector=live[id][2], k=1, ef=500).results[0].neighbors[0]
            assert nearest.id == id and nearest.distance == pytest.approx(0.0, abs=1e-5)
            assert nearest.label == live[id][0]
    return len(live)


@pytest.mark.timeout(300)
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    args = ("--dim", str(DIM), "--model", "", "--data-dir", str(data), "--log-level", "WARNING")
    ledger = Ledger()
    recent: set[int] = set()
    mid_save_kills = mid_op_kills = 0
    for trial in range(TRIALS):
        process, address = launch_server(*args)
        try:
            _check(address, ledger, recent, full=False)
            before = set(ledger.acked)
            stop, saving, calling = threading.Event(), threading.Event(), threading.Event()
            threads = [
                threading.Thread(target=_stream, args=(address, ledger, rng, stop, calling)),
                threading.Thread(target=_save_now_and_then, args=(address, saving, stop)),
            ]
            # Kills aimed at a forget or rename: at once (it is surely in flight), or a few
            # ms on (it may be in the server's hands, or already answered).
            run_for, lag = rng.uniform(0.2, 1.0), rng.uniform(0.0, 0.01) * (trial % 8 == 6)
            for thread in threads:
                thread.start()
            if trial % 2:
                time.sleep(run_for / 2)
                mid_save_kills += _kill_mid_save(process, data, time.monotonic() + 5)
            elif trial % 4 == 2:  # just after a forget or rename was sent
                time.sleep(run_for / 2)
                calling.clear()
                if calling.wait(timeout=5):
                    time.sleep(lag)
            else:
                time.sleep(run_for)
            process.kill()
            process.wait(timeout=30)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            assert not any(t.is_alive() for t in threads)
            mid_op_kills += ledger.doubtful_op is not None
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
        recent = set(ledger.acked) - before
    process, address = launch_server(*args)
    try:
        final = _check(address, ledger, recent, full=True)
        with FaceSearchClient(address) as client:
            client.save()
    finally:
        process.kill()
        process.communicate(timeout=30)
    # After a Save the snapshot alone holds it all, the forgets and renames included.
    process, address = launch_server(*args)
    try:
        with FaceSearchClient(address) as client:
            assert client.stats().wal_replayed == 0
        assert _check(address, ledger, recent, full=False) == final
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert final > TRIALS * BATCH  # the trials did add data
    assert mid_save_kills >= TRIALS // 4, f"only {mid_save_kills} kills landed mid-save"
    # The workload did forget, rename and merge, and a kill did cut one off.
    assert min(ledger.done[k] for k in ("forget", "rename", "merge")) >= 3, ledger.done
    assert mid_op_kills >= 1, f"no kill landed mid forget or rename ({ledger.done})"
