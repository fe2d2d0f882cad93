"""People (labels) in the storage layer: counts, listing, forget, rename, gallery.

Real Voyager, real WAL and snapshots in tmp_path. Forget and rename must be durable on
return: they survive a reopen from the WAL alone, from a snapshot, and a SIGKILL at any
moment (a child process doing adds, forgets and renames, killed at seeded moments).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from fsclient.types import ItemSummary, Page, Person
from fsserver.contract import EmbeddingContract
from fsserver.errors import InvalidArgument, NotFound
from fsserver.storage.backend import StoreOptions
from fsserver.storage.local import LocalStore
from fsserver.storage.records import Record, RecordTable, choose_labels
from fsserver.storage.rows import Rows
from fsserver.storage.wal_records import (
    AddRecord,
    DeleteRecord,
    RelabelRecord,
    decode,
    encode,
)

DIM = 8
CONTRACT = EmbeddingContract.build(
    model="", detector="", dim=DIM, space="euclidean", storage="float32"
)
OPTIONS = StoreOptions(target_recall=0.0)
Open = Callable[[], LocalStore]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Open]:
    """Open a LocalStore on one data directory (closing the one before): a reopen."""
    opened: list[LocalStore] = []

    def reopen() -> LocalStore:
        if opened:
            opened[-1].close()
        opened.append(LocalStore(tmp_path / "data", CONTRACT, OPTIONS))
        return opened[-1]

    yield reopen
    if opened:
        opened[-1].close()


def _vector(id: int) -> np.ndarray:
    return np.random.default_rng(id).normal(size=DIM).astype(np.float32)


def _add(
    store: LocalStore, labels: list[str], ids: list[int] | None = None, metadata: str = ""
) -> list[int]:
    wanted: list[int | None] = list(ids) if ids is not None else [None] * len(labels)
    next_id = store.next_id
    rows = [id if id is not None else next_id + i for i, id in enumerate(wanted)]
    vectors = np.stack([_vector(r) for r in rows]) if rows else np.zeros((0, DIM), np.float32)
    metadata_column = [metadata or f"m{r}" for r in rows]
    outcomes = store.add_rows(Rows.of(vectors, ids=wanted, labels=labels, metadata=metadata_column))
    assert outcomes == rows
    return rows


def _labels(store: LocalStore) -> dict[int, str]:
    """Every live item's label, by id (through the listing)."""
    page = store.items(None, 0, 10**9)
    assert page.total == store.count == len(page.entries)
    return {item.id: item.label for item in page.entries}


def _people(labels: dict[int, str]) -> list[Person]:
    counts: dict[str, int] = {}
    for label in labels.values():
        if label:
            counts[label] = counts.get(label, 0) + 1
    return [Person(label, counts[label]) for label in sorted(counts)]


# ---- counting and listing --------------------------------------------------------------


def test_people_count_live_items_through_adds_deletes_and_upserts(open_store: Open) -> None:
    store = open_store()
    assert store.people() == []
    _add(store, ["bob", "ann", "bob", "", "cy", "bob"])  # ids 0..5
    assert store.people() == [Person("ann", 1), Person("bob", 3), Person("cy", 1)]
    store.delete([0, 4])  # one of bob's, and cy's only item
    assert store.people() == [Person("ann", 1), Person("bob", 2)]
    _add(store, ["ann", "dee"], ids=[2, 3])  # upserts: bob → ann, unlabelled → dee
    _add(store, ["bob"], ids=[4])  # a deleted id comes back with another label
    _add(store, [""], ids=[1])  # ann's item loses its label
    expected = [Person("ann", 1), Person("bob", 2), Person("dee", 1)]
    assert store.people() == expected
    far = 2**63 + 5  # far beyond the dense label array: the sparse side
    _add(store, ["dee"], ids=[far])
    assert store.people()[-1] == Person("dee", 2)
    assert store.get(far).label == "dee"
    store.save()
    store = open_store()
    assert store.people() == [Person("ann", 1), Person("bob", 2), Person("dee", 2)]


