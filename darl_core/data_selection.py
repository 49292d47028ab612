"""Data selection before a stage trains (issue 23 part 4): which labelled pairs the stage learns from.

- ``all``: every pair (the default).
- ``drop_suspects``: the label check's ranking (``label_issues.detect``: out-of-fold grade probabilities
  from a head on the pairs' embeddings, cleanlab's label quality with the ordinal twist) and the top
  ``drop_share`` of the pairs by suspicion are *excluded* (not down-weighted: exclusion is what the
  LREF ablation measured, it keeps the loss and its class weights unchanged, and the kept rows are one
  list the metrics can report).
- ``hard_learnable``: LREF's rule. An *initial model* (IM) learns from a random subset, a *challenge
  model* (CI) from a query-balanced subset (queries cut into head / middle / tail thirds by how many
  labelled pairs they have, equal samples from each: the number of pairs stands in for LREF's
  impressions). Kept: the pairs IM gets wrong and CI gets right, plus a random ``rest_share`` of the
  others (so the easy cases are not all lost).

Both helper models are cheap: the class-balanced logistic head of the label check on the pairs'
pooled embeddings (the parent version's, or the pretrained backbone's for a stage without a parent),
cross-fitted over K query-grouped folds so that no pair is judged by a model that trained on it.
Everything is seeded: the same pairs, embeddings and settings keep the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from darl_core.config import DATA_SELECTIONS as METHODS
from darl_core.errors import ConfigError

SUBSET_SHARE = 0.5  # IM and CI each learn from half of the other folds' pairs (LREF: a sample, not all)


@dataclass(frozen=True)
class Selection:
    """The rows a stage trains on (sorted, into the pairs as given) and what the rule saw."""
    method: str
    rows: np.ndarray
    share: float  # drop_suspects: drop_share; hard_learnable: rest_share; all: 1
    detail: dict[str, int] = field(default_factory=dict)


def _kfold(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from darl_core.label_issues import fold_splits

    try:
        return fold_splits(labels, groups, folds, seed)
    except ConfigError as e:
        raise ConfigError(f"data selection {e}; use data_selection 'all'") from e


def query_balanced(groups: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` rows, a third from each of the head / middle / tail query buckets (queries ranked by their
    number of pairs, ties at random); a bucket short of its third gives all it has and the rest fill up."""
    groups = np.asarray(groups)
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.lexsort((rng.random(len(names)), -counts))  # most pairs first, ties shuffled
    bucket_of_query = np.empty(len(names), int)
    bucket_of_query[order] = np.arange(len(names)) * 3 // max(len(names), 1)
    bucket = bucket_of_query[inverse]
    size = min(size, len(groups))
    picked: list[np.ndarray] = []
    for b in range(3):
        rows = rng.permutation(np.flatnonzero(bucket == b))
        picked.append(rows[: size // 3 + (1 if b < size % 3 else 0)])
    taken = np.concatenate(picked)
    if len(taken) < size:  # short buckets: fill from what is left, at random
        rest = rng.permutation(np.setdiff1d(np.arange(len(groups)), taken))
        taken = np.concatenate([taken, rest[: size - len(taken)]])
    return np.sort(taken)


def helper_predictions(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_grades: int, *,
                       folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(IM's, CI's) out-of-fold grade for every pair: per fold, each head learns from its subset of the
    other folds (random for IM, query-balanced for CI) and predicts the held-out fold."""
    from darl_core.label_issues import _head

    x, y, g = np.asarray(embeddings, np.float64), np.asarray(labels, int), np.asarray(groups)
    rng = np.random.default_rng([seed, 23])
    im, ci = np.empty(len(y), int), np.empty(len(y), int)
    for train, held in _kfold(y, g, folds, seed):
        size = max(2, int(round(SUBSET_SHARE * len(train))))
        for out, rows in ((im, train[rng.permutation(len(train))[:size]]),
                          (ci, train[query_balanced(g[train], size, rng)])):
            if len(np.unique(y[rows])) < 2:  # one grade only: the model can only say that grade
                out[held] = y[rows][0]
                continue
            out[held] = _head(seed, 0.1).fit(x[rows], y[rows]).predict(x[held])
    return im, ci


def hard_learnable_rows(labels: np.ndarray, im_pred: np.ndarray, ci_pred: np.ndarray, rest_share: float,
                        seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, the hard-learnable mask): IM wrong and CI right, plus a seeded random ``rest_share`` of
    the other pairs."""
    y = np.asarray(labels, int)
    hard = (np.asarray(im_pred) != y) & (np.asarray(ci_pred) == y)
    rest = np.flatnonzero(~hard)
    extra = np.random.default_rng([seed, 29]).permutation(rest)[: int(round(rest_share * len(rest)))]
    return np.sort(np.concatenate([np.flatnonzero(hard), extra])), hard


def drop_suspect_rows(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_grades: int,
                      drop_share: float, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Every row but the top ``drop_share`` by the label check's suspicion (ordinal cleanlab, out of fold)."""
    from darl_core.label_issues import detect

    found = detect(embeddings, labels, groups, n_grades, method="ordinal", folds=folds, seed=seed)
    return drop_ranked(found.rank, drop_share).rows


def drop_ranked(rank: np.ndarray, drop_share: float) -> Selection:
    """``drop_suspects`` from a finished ranking (1 = most suspect, ``inf`` = never dropped): every row but
    the top ``drop_share`` of all rows by rank, fewer when fewer have a finite rank."""
    r = np.asarray(rank, dtype=np.float64)
    n_drop = min(int(round(drop_share * len(r))), int(np.isfinite(r).sum()))
    dropped = np.argsort(r, kind="stable")[:n_drop]
    keep = np.ones(len(r), bool)
    keep[dropped] = False
    return Selection("drop_suspects", np.flatnonzero(keep), drop_share)


def select(method: str, embeddings: np.ndarray | None, labels: np.ndarray, groups: np.ndarray, n_grades: int, *,
           drop_share: float = 0.1, rest_share: float = 0.5, folds: int = 5, seed: int = 0) -> Selection:
    """The rows to train on under ``method`` (see the module docstring); ``embeddings`` unused for ``all``."""
    if method not in METHODS:
        raise ConfigError(f"`data_selection` must be one of {', '.join(METHODS)}, got {method!r}")
    y = np.asarray(labels, int)
    if method == "all":
        return Selection(method, np.arange(len(y)), 1.0)
    if embeddings is None or len(embeddings) != len(y):
        raise ConfigError(f"data selection needs one embedding per pair: {len(y)} pairs, "
                          f"{None if embeddings is None else len(embeddings)} embeddings")
    if method == "drop_suspects":
        rows = drop_suspect_rows(embeddings, y, np.asarray(groups), n_grades, drop_share, folds=folds, seed=seed)
        return Selection(method, rows, drop_share)
    im, ci = helper_predictions(embeddings, y, np.asarray(groups), n_grades, folds=folds, seed=seed)
    rows, hard = hard_learnable_rows(y, im, ci, rest_share, seed)
    detail = {"hard_learnable": int(hard.sum()), "im_wrong": int((im != y).sum()), "ci_right": int((ci == y).sum())}
    return Selection(method, rows, rest_share, detail)


def summary(selection: Selection, labels: np.ndarray, grade_names: list[str] | tuple[str, ...]) -> dict:
    """What a stage's metrics record: the method, its share, and pairs kept / dropped in total and per grade."""
    y = np.asarray(labels, int)
    kept = np.zeros(len(y), bool)
    kept[selection.rows] = True
    per = {"kept": kept, "dropped": ~kept}
    return {"data_selection": selection.method, "data_selection_share": selection.share,
            "selection_pairs": len(y), "selection_kept": int(kept.sum()), "selection_dropped": int((~kept).sum()),
            **{f"selection_{what}_per_grade": {name: int((mask & (y == g)).sum()) for g, name in enumerate(grade_names)}
               for what, mask in per.items()},
            **{f"selection_{k}": v for k, v in selection.detail.items()}}
