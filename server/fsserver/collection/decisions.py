"""Who is this, or nobody we know? The open-set rule, calibrated on the server's own gallery.

A threshold made for comparing two photos (DeepFace's Dlib 0.6) accepts most strangers
against a gallery of hundreds: the chance that somebody among N people lies within it grows
with N. So the server decides per person: the nearest person P (the distance to P's nearest
item) is accepted when that distance is within a threshold T AND the next person is at
least a margin M farther, the margin catching the stranger who lands between two people.

T and M come from the gallery itself, for a target false-accept rate F (--target-far).
Each sampled person is held out in turn: their items, searched against everybody else,
are strangers' queries; each item searched against the rest (its own person included,
itself left out) is a known person's query, as a new photo of them would be. Among the
(T, M) whose estimated stranger-accept rate and wrong-person-accept rate are both at most
F, the one accepting the most known queries as the right person wins. The rates are
smoothed (each query counts as a small Gaussian around its distance and margin, not a
point), so a few hundred queries give a stable estimate near F instead of the noisy, and
optimistic, tail of the raw sample; that also keeps the choice from fitting the sample.

The same queries give Verify its two thresholds: one photo against one photo, and one
photo against one person's nearest item (both at rate F among different people). With
too few labelled people to hold any out meaningfully, the model's pair threshold stands in,
and the rule says so.

Distances map to a similarity in [0, 1]: a logistic curve through 0.5 at the boundary,
scaled so the median known query reads 0.9.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from fsclient.types import DecisionRule, FloatArray

log = logging.getLogger(__name__)

MIN_PEOPLE = 10  # below this a held-out person faces too few others to say much
MIN_REPEATED = 3  # people with two or more items: known queries need someone to match
MAX_PEOPLE = 1500  # people sampled per measurement (their every item is queried)
MAX_QUERIES = 4000
EXTRA_NEIGHBOURS = 24  # searched beyond the query's own person's items
# A person with more items than this (a bulk label, say) is compared with this many of them;
# their strangers' view then sees past at most this many of their items.
MAX_OWN = 1000
GRID = 160  # thresholds tried per margin
MARGINS = 32
MEDIAN_SIMILARITY = 0.9  # what the median known query reads as
QUIET_SECONDS = 1.0  # writes must pause this long before a measurement
MAX_DEFER_SECONDS = 300.0

# (query rows, k) -> (labels rows x k, distances rows x k), nearest first, user's scale.
Search = Callable[[FloatArray, int], tuple[list[list[str]], FloatArray]]
# Row against row, broadcasting: (1 x dim, m x dim) -> m distances, the user's scale.
Distances = Callable[[FloatArray, FloatArray], FloatArray]
Float64s = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Rule:
    """A decision rule and how it maps distances to similarity."""

    public: DecisionRule
    scale: float  # distance units per logit of similarity

    @property
    def threshold(self) -> float | None:
        return self.public.threshold if self.public.source != "none" else None

    def similarity(self, excess: float) -> float:
        """Similarity of a query `excess` beyond the boundary (negative: inside it)."""
        if math.isinf(excess):
            return 0.0 if excess > 0 else 1.0
        return 1.0 / (1.0 + math.exp(max(-60.0, min(60.0, excess / self.scale))))

    def decide(
        self, distance: float, margin: float, threshold: float | None = None
    ) -> tuple[bool, float]:
        """(accepted, similarity) for the nearest person at `distance`, the next `margin`
        farther; `threshold` overrides the rule's own."""
        limit = self.public.threshold if threshold is None else threshold
        if self.public.source == "none" and threshold is None:
            return False, 0.0
        excess = max(distance - limit, self.public.margin - margin)
        return excess <= 0, self.similarity(excess)


def fallback(pair_threshold: float | None, reason: str, target_far: float) -> Rule:
    """The model's pair threshold (or nothing) while the gallery is too small to calibrate."""
    if pair_threshold is None:
        return Rule(DecisionRule("none", reason, target_far=target_far), scale=1.0)
    public = DecisionRule(
        "pair-threshold",
        reason,
        threshold=pair_threshold,
        pair_threshold=pair_threshold,
        person_threshold=pair_threshold,
        target_far=target_far,
    )
    return Rule(public, scale=pair_threshold / 6)


@dataclass(frozen=True)
class Queries:
    """The held-out measurements: per query, nearest person and margin to the next."""

    stranger_distance: FloatArray  # the query's person held out
    stranger_margin: FloatArray
    known_distance: FloatArray  # the query's own person enrolled (itself left out)
    known_margin: FloatArray
    known_right: npt.NDArray[np.bool_]  # the nearest person is the query's own
    pair_impostor: FloatArray  # photo vs photo of different people
    person_impostor: FloatArray  # photo vs another person's nearest item


