"""Label-issue detection on synthetic embeddings with injected label flips (darl_core.label_issues)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from darl_core.errors import ConfigError
from darl_core.label_issues import detect, in_sample_loss, out_of_fold_probs, rank_issues, reason


def _data(n: int = 900, seed: int = 0, sep: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three grades on an ordinal axis in 16-d, 90 queries; 6% of labels moved by one grade, 6% by two."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 16))
    x[:, 0] += sep * true
    groups = rng.integers(0, 90, n)
    labels = true.copy()
    flip = rng.permutation(n)[: int(0.12 * n)]
    far, near = flip[: len(flip) // 2], flip[len(flip) // 2:]
    labels[far] = 2 - true[far] + (true[far] == 1) * 1  # 0<->2; a middle grade moves by one
    labels[near] = np.where(true[near] == 2, 1, true[near] + 1)
    return x, labels, groups, true, np.abs(labels - true)


@pytest.mark.parametrize("method", ["ordinal", "cleanlab"])
def test_flipped_pairs_rank_above_clean_ones(method: str) -> None:
    x, labels, groups, true, dist = _data()
    found = detect(x, labels, groups, 3, method=method)
    wrong = labels != true
    auroc = roc_auc_score(wrong, -found.quality)
    assert auroc > 0.85, auroc
    assert 0 < found.suspect.sum() == found.n_issues
    assert wrong[found.suspect].mean() > 3 * wrong.mean()  # suspects are mostly real flips
    assert sorted(found.rank.tolist()) == list(range(1, len(labels) + 1))


def test_ordinal_variant_puts_distant_flips_first() -> None:
    """Grades that overlap (the model is often unsure): self-confidence alone ranks a two-grade flip
    like a one-grade one; the grade distance lifts the two-grade flips."""
    x, labels, groups, true, dist = _data(sep=0.6)

    probs = out_of_fold_probs(x, labels, groups, 3)
    ordinal, plain = rank_issues(labels, probs, method="ordinal"), rank_issues(labels, probs, method="cleanlab")
    n = int((dist > 0).sum())
    top_o, top_p = ordinal.rank <= n, plain.rank <= n
    far = dist == 2
    assert far[top_o].sum() > far[top_p].sum()
    assert np.median(ordinal.rank[far]) < np.median(plain.rank[far])


def test_out_of_fold_probabilities_never_see_the_pair_label() -> None:
    """A pure-noise feature set: in-sample loss finds 'issues' by memorising, out-of-fold stays at chance."""
    rng = np.random.default_rng(1)
    x, labels, groups = rng.normal(size=(300, 40)), rng.integers(0, 3, 300), rng.integers(0, 30, 300)
    found = detect(x, labels, groups, 3, method="cleanlab")
    assert abs(found.label_prob.mean() - 1 / 3) < 0.08
    assert in_sample_loss(x, labels, 3).mean() < -np.log(found.label_prob).mean()


def test_bad_input_names_the_problem() -> None:
    x, labels, groups, _, _ = _data(60)
    with pytest.raises(ConfigError, match="outside 0..2"):
        detect(x, np.where(np.arange(60) == 5, 7, labels), groups, 3)
    with pytest.raises(ConfigError, match="same grade"):
        detect(x, np.zeros(60, int), groups, 3)
    with pytest.raises(ConfigError, match="at least 2 queries"):
        detect(x, labels, np.zeros(60, int), 3)
    with pytest.raises(ConfigError, match="method must be one of"):
        rank_issues(labels, np.full((60, 3), 1 / 3), method="loss")
    assert "labelled strong; the model says irrelevant (p 0.90)" in reason(2, 0, 0.9, 0.02, 0.1,
                                                                             ["irrelevant", "weak", "strong"])