def test_items_pages_in_id_order_with_and_without_a_label(open_store: Open) -> None:
    store = open_store()
    labels = [f"p{i % 3}" if i % 4 else "" for i in range(40)]
    _add(store, labels, metadata="meta")
    _add(store, ["p1", "p2"], ids=[10**15, 10**15 + 1])  # sparse ids list after dense ones
    store.delete([5, 6])
    live = {i: label for i, label in enumerate(labels) if i not in (5, 6)}
    live |= {10**15: "p1", 10**15 + 1: "p2"}
    ids = sorted(live)

    every = store.items(None, 0, 1000)
    assert [e.id for e in every.entries] == ids and every.total == len(ids)
    assert every.entries[0] == ItemSummary(0, "", "meta")
    pages = [store.items(None, offset, 7) for offset in range(0, len(ids) + 7, 7)]
    assert [e.id for page in pages for e in page.entries] == ids
    assert {page.total for page in pages} == {len(ids)}
    assert store.items(None, len(ids) + 5, 10).entries == []

    p1 = [i for i in ids if live[i] == "p1"]
    page = store.items("p1", 2, 3)
    assert page.total == len(p1) and [e.id for e in page.entries] == p1[2:5]
    assert all(e.label == "p1" and e.metadata == "meta" for e in page.entries)
    assert store.items("p1", 0, 1000).entries[-1].id == 10**15
    unlabelled = store.items("", 0, 1000)
    assert [e.id for e in unlabelled.entries] == [i for i in ids if not live[i]]
    assert store.items("nobody", 0, 10).total == 0
    assert store.items("p2", 0, 0) == Page([], len([i for i in ids if live[i] == "p2"]))
    with pytest.raises(InvalidArgument):
        store.items(None, -1, 10)


# ---- forget ------------------------------------------------------------------------------


def test_forget_deletes_a_persons_items_durably_from_the_wal(open_store: Open) -> None:
    store = open_store()
    _add(store, ["ann", "bob", "ann", "cy", "ann"])
    assert store.forget("ann") == 3
    assert store.people() == [Person("bob", 1), Person("cy", 1)]
    assert store.count == 2 and store.stats().deleted == 3
    for id in (0, 2, 4):
        with pytest.raises(NotFound):
            store.get(id)
    with pytest.raises(NotFound, match="'ann'"):
        store.forget("ann")
    with pytest.raises(NotFound, match="'zed'"):
        store.forget("zed")
    with pytest.raises(InvalidArgument):
        store.forget("")
    hits = store.search(np.stack([_vector(i) for i in range(5)]), k=2, exact=True)
    assert set(hits.ids.ravel().tolist()) <= {1, 3}

    store = open_store()  # no snapshot: the WAL alone
    assert store.snapshot == "" and store.recovery.replayed == 2
    assert _labels(store) == {1: "bob", 3: "cy"}
    _add(store, ["ann"])  # the label can come back, on a fresh id
    assert store.people()[0] == Person("ann", 1)


def test_forget_after_a_snapshot_replays_on_top_of_it(open_store: Open) -> None:
    store = open_store()
    _add(store, ["ann", "bob"] * 10)
    store.save()
    assert store.forget("bob") == 10
    store = open_store()  # the snapshot, then the forget from the WAL
    assert store.snapshot and store.recovery.replayed == 1
    assert store.people() == [Person("ann", 10)]
    store.save()  # the forget is in the snapshot; half is deleted: a compaction starts
    deadline = time.monotonic() + 30
    while store.stats().deleted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.stats().deleted == 0  # compacted in the background
    store.save()  # and the compacted graph is in the next snapshot
    store = open_store()
    assert store.recovery.replayed == 0 and store.stats().deleted == 0
    assert _labels(store) == {i: "ann" for i in range(0, 20, 2)}


# ---- rename ------------------------------------------------------------------------------


