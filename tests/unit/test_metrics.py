"""Metrics agree with scikit-learn where both exist; known values elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    ndcg_score,
    precision_recall_fscore_support,
)

from darl_core.errors import ConfigError
from darl_core.metrics import (
    _weighted_macro_f1,
    ece,
    evaluate,
    id_ood_report,
    macro_f1,
    macro_f1_difference,
    ndcg_at_k,
)


def _random(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("k", [3, 4, 5])
def test_classification_metrics_match_sklearn(k):
    y, p = _random(k=k, seed=k)
    pred = p.argmax(1)
    m = evaluate(y, p)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert macro_f1(y, pred, k) == pytest.approx(m["macro_f1"])
    assert m["qwk"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"))
    prec, rec, f1, _ = precision_recall_fscore_support(y, pred, labels=list(range(k)), zero_division=0)
    names = ["irrelevant", "weak", "strong"] if k == 3 else [f"g{g}" for g in range(k)]
    for g, name in enumerate(names):
        assert m[f"precision_{name}"] == pytest.approx(prec[g])
        assert m[f"recall_{name}"] == pytest.approx(rec[g])
        assert m[f"f1_{name}"] == pytest.approx(f1[g])


def test_never_predicted_grade_has_zero_f1():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.1, 0.8, 0.1]] * 2 + [[0.1, 0.1, 0.8]] * 2)
    m = evaluate(y, p)
    assert m["f1_irrelevant"] == 0.0 and m["predicted_irrelevant"] == 0.0
    assert m["macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro", zero_division=0))


def test_ndcg_matches_sklearn_per_query():
    rng = np.random.default_rng(1)
    queries = np.repeat(["a", "b", "c"], [12, 5, 8])
    y = rng.integers(0, 3, len(queries))
    y[:2] = 2  # every query has a relevant item
    y[12], y[17] = 2, 2
    scores = rng.normal(size=len(queries))
    expected = np.mean([ndcg_score([2.0 ** y[queries == q] - 1], [scores[queries == q]], k=10)
                        for q in ["a", "b", "c"]])
    assert ndcg_at_k(y, scores, queries, 10) == pytest.approx(expected)


def test_ece_and_overconfidence_known_values():
    # 10 pairs at confidence 0.9, 6 of them right: ECE = |0.9 - 0.6| = 0.3
    p = np.tile([0.9, 0.05, 0.05], (10, 1))
    y = np.array([0] * 6 + [1] * 4)
    assert ece(y, p) == pytest.approx(0.3)
    m = evaluate(y, p)
    assert m["overconfidence"] == pytest.approx(0.3)
    assert m["over_recall"] == 0.0 and m["under_recall"] == pytest.approx(0.4)


def test_over_recall_counts_predictions_above_the_truth():
    y = np.array([0, 0, 1, 2])
    p = np.eye(3)[[2, 0, 2, 1]]
    m = evaluate(y, p)
    assert m["over_recall"] == pytest.approx(0.5) and m["under_recall"] == pytest.approx(0.25)


def test_id_ood_report_gap():
    r = id_ood_report({"macro_f1": 0.5, "ece": 0.1}, {"macro_f1": 0.4, "ece": 0.2})
    assert r["gap_macro_f1"] == pytest.approx(0.1) and r["ood_ece"] == 0.2 and r["id_macro_f1"] == 0.5


def test_bad_shapes_and_grades_are_rejected():
    with pytest.raises(ConfigError, match="shapes"):
        evaluate(np.array([0, 1]), np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="grades must be in"):
        evaluate(np.array([0, 3]), np.full((2, 3), 1 / 3))


def _preds(n=400, k=3, seed=0, skill=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    noisy = np.where(rng.random(n) < skill / (1 + skill), y, rng.integers(0, k, n))
    return y, noisy


def test_weighted_macro_f1_is_macro_f1_of_the_repeated_rows():
    y, pred = _preds(60, 4, 3)
    w = np.random.default_rng(1).integers(0, 4, size=(3, 60)).astype(float)
    got = _weighted_macro_f1(y, pred, w, 4)
    for row, value in zip(w.astype(int), got, strict=True):
        rep = np.repeat(np.arange(60), row)
        assert value == pytest.approx(f1_score(y[rep], pred[rep], average="macro", labels=range(4), zero_division=0))


def test_macro_f1_difference_observed_value_and_seed_means_match_sklearn():
    y, a = _preds(400, 3, 0, skill=1.0)
    b = np.stack([_preds(400, 3, s, skill=3.0)[1] for s in (0, 1, 2)])
    b[:, :] = np.where(np.random.default_rng(5).random(b.shape) < 0.7, y, b)  # three "seeds" of a better model
    groups = [f"q{i // 4}" for i in range(400)]
    r = macro_f1_difference(y, a, b, groups, k=3, n_boot=300, thresholds=(0.0, 0.05, 1.0))
    f1 = lambda p: f1_score(y, p, average="macro", zero_division=0)  # noqa: E731
    assert r["difference"] == pytest.approx(np.mean([f1(p) for p in b]) - f1(a))
    assert r["groups"] == 100 and r["low"] <= r["difference"] <= r["high"]
    assert r["low"] > 0 and r["share_below_zero"] == 0 and r["share_at_least"]["0"] == 1.0
    assert r["share_at_least"]["1"] == 0.0  # a difference of 1 needs B perfect and A all wrong


def test_macro_f1_difference_of_a_model_with_itself_is_zero_and_clustering_widens_the_interval():
    y, a = _preds(600, 3, 2)
    same = macro_f1_difference(y, a, a.copy(), [str(i) for i in range(600)], k=3, n_boot=200)
    assert same["difference"] == 0 and same["low"] == same["high"] == 0 and same["share_below_zero"] == 1.0
    _, b = _preds(600, 3, 7)
    # One query holding 60 pairs whose errors move together: resampling pairs alone would understate the spread.
    order = np.argsort(a == b)  # the pairs where the models disagree, grouped first
    clustered = np.empty(600, dtype=object)
    clustered[order] = [f"q{i // 60}" for i in range(600)]
    by_pair = macro_f1_difference(y, a, b, [str(i) for i in range(600)], k=3, n_boot=400)
    by_query = macro_f1_difference(y, a, b, list(clustered), k=3, n_boot=400)
    assert by_query["difference"] == pytest.approx(by_pair["difference"])
    assert by_query["high"] - by_query["low"] > by_pair["high"] - by_pair["low"]


def test_macro_f1_difference_rejects_mismatched_inputs():
    y, a = _preds(50)
    with pytest.raises(ConfigError, match="same pairs"):
        macro_f1_difference(y, a, a[:40], [str(i) for i in range(50)], k=3)
    with pytest.raises(ConfigError, match="level"):
        macro_f1_difference(y, a, a, [str(i) for i in range(50)], k=3, level=1.5)
