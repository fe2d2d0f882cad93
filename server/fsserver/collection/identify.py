"""From neighbours to people: the person-level answer of Identify and Verify.

The index answers "which stored items are nearest"; people ask "who is this". A person's
distance is that of their nearest item; the nearest person is accepted or not by the
calibrated rule (decisions.py), which also needs how much farther the next person is.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from fsclient.types import Candidate, Face, FloatArray, Identification
from fsserver.collection.decisions import Distances, Rule

# Items searched per face: enough to see past one person's photos to the next person.
NEIGHBOURS = 64


def identification(
    rule: Rule,
    ids: npt.NDArray[np.uint64],
    labels: list[str],
    distances: FloatArray,
    *,
    face: Face | None,
    candidates: int,
    threshold: float | None,
    exhausted: bool,
) -> Identification:
    """Who one query is, from its neighbours (nearest first). `exhausted`: the neighbours
    are every stored item, so a person not among them does not exist (else they are at
    least as far as the farthest neighbour)."""
    limit = rule.public.threshold if threshold is None else threshold
    people: dict[str, list[float | int]] = {}  # label -> [distance, id, near]
    for id, label, distance in zip(ids.tolist(), labels, distances.tolist(), strict=True):
        if not label:
            continue  # unlabelled items are nobody
        entry = people.get(label)
        if entry is None:
            people[label] = [distance, id, 0]
            entry = people[label]
        if distance <= limit:
            entry[2] = int(entry[2]) + 1
    ranked = sorted(people.items(), key=lambda p: p[1][0])
    beyond = math.inf if exhausted or not len(distances) else float(distances[-1])
    if not ranked:
        return Identification(face, False, "", beyond, 0.0, math.inf, [])
    nearest = float(ranked[0][1][0])
    second = float(ranked[1][1][0]) if len(ranked) > 1 else beyond
    margin = second - nearest
    known, similarity = rule.decide(nearest, margin, threshold)
    chosen = [
        Candidate(
            person=label,
            distance=float(distance),
            similarity=similarity if rank == 0 else rule.similarity(float(distance) - limit),
            near=int(near),
            id=int(id),
        )
        for rank, (label, (distance, id, near)) in enumerate(ranked[:candidates])
    ]
    person = ranked[0][0] if known else ""
    return Identification(face, known, person, nearest, similarity, margin, chosen)


def distance_function(space: str) -> Distances:
    """Row-against-row distances on the user's scale of `space` (as Neighbor.distance)."""

    def euclidean(a: FloatArray, b: FloatArray) -> FloatArray:
        return np.asarray(np.linalg.norm(a - b, axis=-1), dtype=np.float32)

    def cosine(a: FloatArray, b: FloatArray) -> FloatArray:
        dot = np.sum(a * b, axis=-1)
        norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        return np.asarray(1.0 - dot / np.maximum(norms, 1e-30), dtype=np.float32)

    return cosine if space == "cosine" else euclidean