def test_rename_to_a_new_label_and_into_an_existing_one_survives_reopen(
    open_store: Open,
) -> None:
    store = open_store()
    _add(store, ["ann", "bob", "ann", "cy", "", "bob"])
    _add(store, ["ann"], ids=[2**62])  # sparse
    assert store.rename("ann", "anna") == 3  # a new label: the interned name is renamed
    assert store.get(0).label == "anna" and store.get(2**62).label == "anna"
    assert store.rename("bob", "cy") == 2  # merged into an existing person
    assert store.people() == [Person("anna", 3), Person("cy", 3)]
    assert store.rename("cy", "cy") == 3  # a no-op, still counted
    with pytest.raises(NotFound, match="'ann'"):
        store.rename("ann", "x")
    with pytest.raises(InvalidArgument):
        store.rename("cy", "")
    with pytest.raises(InvalidArgument):
        store.rename("", "x")
    _add(store, ["ann", "bob"])  # the old names are free again: new people
    expected = _labels(store)
    assert expected == {
        0: "anna", 1: "cy", 2: "anna", 3: "cy", 4: "", 5: "cy", 2**62: "anna",
        2**62 + 1: "ann", 2**62 + 2: "bob",
    }  # fmt: skip
    # Hits carry the new labels.
    hits = store.search(_vector(5)[None, :], k=1, exact=True)
    assert hits.ids[0, 0] == 5 and hits.labels == [["cy"]]

    store = open_store()  # from the WAL alone
    assert store.recovery.replayed == 5 and _labels(store) == expected
    store.rename("anna", "ann")  # merge again, then a snapshot holds it
    expected = {id: "ann" if label == "anna" else label for id, label in expected.items()}
    store.save()
    store = open_store()
    assert store.recovery.replayed == 0 and _labels(store) == expected
    store.rename("ann", "zoe")  # after the snapshot: the snapshot, then the WAL
    store = open_store()
    expected = {id: "zoe" if label == "ann" else label for id, label in expected.items()}
    assert store.recovery.replayed == 1 and _labels(store) == expected
    assert store.people() == _people(expected)


def test_renames_and_forgets_during_a_compaction_are_carried_over(open_store: Open) -> None:
    store = open_store()
    _add(store, [f"p{i % 5}" for i in range(300)])
    store.delete(list(range(0, 300, 3)))  # enough deleted for the compaction to rebuild
    from fsserver.storage import index as index_module

    rebuild = index_module.empty_like  # the compaction calls it once the copy is taken
    during = threading.Event()

    def meanwhile(old: object, capacity: int) -> object:
        # Another thread's changes while the new graph is being built.
        def changes() -> None:
            assert store.rename("p1", "one") == 40
            assert store.rename("p2", "p3") == 40
            assert store.forget("p4") == 40
            _add(store, ["p1", "one"])
            during.set()

        worker = threading.Thread(target=changes)
        worker.start()
        worker.join(timeout=30)
        return rebuild(old, capacity)  # type: ignore[arg-type]

    index_module.empty_like = meanwhile  # type: ignore[assignment]
    try:
        assert store.compact().removed == 100
    finally:
        index_module.empty_like = rebuild
    assert during.is_set()
    expected = {
        i: {"p1": "one", "p2": "p3"}.get(f"p{i % 5}", f"p{i % 5}")
        for i in range(300)
        if i % 3 and i % 5 != 4
    }
    expected |= {300: "p1", 301: "one"}
    assert _labels(store) == expected
    # The forget came after the cut but before its items were read: they never entered the
    # new graph, and its queued delete found nothing there to mark.
    assert store.stats().deleted == 0
    for id in (4, 9, 301):  # forgotten ones are gone from searches too
        hits = store.search(_vector(id)[None, :], k=1, exact=True)
        assert (int(hits.ids[0, 0]) == id) == (id in expected)
    assert store.people() == _people(expected)
    store = open_store()  # the WAL replays the same renames onto the same items
    assert _labels(store) == expected
    store.save()
    store = open_store()
    assert _labels(store) == expected


# ---- gallery -------------------------------------------------------------------------------