def held_out(
    labels: list[str],
    vectors: FloatArray,
    search: Search,
    distances: Distances,
    seed: int = 0,
) -> Queries:
    """Search sampled items as strangers' and as known people's queries."""
    rng = np.random.default_rng(seed)
    names, codes = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    by_code = np.argsort(codes, kind="stable")
    members = np.split(by_code, np.flatnonzero(np.diff(codes[by_code])) + 1)
    order = rng.permutation(len(labels))[:MAX_QUERIES]
    largest = max(len(members[c]) for c in set(codes[order].tolist()))
    found_labels, found = search(vectors[order], min(largest, MAX_OWN) + EXTRA_NEIGHBOURS)
    s_d, s_m, k_d, k_m, right, pair_imp, person_imp = [], [], [], [], [], [], []
    for row, item in enumerate(order.tolist()):
        query = vectors[item][None, :]
        own = codes[item]
        (_, d1), (_, d2) = _nearest_people(found_labels[row], found[row], skip=names[own])
        s_d.append(d1)
        s_m.append(d2 - d1)
        mates = members[own][members[own] != item][:MAX_OWN]
        if len(mates):
            d_own = float(distances(query, vectors[mates]).min())
            is_right = d_own <= d1
            k_d.append(d_own if is_right else d1)
            k_m.append(d1 - d_own if is_right else min(d_own, d2) - d1)
            right.append(is_right)
        # Verify's impostors: a random other person's item, and their nearest item.
        other = int(rng.integers(len(names) - 1))
        other += other >= own
        theirs = members[other]
        pair_imp.append(
            float(distances(query, vectors[theirs[rng.integers(len(theirs))]][None, :])[0])
        )
        person_imp.append(float(distances(query, vectors[theirs]).min()))
    f = np.float32
    return Queries(
        np.asarray(s_d, f),
        np.asarray(s_m, f),
        np.asarray(k_d, f),
        np.asarray(k_m, f),
        np.asarray(right, bool),
        np.asarray(pair_imp, f),
        np.asarray(person_imp, f),
    )


def _nearest_people(labels: list[str], distances: FloatArray, skip: str) -> list[tuple[str, float]]:
    """The two nearest people other than `skip` (and the unlabelled); one not among the
    neighbours searched is at least as far as the farthest of them."""
    people: list[tuple[str, float]] = []
    seen = {skip, ""}
    for label, distance in zip(labels, distances.tolist(), strict=True):
        if label not in seen:
            seen.add(label)
            people.append((label, distance))
            if len(people) == 2:
                return people
    beyond = float(distances[-1]) if len(distances) else math.inf
    while len(people) < 2:
        people.append(("", beyond if people or len(distances) else math.inf))
    return people


def choose(queries: Queries, target_far: float) -> tuple[float, float, float, float, float]:
    """(threshold, margin, estimated FAR, estimated TAR, similarity scale) maximising the
    known queries accepted as the right person, at most `target_far` of strangers (and of
    known queries) accepted as somebody else."""
    f = np.float64
    sd, sm = queries.stranger_distance.astype(f), queries.stranger_margin.astype(f)
    kd, km = queries.known_distance.astype(f), queries.known_margin.astype(f)
    right = queries.known_right
    finite = np.isfinite(sd)
    spread = float(np.std(sd[finite])) if finite.sum() > 1 else 0.1
    # Silverman's rule of thumb, halved: smooth enough to steady the tail, narrow enough not
    # to blur the boundary the rule is after.
    bandwidth = max(0.5 * 1.06 * spread * max(len(sd), 1) ** -0.2, 1e-6)
    low = float(np.nanmin(np.concatenate([kd, sd]))) if len(kd) + len(sd) else 0.0
    high = float(np.nanmax(sd[finite])) if finite.any() else low + 1.0
    thresholds = np.linspace(low, high, GRID)
    top_margin = float(np.quantile(sm[np.isfinite(sm)], 0.9)) if np.isfinite(sm).any() else 0.0
    margins = np.linspace(0.0, max(top_margin, 0.0), MARGINS)
    best = (-1.0, low, 0.0, 0.0)
    n_known = max(len(kd), 1)
    for margin in margins:
        fars = _smoothed_accepts(sd, sm, thresholds, margin, bandwidth) / max(len(sd), 1)
        wrong = _smoothed_accepts(kd[~right], km[~right], thresholds, margin, bandwidth) / n_known
        accepted = (kd[right][None, :] <= thresholds[:, None]) & (km[right][None, :] >= margin)
        tars = accepted.sum(axis=1) / n_known
        allowed = (fars <= target_far) & (wrong <= target_far)
        if not allowed.any():
            continue
        at = int(np.flatnonzero(allowed)[-1])  # the largest allowed threshold: most accepts
        if tars[at] > best[0]:
            best = (float(tars[at]), float(thresholds[at]), float(margin), float(fars[at]))
    tar, threshold, margin, far = best
    if tar < 0:  # nothing meets the target: accept no one but exact repeats
        threshold, margin, far, tar = low, 0.0, 0.0, 0.0
    typical = float(np.median(kd[right])) if right.any() else threshold / 2
    scale = max((threshold - typical) / math.log(MEDIAN_SIMILARITY / (1 - MEDIAN_SIMILARITY)), 1e-3)
    return threshold, margin, far, tar, scale


