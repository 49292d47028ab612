"""Label-issue detection: out-of-fold grade probabilities ranked by confident learning (cleanlab).

Every labelled pair gets grade probabilities from a head that never saw its label: the pairs are cut
into K folds grouped by query (pairs of one query share most of their text, so a pair's neighbours
would leak its label otherwise), a class-weighted logistic regression is fitted on the frozen pooled
embeddings of the other folds, and it scores the held-out fold. cleanlab then ranks the given labels
by quality (``get_label_quality_scores``, self-confidence: the probability of the given grade) and
estimates how many are wrong (``find_label_issues``, the confident joint). We do not re-implement it.

The ordinal variant scales cleanlab's quality down by how far the model's expected grade lies from
the label:  ``q_ord = q / (1 + |E[grade] - label|)``.  On a relevance scale a pair labelled *strong*
that the model calls *irrelevant* is a worse error than one it calls *weak*, and self-confidence alone
ranks the two alike. Lower quality = more suspect, in both methods.

The refit option (``refit_probs``) replaces the frozen-embedding head with the whole model: each fold's
pairs are scored by a model fine-tuned (a ``StageConfig``, the ``ce`` baseline in the product) on the
other folds, its validation set drawn by query from those folds. K fine-tunes instead of K logistic
fits: for GPUs or small projects.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from darl_core.errors import ConfigError

if TYPE_CHECKING:
    from darl_core.config import StageConfig
    from darl_core.training import Examples

METHODS = ("ordinal", "cleanlab")


@dataclass(frozen=True)
class LabelIssues:
    """Per pair (in input order): the out-of-fold view of the model and the label-quality ranking."""
    probs: np.ndarray  # [N, K] out-of-fold grade probabilities
    model_grade: np.ndarray  # argmax grade
    model_prob: np.ndarray  # probability of that grade
    label_prob: np.ndarray  # probability of the given grade
    expected: np.ndarray  # expected grade index
    quality: np.ndarray  # lower = more suspect (the chosen method)
    suspect: np.ndarray  # bool: among the top ``n_issues`` by quality
    rank: np.ndarray  # 1 = most suspect
    n_issues: int  # cleanlab's estimate of the number of wrong labels


def _check(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_grades: int) -> None:
    if embeddings.ndim != 2 or len(embeddings) != len(labels) or len(labels) != len(groups):
        raise ConfigError(f"embeddings [N, D], labels [N] and groups [N] must agree: got {embeddings.shape}, "
                          f"{labels.shape}, {groups.shape}")
    if n_grades < 2:
        raise ConfigError(f"a label check needs at least 2 grades, got {n_grades}")
    bad = np.flatnonzero((labels < 0) | (labels >= n_grades))
    if len(bad):
        raise ConfigError(f"label of row {int(bad[0])} is {int(labels[bad[0]])}, outside 0..{n_grades - 1}")
    if len(np.unique(labels)) < 2:
        raise ConfigError("every labelled pair has the same grade: there is nothing to check against; "
                          "label pairs of at least two grades first")


def _head(seed: int, c: float):  # noqa: ANN202 - sklearn pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=500,
                                                              random_state=seed))


def _full_probs(model, x: np.ndarray, n_grades: int) -> np.ndarray:  # noqa: ANN001
    """Probabilities over every grade, even those missing from the training fold (a floor, renormalised)."""
    out = np.full((len(x), n_grades), 1e-4)
    out[:, model.classes_] = model.predict_proba(x)
    return out / out.sum(1, keepdims=True)


def out_of_fold_probs(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_grades: int, *,
                      folds: int = 5, seed: int = 0, c: float = 0.1) -> np.ndarray:
    """[N, K] grade probabilities, each from a head fitted on the other query-grouped folds."""
    x, y, g = np.asarray(embeddings, np.float64), np.asarray(labels, int), np.asarray(groups)
    _check(x, y, g, n_grades)
    probs = np.zeros((len(y), n_grades))
    for train, held in fold_splits(y, g, folds, seed):
        if len(np.unique(y[train])) < 2:  # a fold without two grades to learn from: the grade prior
            probs[held] = _prior(y[train], n_grades)
            continue
        probs[held] = _full_probs(_head(seed, c).fit(x[train], y[train]), x[held], n_grades)
    return probs


def fold_splits(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) per fold: grouped by query, stratified by grade as far as the groups allow."""
    from sklearn.model_selection import StratifiedGroupKFold

    k = min(folds, len(np.unique(groups)))
    if k < 2:
        raise ConfigError(f"cross-fitting needs pairs of at least 2 queries, got {len(np.unique(groups))}")
    with warnings.catch_warnings():  # a rare grade with fewer pairs than folds: stratification is best effort
        warnings.simplefilter("ignore", UserWarning)
        return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
                    .split(np.zeros((len(labels), 1)), labels, groups))


def _prior(labels: np.ndarray, n_grades: int) -> np.ndarray:
    p = np.bincount(labels, minlength=n_grades) + 1.0
    return p / p.sum()