def test_gallery_returns_every_item_of_a_seeded_sample_of_people(open_store: Open) -> None:
    store = open_store()
    labels = [f"person{i % 12}" for i in range(60)] + ["", ""]
    _add(store, labels)
    store.delete([0])

    names, vectors = store.gallery(100)  # all people when fewer
    assert vectors.dtype == np.float32 and vectors.shape == (59, DIM)
    assert sorted(set(names)) == sorted({f"person{i}" for i in range(12)})
    ids = [i for i in range(60) if i]
    assert names == [labels[i] for i in ids]  # ascending id order
    np.testing.assert_array_equal(vectors, np.stack([store.get(i).vector for i in ids]))

    names, vectors = store.gallery(4, seed=7)
    chosen = sorted(set(names))
    assert len(chosen) == 4 and chosen == choose_labels((p.label for p in store.people()), 4, 7)
    rows = [i for i in ids if labels[i] in chosen]
    assert names == [labels[i] for i in rows]  # every item of each chosen person
    np.testing.assert_array_equal(vectors, np.stack([_vector(i) for i in rows]))
    assert store.gallery(4, seed=7)[0] == names  # the same seed, the same people
    draws = {tuple(sorted(set(store.gallery(4, seed=s)[0]))) for s in range(10)}
    assert len(draws) > 1  # other seeds, other people
    empty_names, empty = store.gallery(0)
    assert empty_names == [] and empty.shape == (0, DIM)


# ---- the record table and the WAL record ------------------------------------------------


def test_relabel_and_counts_are_vectorised_over_a_million_items() -> None:
    table = RecordTable()
    n = 1_000_000
    table.set_labels(list(range(n)), [f"p{i % 50_000}" for i in range(n)])
    table.set(10**15, Record("p7"))
    started = time.perf_counter()
    counts = table.label_counts()
    assert len(counts) == 50_000 and counts["p7"] == 21 and counts["p8"] == 20
    assert table.relabel("p7", "p8") == 21  # a merge: a numpy pass over the codes
    assert table.relabel("p8", "eight") == 41  # a new name: the interned name changes
    ids = table.ids_labelled(["eight"])
    assert ids.tolist() == sorted([*range(7, n, 50_000), *range(8, n, 50_000), 10**15])
    assert table.count_of("p7") == 0 and table.count_of("eight") == 41
    assert time.perf_counter() - started < 5  # per-item Python would take far longer
    assert table.relabel("eight", "") == 41  # as "" they are unlabelled
    assert "eight" not in table.label_counts() and table.get(10**15) == Record()
    _, codes, names = table.label_columns()
    assert len(codes) == n - 40 and "eight" not in names


def test_relabel_records_round_trip_and_old_records_read_as_before() -> None:
    record = RelabelRecord(lsn=0, old="Zoë ☃", new="")
    assert decode(encode(9, record)) == RelabelRecord(9, "Zoë ☃", "")
    body = encode(3, RelabelRecord(0, "a", "bc"))
    assert body == b"\x03" + bytes(7) + b"\x03" + b"\x01\x00\x00\x00\x02\x00\x00\x00abc"
    with pytest.raises(ValueError, match="lengths"):
        decode(body[:-1])
    # The older kinds are encoded exactly as before.
    delete = encode(1, DeleteRecord(0, np.array([5], np.uint64)))
    assert delete == b"\x01" + bytes(7) + b"\x02" + b"\x01\x00\x00\x00" + b"\x05" + bytes(7)
    add = AddRecord(0, Rows(np.ones((1, 2), np.float32), [1], ["l"], [""], [b""]))
    again = decode(encode(2, add))
    assert isinstance(again, AddRecord) and again.rows.labels == ["l"] and again.rows.ids == [1]


# ---- a SIGKILL at any moment ------------------------------------------------------------

