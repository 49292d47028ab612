"""Inter-annotator agreement and annotator throughput: pure functions over plain Python data.

- ``pairwise_qwk``: quadratic-weighted Cohen's kappa for every pair of annotators on the units both graded;
- ``krippendorff_alpha``: Krippendorff's alpha (ordinal by default) over units graded by any number of
  annotators, missing values allowed (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability");
- ``throughput``: labels per active hour and median seconds per card;
- ``accuracy``: each annotator's share of votes equal to a reference (adjudicated) grade;
- ``flag_rates``: each annotator's share of standing votes they flagged (an annotator who flags half
  their cards reads the guidelines differently, or meets a broken batch).

Grades are 0-based indices, lowest first. Undefined statistics are NaN (e.g. no variation at all).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from statistics import median

import numpy as np

from darl_core.errors import ConfigError
from darl_core.metrics import confusion, quadratic_kappa

IDLE_CAP_S = 300.0  # a gap longer than this between two labels is a break, not work

Votes = Mapping[Hashable, Mapping[Hashable, int]]  # unit -> rater -> grade


@dataclass(frozen=True)
class PairKappa:
    rater_a: Hashable
    rater_b: Hashable
    n: int  # units both graded
    kappa: float  # NaN when undefined (fewer than 2 common units, or no variation)


def _check_grades(values: Iterable[int], k: int) -> None:
    if k < 2:
        raise ConfigError(f"A grade scale needs at least 2 grades, got k={k}.")
    bad = [v for v in values if not 0 <= v < k]
    if bad:
        raise ConfigError(f"Grades must be in 0..{k - 1}; got {sorted(set(bad))[:5]}.")


def qwk(a: Sequence[int], b: Sequence[int], k: int) -> float:
    """Quadratic-weighted Cohen's kappa of two aligned grade lists (NaN when undefined)."""
    if len(a) != len(b):
        raise ConfigError(f"Kappa needs two aligned lists, got lengths {len(a)} and {len(b)}.")
    _check_grades([*a, *b], k)
    if len(a) < 2 or len(set(a) | set(b)) < 2:
        return math.nan
    return quadratic_kappa(confusion(np.asarray(a), np.asarray(b), k))


def pairwise_qwk(votes: Votes, k: int) -> list[PairKappa]:
    """Kappa for every pair of raters who graded at least one unit in common."""
    common: dict[tuple[Hashable, Hashable], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for by_rater in votes.values():
        for ra, rb in combinations(sorted(by_rater, key=str), 2):
            xs, ys = common[(ra, rb)]
            xs.append(by_rater[ra])
            ys.append(by_rater[rb])
    return [PairKappa(ra, rb, len(xs), qwk(xs, ys, k)) for (ra, rb), (xs, ys) in sorted(common.items(), key=str)]


def _distance(metric: str, k: int, n_c: np.ndarray) -> np.ndarray:
    c, g = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    if metric == "nominal":
        return (c != g).astype(np.float64)
    if metric == "interval":
        return ((c - g) ** 2).astype(np.float64)
    if metric == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        lo, hi = np.minimum(c, g), np.maximum(c, g)
        # sum of n_g for g from lo to hi, minus half of the two end categories
        return (cum[hi + 1] - cum[lo] - (n_c[lo] + n_c[hi]) / 2.0) ** 2
    raise ConfigError(f"metric must be nominal, ordinal or interval, got {metric!r}.")


def krippendorff_alpha(units: Iterable[Sequence[int | None]], k: int, metric: str = "ordinal") -> float:
    """Krippendorff's alpha over units (each a list of the grades it received; None = missing).

    Units with fewer than two grades are not pairable and are ignored. NaN when fewer than two pairable
    values exist or the expected disagreement is zero (everyone used one grade).
    """
    o = np.zeros((k, k))
    for values in units:
        vals = [int(v) for v in values if v is not None]
        if len(vals) < 2:
            continue
        _check_grades(vals, k)
        counts = np.bincount(vals, minlength=k).astype(np.float64)
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(vals) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n < 2:
        return math.nan
    delta = _distance(metric, k, n_c)
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return math.nan
    return float(1.0 - (n - 1) * (o * delta).sum() / expected)


def throughput(times: Sequence[datetime], seconds: Sequence[float | None],
               idle_cap_s: float = IDLE_CAP_S) -> tuple[float, float]:
    """(labels per active hour, median seconds per card) for one annotator's labels.

    Active time is the sum of gaps between consecutive labels, each capped at ``idle_cap_s`` (a longer
    gap is a break), plus the time on the first card. NaN when there is nothing to measure.
    """
    secs = [float(s) for s in seconds if s is not None]
    med = float(median(secs)) if secs else math.nan
    if not times:
        return math.nan, med
    ordered = sorted(times)
    active = sum(min((b - a).total_seconds(), idle_cap_s) for a, b in zip(ordered, ordered[1:], strict=False))
    first = seconds[int(np.argmin(times))] if len(seconds) == len(times) else None
    active += min(float(first), idle_cap_s) if first is not None else (med if secs else 0.0)
    return (len(times) * 3600.0 / active if active > 0 else math.nan), med


def accuracy(votes: Votes, reference: Mapping[Hashable, int]) -> dict[Hashable, tuple[int, float]]:
    """rater -> (units with a reference, share of their votes equal to it)."""
    hits: dict[Hashable, list[int]] = defaultdict(list)
    for unit, by_rater in votes.items():
        if unit in reference:
            for rater, grade in by_rater.items():
                hits[rater].append(int(grade == reference[unit]))
    return {r: (len(h), sum(h) / len(h)) for r, h in hits.items()}


def flag_rates(flags: Mapping[Hashable, Sequence[bool]]) -> dict[Hashable, tuple[int, float]]:
    """rater -> (flagged votes, share of their votes flagged); NaN share for a rater with no votes."""
    return {r: (sum(map(bool, fs)), sum(map(bool, fs)) / len(fs) if fs else math.nan) for r, fs in flags.items()}
