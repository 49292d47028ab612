"""OOD detectors on synthetic Gaussians: a shifted cluster must score higher; errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from darl_core.errors import ConfigError, NotFittedError
from darl_core.neighbours import NeighbourIndex, exact_search, l2_normalise
from darl_core.ood import (
    DETECTORS,
    DimensionMismatchError,
    EmptyBankError,
    Ensemble,
    combine_scores,
    get_detector,
    tune_weights,
)

D = 8
MEANS = np.array([-6.0, 0.0, 6.0])


def _points(rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    x = rng.normal(size=(len(centres), D))
    x[:, 0] += centres
    x[:, 1] += 10.0  # a common offset, so that unit-length kNN still sees where a point is
    return x


def _logits(x: np.ndarray) -> np.ndarray:
    # The Bayes classifier of the three ID classes: confident on them, unsure (and low) between them.
    return 5.0 - (x[:, :1] - MEANS[None, :]) ** 2 / 2


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 900)
    bank = _points(rng, MEANS[labels])
    test_id = _points(rng, MEANS[rng.integers(0, 3, 300)])
    # The shifted cluster sits between the classes: far from every class, unsure for the grade head.
    between = rng.choice([-3.0, 3.0], 300)
    test_ood = _points(rng, between)
    test_ood[:, 0] = between + 0.4 * rng.normal(size=300)  # a tight cluster midway between classes
    test_ood[:, 2:] += 2.5
    # The unlabelled pool (background for knn_ratio): fresh draws of both kinds, none of them scored.
    pool_ood = _points(rng, rng.choice([-3.0, 3.0], 400))
    pool_ood[:, 0] = rng.choice([-3.0, 3.0], 400) + 0.4 * rng.normal(size=400)
    pool_ood[:, 2:] += 2.5
    pool = np.vstack([_points(rng, MEANS[rng.integers(0, 3, 400)]), pool_ood])
    return {"bank": bank, "labels": labels, "x": np.vstack([test_id, test_ood]),
            "y": np.r_[np.zeros(300), np.ones(300)], "pool": pool, "pool_y": np.r_[np.zeros(400), np.ones(400)]}


def _fit_score(name: str, d: dict[str, np.ndarray]) -> np.ndarray:
    det = get_detector(name)
    if det.uses_logits:
        return det.fit(_logits(d["bank"]), d["labels"]).score(_logits(d["x"]))
    return det.fit(d["bank"], d["labels"], background=d["pool"]).score(d["x"])


@pytest.mark.parametrize("name", sorted(n for n in DETECTORS if n != "ensemble"))
def test_shifted_cluster_scores_higher(name: str, data: dict[str, np.ndarray]) -> None:
    assert roc_auc_score(data["y"], _fit_score(name, data)) > 0.95


@pytest.mark.parametrize("combine", ["zscore", "rank"])
def test_ensemble_with_logit_members(combine: str, data: dict[str, np.ndarray]) -> None:
    members = ("knn", "mahalanobis", "relative_mahalanobis", "energy", "msp")
    ens = Ensemble(members=members, combine=combine)
    ens.fit(data["bank"], data["labels"], logits=_logits(data["bank"]))
    parts = ens.score_parts(data["x"], logits=_logits(data["x"]))
    assert set(parts) == {*members, "ensemble"}
    assert roc_auc_score(data["y"], parts["ensemble"]) > 0.95
    with pytest.raises(ConfigError, match="pass logits="):
        ens.score(data["x"])


def test_default_detector_is_the_ensemble_and_needs_no_labels(data: dict[str, np.ndarray]) -> None:
    ens = get_detector("ensemble")
    assert tuple(ens.members) == ("knn", "knn_ratio") and ens.needs_background
    s = ens.fit(data["bank"], background=data["pool"]).score(data["x"])
    assert roc_auc_score(data["y"], s) > 0.95


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_not_fitted_and_dimension_errors(name: str, data: dict[str, np.ndarray]) -> None:
    det = get_detector(name)
    width = 3 if det.uses_logits else D
    with pytest.raises(NotFittedError, match="call fit"):
        det.score(np.zeros((2, width)))
    with pytest.raises(EmptyBankError, match="empty"):
        det.fit(np.zeros((0, width)))
    det.fit(np.random.default_rng(1).normal(size=(50, width)), background=np.ones((20, width)))
    with pytest.raises(DimensionMismatchError, match=f"width {width}, got width {width + 1}"):
        det.score(np.zeros((2, width + 1)))


def test_registry_and_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown detector 'nope'"):
        get_detector("nope")
    with pytest.raises(ConfigError, match="got 0"):
        get_detector("knn", k=0)
    with pytest.raises(ConfigError, match="got 'mean'"):
        get_detector("ensemble", combine="mean")


def test_knn_leaves_itself_out_of_calibration() -> None:
    bank = np.random.default_rng(2).normal(size=(200, D))
    knn = get_detector("knn", k=1).fit(bank)
    # In-sample the nearest neighbour is the row itself (distance 0); calibration must not be.
    assert np.all(knn.calibration_scores(np.arange(10)) > 0.1)


def test_knn_ratio_needs_a_matching_background(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ConfigError, match="pass background="):
        get_detector("knn_ratio").fit(data["bank"])
    with pytest.raises(EmptyBankError, match="background .*empty"):
        get_detector("knn_ratio").fit(data["bank"], background=np.zeros((0, D)))
    with pytest.raises(DimensionMismatchError, match="background width 3 != bank width 8"):
        get_detector("knn_ratio").fit(data["bank"], background=np.zeros((5, 3)))
    ens = Ensemble(members=("knn", "knn_ratio"))
    assert ens.needs_background and not Ensemble(members=("knn", "mahalanobis")).needs_background
    with pytest.raises(ConfigError, match="pass background="):
        ens.fit(data["bank"])
    det = get_detector("knn_ratio").fit(data["bank"], background=data["pool"])
    with pytest.raises(DimensionMismatchError, match="3 background_idx for 2 scored rows"):
        det.score(data["pool"][:2], background_idx=np.arange(3))


def test_ensemble_shares_the_bank_search_between_knn_and_knn_ratio(data: dict[str, np.ndarray]) -> None:
    ens = Ensemble().fit(data["bank"], background=data["pool"])
    idx = np.arange(len(data["pool"]))
    parts = ens.score_parts(data["pool"], background_idx=idx)
    alone = get_detector("knn_ratio").fit(data["bank"], background=data["pool"]).score(data["pool"], background_idx=idx)
    assert np.allclose(parts["knn_ratio"], alone)
    calls = []
    original = ens.members["knn_ratio"].index_.search
    ens.members["knn_ratio"].index_.search = lambda *a, **k: calls.append(1) or original(*a, **k)
    ens.score_parts(data["pool"], background_idx=idx)
    assert calls == []  # the bank was searched once, by the kNN member


def test_knn_ratio_leaves_pool_rows_out_of_their_own_neighbours(data: dict[str, np.ndarray]) -> None:
    pool, bank = data["pool"], data["bank"]
    det = get_detector("knn_ratio", k=3).fit(bank, background=pool)
    in_sample = det.score(pool[:20], background_idx=np.arange(20))
    for i in (0, 7, 19):  # as if row i had never been in the pool
        alone = get_detector("knn_ratio", k=3).fit(bank, background=np.delete(pool, i, axis=0))
        # Scored in the same 20-row batch: faiss takes another float32 kernel for a single row (1e-6 apart).
        assert in_sample[i] == pytest.approx(alone.score(pool[:20])[i], abs=1e-6)
    # Without background_idx a pool row finds itself (distance 0 to the pool): it would look more OOD.
    assert np.all(det.score(pool[:20]) >= in_sample - 1e-9)
    # The pool rows separate as the test rows do.
    assert roc_auc_score(data["pool_y"], det.score(pool, background_idx=np.arange(len(pool)))) > 0.95


def test_knn_ratio_subsampled_background_keeps_rows_straight(data: dict[str, np.ndarray]) -> None:
    pool, bank = data["pool"], data["bank"]
    det = get_detector("knn_ratio", k=3, max_background=300, seed=4).fit(bank, background=pool)
    kept = det.background_rows_
    assert len(kept) == 300 and np.all(np.diff(kept) > 0)
    same = get_detector("knn_ratio", k=3).fit(bank, background=pool[kept])
    rows = np.arange(0, len(pool), 37)  # kept and dropped rows alike
    pos = np.full(len(rows), -1)
    hit = np.isin(rows, kept)
    pos[hit] = np.searchsorted(kept, rows[hit])
    expected = same.score(pool[rows], background_idx=pos)
    assert np.allclose(det.score(pool[rows], background_idx=rows), expected)
    assert hit.any() and (~hit).any()


def test_knn_ratio_does_not_put_a_lone_outlier_first(data: dict[str, np.ndarray]) -> None:
    # kNN alone ranks a lone far outlier first; with the pool ratio, dozens of the pool's uncovered
    # cluster rank above it (it is far from the pool too).
    outlier = data["bank"][:1].copy()
    outlier[0, 3:] += 12.0
    pool = np.vstack([data["pool"], outlier])
    idx = np.arange(len(pool))
    knn = get_detector("knn").fit(data["bank"]).score(pool)
    ratio = get_detector("knn_ratio").fit(data["bank"], background=pool).score(pool, background_idx=idx)
    assert knn.argmax() == len(pool) - 1
    above = np.flatnonzero(ratio[:-1] > ratio[-1])
    assert len(above) >= 40 and data["pool_y"][above].mean() > 0.9


def test_exact_search_matches_brute_force_and_approximate_agrees() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=3.0, size=(20, 16))
    bank = l2_normalise(centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 16)))
    q = l2_normalise(centres[rng.integers(0, 20, 200)] + rng.normal(size=(200, 16)))
    sims, idx = exact_search(q, bank, 5, block=64)
    brute = np.argsort(-(q @ bank.T), axis=1)[:, :5]
    assert (idx == brute).mean() > 0.99
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    _, approx = NeighbourIndex(bank, method="approximate").search(q, 5)
    assert (approx[:, 0] == idx[:, 0]).mean() > 0.9
    assert NeighbourIndex(bank).choose(200) == "exact"


def test_ledoit_wolf_matches_scikit_learn() -> None:
    from sklearn.covariance import ledoit_wolf

    from darl_core.ood import ledoit_wolf_cov

    x = np.random.default_rng(4).normal(size=(300, 20)) @ np.random.default_rng(5).normal(size=(20, 20))
    x -= x.mean(0)
    ours, shrink = ledoit_wolf_cov(x)
    theirs, their_shrink = ledoit_wolf(x, assume_centered=True)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-8)
    assert shrink == pytest.approx(their_shrink)


def test_tune_weights_drops_a_member_that_dilutes_the_ensemble() -> None:
    rng = np.random.default_rng(6)
    y = np.r_[np.zeros(500), np.ones(500)]
    parts = {"strong": y * 2.0 + rng.normal(size=1000), "noise": rng.normal(size=1000),
             "weak": y * 0.3 + rng.normal(size=1000)}
    equal = roc_auc_score(y, combine_scores(parts, dict.fromkeys(parts, 1.0), "zscore"))
    best_single = max(roc_auc_score(y, s) for s in parts.values())
    assert equal < best_single - 0.02  # the failure the tuning exists for
    weights, auc = tune_weights(parts, y)
    assert weights["noise"] == 0.0 and weights["strong"] == 1.0
    assert auc >= round(best_single, 4)
    assert auc == pytest.approx(roc_auc_score(y, combine_scores(parts, weights, "zscore")), abs=1e-4)


def test_tune_weights_errors() -> None:
    parts = {"a": np.arange(4.0)}
    with pytest.raises(ConfigError, match="both kinds"):
        tune_weights(parts, np.zeros(4))
    with pytest.raises(DimensionMismatchError, match="differ in length"):
        tune_weights(parts, np.array([0, 1, 0]))
    with pytest.raises(ConfigError, match="grid"):
        tune_weights(parts, np.array([0, 1, 0, 1]), grid=(0.0,))


@pytest.mark.parametrize("combine", ["zscore", "rank"])
def test_ensemble_tune_learns_on_validation_and_holds_on_test(combine: str, data: dict[str, np.ndarray]) -> None:
    # Energy on random logits knows nothing; tuned on one half, the ensemble must ignore it on the other.
    rng = np.random.default_rng(7)
    fake_logits = rng.normal(size=(len(data["x"]), 3))
    val = rng.permutation(len(data["x"]))[:300]
    test = np.setdiff1d(np.arange(len(data["x"])), val)
    ens = Ensemble(members=("knn", "energy"), combine=combine)
    ens.fit(data["bank"], data["labels"], logits=rng.normal(size=(len(data["bank"]), 3)))
    assert ens.validation_auroc_ is None
    equal = roc_auc_score(data["y"][test], ens.score(data["x"][test], logits=fake_logits[test]))
    ens.tune(data["x"][val], data["y"][val], logits=fake_logits[val])
    assert ens.weights == {"knn": 1.0, "energy": 0.0}
    assert ens.validation_auroc_ > 0.95
    parts = ens.score_parts(data["x"][test], logits=fake_logits[test])
    tuned = roc_auc_score(data["y"][test], parts["ensemble"])
    assert tuned == pytest.approx(roc_auc_score(data["y"][test], parts["knn"]))
    assert tuned > equal