def refit_probs(data: Examples, groups: np.ndarray, n_grades: int, config: StageConfig, work_dir: Path, *,
                folds: int = 5, seed: int = 0, progress: Callable[[float, str], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """[N, K] grade probabilities, each pair scored by a model that ``config`` fine-tuned on the other
    query-grouped folds (``work_dir``/fold{i}: a rerun resumes finished folds). Each fold validates on
    queries drawn from its own training part (``draw_validation`` with no val split), never on the held-out
    fold; ``progress(fraction, message)`` follows the folds."""
    from darl_core.model import load_checkpoint, score_pairs
    from darl_core.training import ProgressEvent, run_stage
    from darl_core.validation import draw_validation

    y, g = np.asarray(data.grades, int), np.asarray(groups)
    _check(np.zeros((len(y), 1)), y, g, n_grades)
    if config.num_grades != n_grades:
        raise ConfigError(f"the refit config has {config.num_grades} grades, the labels {n_grades}")
    say = progress or (lambda _f, _m: None)
    splits = fold_splits(y, g, folds, seed)
    probs = np.zeros((len(y), n_grades))
    for i, (train, held) in enumerate(splits):
        part = data.subset(train)
        if len(np.unique(y[train])) < 2:
            probs[held] = _prior(y[train], n_grades)
            continue
        fit, val, _note = draw_validation(part, part.subset(np.zeros(0, int)))

        def tick(ev: ProgressEvent, i: int = i) -> None:
            frac = ev.fraction if ev.fraction is not None else (ev.step / ev.total_steps if ev.total_steps else 0.0)
            say((i + min(max(frac, 0.0), 1.0)) / len(splits), f"fold {i + 1}/{len(splits)}: {ev.message}")
        result = run_stage(config, fit, val, Path(work_dir) / f"fold{i}", progress=tick, should_stop=should_stop)
        model = load_checkpoint(result.checkpoint)
        out = score_pairs(model, [data.queries[j] for j in held], [data.items[j] for j in held],
                          max_length=config.max_length)
        probs[held] = out.probs
        say((i + 1) / len(splits), f"fold {i + 1}/{len(splits)} scored {len(held):,} held-out pairs")
    return probs


def in_sample_loss(embeddings: np.ndarray, labels: np.ndarray, n_grades: int, *, seed: int = 0,
                   c: float = 0.1) -> np.ndarray:
    """Per-pair cross-entropy of the same head fitted on every pair (the 'training loss' baseline)."""
    x, y = np.asarray(embeddings, np.float64), np.asarray(labels, int)
    probs = _full_probs(_head(seed, c).fit(x, y), x, n_grades)
    return -np.log(probs[np.arange(len(y)), y])


def rank_issues(labels: np.ndarray, probs: np.ndarray, *, method: str = "ordinal") -> LabelIssues:
    """Rank the given labels by quality under out-of-fold ``probs`` (cleanlab; ``ordinal`` adds the grade
    distance); the suspects are the top ``n`` where ``n`` is cleanlab's estimate of the wrong labels."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if method not in METHODS:
        raise ConfigError(f"label-check method must be one of {', '.join(METHODS)}, got {method!r}")
    y = np.asarray(labels, int)
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ConfigError(f"probs must be [N, K] with N = {len(y)} labels, got {p.shape}")
    expected = p @ np.arange(p.shape[1])
    quality = np.asarray(get_label_quality_scores(y, p), np.float64)
    if method == "ordinal":
        quality = quality / (1.0 + np.abs(expected - y))
    with warnings.catch_warnings():  # tiny projects: cleanlab warns about grades with few pairs
        warnings.simplefilter("ignore")
        n_issues = int(np.asarray(find_label_issues(y, p)).sum())
    order = np.argsort(quality, kind="stable")
    rank = np.empty(len(y), int)
    rank[order] = np.arange(1, len(y) + 1)
    model_grade = p.argmax(1)
    return LabelIssues(probs=p, model_grade=model_grade, model_prob=p.max(1), label_prob=p[np.arange(len(y)), y],
                       expected=expected, quality=quality, suspect=rank <= n_issues, rank=rank, n_issues=n_issues)


def detect(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_grades: int, *,
           method: str = "ordinal", folds: int = 5, seed: int = 0) -> LabelIssues:
    """Out-of-fold probabilities, then ``rank_issues``: the whole cheap label check on frozen embeddings."""
    probs = out_of_fold_probs(embeddings, labels, groups, n_grades, folds=folds, seed=seed)
    return rank_issues(labels, probs, method=method)


def reason(label: int, issue_grade: int, model_prob: float, label_prob: float, expected: float,
           grades: list[str]) -> str:
    """One line for the reviewer: what the label says and what the model says instead."""
    return (f"labelled {grades[label]}; the model says {grades[issue_grade]} (p {model_prob:.2f}), "
            f"gives the label p {label_prob:.2f}, expected grade {expected:.2f}")