def _smoothed_accepts(
    distance: Float64s,
    margin: Float64s,
    thresholds: Float64s,
    min_margin: float,
    bandwidth: float,
) -> Float64s:
    """Per threshold, the expected number of queries accepted, each query spread as a
    Gaussian of `bandwidth` in distance and in margin."""
    if not len(distance):
        return np.zeros(len(thresholds), np.float64)
    inside = _normal_cdf((thresholds[:, None] - distance[None, :]) / bandwidth)
    wide = _normal_cdf((np.nan_to_num(margin, posinf=1e6) - min_margin) / bandwidth)
    return np.asarray(inside @ wide)


def _normal_cdf(x: Float64s) -> Float64s:
    """The standard normal CDF to within 0.01 (a logistic curve; numpy has no erf)."""
    return np.asarray(1.0 / (1.0 + np.exp(-1.702 * np.clip(x, -40, 40))))


def quantile_threshold(impostor: FloatArray, target_far: float, fallback: float) -> float:
    impostor = impostor[np.isfinite(impostor)]
    if not len(impostor):
        return fallback
    return float(np.quantile(impostor, target_far))


def calibrate(
    labels: list[str],
    vectors: FloatArray,
    search: Search,
    distances: Distances,
    target_far: float,
    pair_threshold: float | None,
) -> Rule:
    """The rule for this gallery (labels and vectors of its labelled items)."""
    started = time.perf_counter()
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    repeated = sum(1 for c in counts.values() if c >= 2)
    if len(counts) < MIN_PEOPLE or repeated < MIN_REPEATED:
        reason = (
            f"{len(counts)} people, {repeated} with two or more items: calibration needs "
            f"at least {MIN_PEOPLE} people, {MIN_REPEATED} of them with two or more"
        )
        return fallback(pair_threshold, reason, target_far)
    queries = held_out(labels, vectors, search, distances)
    threshold, margin, far, tar, scale = choose(queries, target_far)
    public = DecisionRule(
        "calibrated",
        threshold=threshold,
        margin=margin,
        pair_threshold=quantile_threshold(queries.pair_impostor, target_far, threshold),
        person_threshold=quantile_threshold(queries.person_impostor, target_far, threshold),
        target_far=target_far,
        estimated_far=far,
        estimated_tar=tar,
        people=len(counts),
        items=len(labels),
    )
    return Rule(replace(public, seconds=time.perf_counter() - started), scale)


class DecisionCalibrator:
    """Keeps a Rule current as the gallery changes, measuring in a background thread once
    writes pause; queries read `rule` and never wait for it."""

    def __init__(self, measure: Callable[[], Rule] | None, initial: Rule) -> None:
        """`measure` None: the initial rule stays (calibration is off)."""
        self.rule = initial
        self._changed = threading.Event()
        self._last_change = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None
        if measure is not None:
            self._thread = threading.Thread(
                target=self._run, args=(measure,), name="decision-calibration", daemon=True
            )
            self._thread.start()
            self.note_change()

    def note_change(self) -> None:
        """After any write that may change the gallery (add, delete, forget, rename)."""
        self._last_change = time.monotonic()
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _run(self, measure: Callable[[], Rule]) -> None:
        while True:
            self._changed.wait()
            if self._closed:
                return
            deadline = time.monotonic() + MAX_DEFER_SECONDS
            while not self._closed and time.monotonic() < deadline:
                quiet = time.monotonic() - self._last_change
                if quiet >= QUIET_SECONDS:
                    break
                time.sleep(QUIET_SECONDS - quiet)
            if self._closed:
                return
            self._changed.clear()
            began = self._last_change
            try:
                rule = measure()
            except Exception:  # never take the server down; the previous rule stays
                if self._last_change == began:
                    log.exception("decision calibration failed; the previous rule stays")
                continue  # else the gallery changed under it: measured again once quiet
            if self._last_change != began:
                log.debug("the gallery changed while the rule was measured; measuring again")
                continue  # _changed is set again
            self.rule = rule
            public = rule.public
            if public.source == "calibrated":
                log.info(
                    "decision rule: distance <= %.4f and margin >= %.4f; estimated false "
                    "accepts %.4f (target %.4f), true accepts %.4f; %d people, %d items, "
                    "measured in %.1fs",
                    public.threshold,
                    public.margin,
                    public.estimated_far,
                    public.target_far,
                    public.estimated_tar,
                    public.people,
                    public.items,
                    public.seconds,
                )
            else:
                log.info("decision rule: %s (%s)", public.source, public.reason)