CHILD = """
import json, sys
import numpy as np
from pathlib import Path
from fsserver.contract import EmbeddingContract
from fsserver.storage.backend import StoreOptions
from fsserver.storage.local import LocalStore
from fsserver.storage.rows import Rows

data, seed = Path(sys.argv[1]), int(sys.argv[2])
contract = EmbeddingContract.build(model="", detector="", dim=8, space="euclidean",
                                   storage="float32")
store = LocalStore(data, contract, StoreOptions(target_recall=0.0, compact_deleted_share=0.2))
rng = np.random.default_rng(seed)
say = lambda line: (sys.stdout.write(json.dumps(line) + "\\n"), sys.stdout.flush())
say({"ready": True})
step = 0
while True:
    step += 1
    people = [p.label for p in store.people()]
    choice = rng.random()
    if choice < 0.1 and people:
        label = people[rng.integers(len(people))]
        say({"begin": "forget", "label": label})
        n = store.forget(label)
    elif choice < 0.25 and people:
        old = people[rng.integers(len(people))]
        new = f"q{seed}-{step}" if rng.random() < 0.5 else f"p{rng.integers(20)}"
        say({"begin": "rename", "old": old, "new": new})
        n = store.rename(old, new)
    elif choice < 0.27:
        say({"begin": "save"})
        store.save()
        n = 0
    else:
        first = store.next_id
        labels = [f"p{rng.integers(20)}" if rng.random() < 0.9 else "" for _ in range(10)]
        say({"begin": "add", "first": first, "labels": labels})
        vectors = np.stack([np.random.default_rng(first + i).normal(size=8) for i in
                            range(10)]).astype(np.float32)
        store.add_rows(Rows.of(vectors, labels=labels))
        n = 10
    say({"done": n})
"""


def _apply(model: dict[int, str], op: dict[str, object]) -> None:
    """What an acknowledged operation does to the ledger of live labels by id."""
    if op["begin"] == "add":
        first, labels = op["first"], op["labels"]
        assert isinstance(first, int) and isinstance(labels, list)
        model.update({first + i: label for i, label in enumerate(labels)})
    elif op["begin"] == "forget":
        for id in [id for id, label in model.items() if label == op["label"]]:
            del model[id]
    elif op["begin"] == "rename":
        for id, label in model.items():
            if label == op["old"]:
                model[id] = str(op["new"])


def _read_lines(stream: IO[str], lines: list[dict[str, object]]) -> None:
    # A line is one write of a few hundred bytes into a pipe: whole, even at a SIGKILL.
    lines.extend(json.loads(line) for line in stream)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_any_moment_keeps_every_acknowledged_forget_and_rename(
    tmp_path: Path, seed: int
) -> None:
    data = tmp_path / "data"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(seed)
    model: dict[int, str] = {}  # what the acknowledged operations left: label by id
    seen = {"forget": 0, "rename": 0}
    for trial in range(3):
        child = subprocess.Popen(
            [sys.executable, str(script), str(data), str(seed * 100 + trial)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        lines: list[dict[str, object]] = []
        reader = threading.Thread(target=_read_lines, args=(child.stdout, lines))
        reader.start()
        deadline = time.monotonic() + 60
        while not lines and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lines[:1] == [{"ready": True}], "the child did not start"
        time.sleep(rng.uniform(0.3, 1.2))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=30)
        in_flight = None
        for line in lines[1:]:
            if "begin" in line:
                in_flight = line
            else:  # done: acknowledged
                assert in_flight is not None
                _apply(model, in_flight)
                seen[str(in_flight["begin"])] = seen.get(str(in_flight["begin"]), 0) + 1
                in_flight = None
        store = LocalStore(data, CONTRACT, OPTIONS)
        try:
            found = _labels(store)
            # The operation cut off by the kill was never acknowledged: done or not.
            maybe = dict(model)
            if in_flight is not None:
                _apply(maybe, in_flight)
            assert found in (model, maybe), f"trial {trial}: {in_flight}"
            model = found
            assert store.people() == _people(model)
            for id in random.Random(trial).sample(sorted(model), min(20, len(model))):
                np.testing.assert_array_equal(store.get(id).vector, _vector(id))
        finally:
            store.close()
    assert seen["forget"] and seen["rename"], seen  # the kills did land among them
