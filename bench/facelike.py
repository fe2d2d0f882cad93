"""Benchmark data: the real photos to enroll, face-like synthetic people, uniform vectors.

One generator for `make demo` and `make bench`, so both pad their index with the same
kind of distractors.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

# Measured on the Dlib embeddings of ../shared/faces: one person's photos spread around
# their mean with 0.47 of the spread of all faces, the rest is between people. Real face
# embeddings vary along few directions (20 principal axes hold 92% of the Dlib variance
# here), and that low intrinsic dimension is what makes HNSW work well on them: drawing
# each coordinate independently instead gives near-isotropic 128-d data, far harder than
# faces (recall@10 0.71 vs 0.92 at ef 10, 100k vectors). So synthetic people and their
# photos are drawn along the real faces' principal axes, at these shares of each axis'
# spread, plus a faint isotropic floor so no direction is exactly empty.
WITHIN_PERSON, BETWEEN_PEOPLE, PHOTOS_PER_PERSON = 0.47, 0.88, 10
# Rows drawn per block: bounds the float64 scratch at any N (1M rows = 100 blocks).
_BLOCK = 10_000


@dataclass(frozen=True)
class FaceShape:
    """Where real face embeddings vary: their mean, principal axes and spread on each."""

    mean: npt.NDArray[np.float64]
    axes: npt.NDArray[np.float64]  # rank x dim, orthonormal rows
    spread: npt.NDArray[np.float64]  # standard deviation along each axis
    floor: float  # standard deviation in every direction, beside the axes

    @classmethod
    def of(cls, template: npt.ArrayLike) -> FaceShape:
        matrix = np.asarray(template, dtype=np.float64)
        mean = matrix.mean(axis=0)
        _, singular, axes = np.linalg.svd(matrix - mean, full_matrices=False)
        spread = singular / np.sqrt(max(len(matrix) - 1, 1))
        keep = spread > spread.max() * 1e-6
        return cls(mean, axes[keep], spread[keep], float(spread[keep].min()) / 4)

    def draw(self, rng: np.random.Generator, count: int, scale: float) -> npt.NDArray[np.float64]:
        """`count` offsets from a centre, at `scale` times the faces' spread."""
        along = rng.normal(size=(count, len(self.spread))) * (scale * self.spread)
        beside = rng.normal(0.0, scale * self.floor, size=(count, len(self.mean)))
        drawn: npt.NDArray[np.float64] = along @ self.axes + beside
        return drawn


def pick_photos(faces: Path) -> tuple[list[Path], Path, dict[str, str]]:
    """The photos to enroll, one to query (a photo of a person with others enrolled, held
    out), and each photo's identity from identities.csv (absent: none known)."""
    photos = sorted(p for p in faces.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    people: dict[str, str] = {}
    if (faces / "identities.csv").is_file():
        with (faces / "identities.csv").open() as f:
            people = {row["file"]: row["identity"] for row in csv.DictReader(f)}
        photos = [p for p in photos if p.name in people]
    if len(photos) < 2:
        raise ValueError(f"{faces} needs at least two face photos")
    # Hold out one photo of the person with the most photos, so the others can find them.
    counts: dict[str, int] = {}
    for p in photos:
        counts[people.get(p.name, p.name)] = counts.get(people.get(p.name, p.name), 0) + 1
    person = max(counts, key=lambda name: counts[name])
    probe = [p for p in photos if people.get(p.name, p.name) == person][-1]
    return [p for p in photos if p != probe], probe, people


def facelike_blocks(
    template: npt.ArrayLike, n: int, seed: int = 0
) -> Iterator[tuple[FloatArray, npt.NDArray[np.float64]]]:
    """Face-like rows in blocks, lazily: (rows, the centres of the people drawn for them).

    Each block draws its own people (PHOTOS_PER_PERSON rows each, the last one possibly
    fewer or none), so row r of a block belongs to that block's person r // 10.
    """
    rng = np.random.default_rng(seed)
    shape = FaceShape.of(template)
    for start in range(0, n, _BLOCK):
        size = min(_BLOCK, n - start)
        people = shape.mean + shape.draw(rng, size // PHOTOS_PER_PERSON + 1, BETWEEN_PEOPLE)
        person = np.repeat(people, PHOTOS_PER_PERSON, axis=0)[:size]
        block = person + shape.draw(rng, size, WITHIN_PERSON)
        yield block.astype(np.float32), people


@dataclass(frozen=True)
class Facelike:
    """N face-like vectors and the synthetic people they are photos of."""

    vectors: FloatArray  # n x dim
    people: IntArray  # the person (row of `centers`) of each vector
    centers: npt.NDArray[np.float64]  # one row per synthetic person
    shape: FaceShape

    def held_out(self, count: int, seed: int) -> tuple[FloatArray, IntArray]:
        """`count` new photos (not stored) of stored people picked at random, and their
        people: queries whose true neighbours are mostly their own person's photos."""
        rng = np.random.default_rng(seed)
        people = self.people[rng.integers(0, len(self.people), size=count)]
        rows = self.centers[people] + self.shape.draw(rng, count, WITHIN_PERSON)
        return rows.astype(np.float32), people


def facelike(template: npt.ArrayLike, n: int, seed: int = 0) -> Facelike:
    """Face-like distractors clustered like real identities, at the real faces' spread."""
    shape = FaceShape.of(template)
    dim = len(shape.mean)
    vectors = np.empty((n, dim), dtype=np.float32)
    people = np.empty(n, dtype=np.int64)
    centers: list[npt.NDArray[np.float64]] = []
    drawn, row = 0, 0
    for block, block_people in facelike_blocks(template, n, seed):
        vectors[row : row + len(block)] = block
        people[row : row + len(block)] = drawn + np.arange(len(block)) // PHOTOS_PER_PERSON
        centers.append(block_people)
        drawn, row = drawn + len(block_people), row + len(block)
    all_centers = np.concatenate(centers) if centers else np.zeros((0, dim))
    return Facelike(vectors, people, all_centers, shape)


def facelike_vectors(template: npt.ArrayLike, n: int, seed: int = 0) -> FloatArray:
    """The n x dim float32 matrix of `facelike(template, n, seed)`."""
    return facelike(template, n, seed).vectors


def uniform_vectors(n: int, dim: int, seed: int) -> FloatArray:
    """n x dim float32 uniform in (-5, 5): the unclustered, hardest case for HNSW."""
    return np.random.default_rng(seed).uniform(-5.0, 5.0, size=(n, dim)).astype(np.float32)
