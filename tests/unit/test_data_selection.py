"""Data selection before training (darl_core.data_selection): drop_suspects and LREF's hard_learnable."""

from __future__ import annotations

import numpy as np
import pytest

from darl_core.config import StageConfig
from darl_core.data_selection import (
    Selection,
    hard_learnable_rows,
    helper_predictions,
    query_balanced,
    select,
    summary,
)
from darl_core.errors import ConfigError


def _separable(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three grades far apart on axis 0 of 8-d features, 30 queries."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(scale=0.3, size=(n, 8))
    x[:, 0] += 3.0 * y
    return x, y, np.arange(n) % 30


def test_drop_suspects_drops_the_planted_mislabelled_pairs() -> None:
    x, y, groups = _separable()
    labels = y.copy()
    planted = [5, 100, 202]  # features say one grade, the label says the far one
    labels[planted] = 2 - y[planted] + (y[planted] == 1) * 1
    chosen = select("drop_suspects", x, labels, groups, 3, drop_share=0.01)
    assert len(chosen.rows) == 297
    assert not set(planted) & set(chosen.rows.tolist())
    assert chosen.method == "drop_suspects" and chosen.share == 0.01


def test_all_keeps_every_row_without_embeddings() -> None:
    chosen = select("all", None, np.array([0, 1, 2, 1]), np.array([0, 0, 1, 1]), 3)
    assert chosen.rows.tolist() == [0, 1, 2, 3]


def test_hard_learnable_keeps_exactly_wrong_then_right_plus_the_seeded_random_share() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    im = np.array([1, 1, 0, 2, 1, 2, 1, 0, 0, 0, 1, 1])  # wrong on 0, 2, 3, 6, 7, 8, 11
    ci = np.array([0, 0, 2, 0, 1, 1, 0, 1, 0, 0, 1, 2])  # right on 0, 2, 3, 4, 6, 7, 9, 10, 11
    hard_rows = [0, 2, 3, 6, 7, 11]
    rows, hard = hard_learnable_rows(labels, im, ci, 0.0, seed=0)
    assert rows.tolist() == hard_rows and np.flatnonzero(hard).tolist() == hard_rows
    assert hard_learnable_rows(labels, im, ci, 1.0, seed=0)[0].tolist() == list(range(12))
    half, _ = hard_learnable_rows(labels, im, ci, 0.5, seed=0)
    rest = sorted(set(half.tolist()) - set(hard_rows))
    assert set(hard_rows) <= set(half.tolist()) and len(rest) == 3  # half of the 6 others
    assert hard_learnable_rows(labels, im, ci, 0.5, seed=0)[0].tolist() == half.tolist()  # seeded
    others = {tuple(hard_learnable_rows(labels, im, ci, 0.5, seed=s)[0].tolist()) for s in range(8)}
    assert len(others) > 1  # the share of the rest is drawn at random


def test_select_hard_learnable_is_the_helpers_wrong_then_right_pairs_plus_the_share() -> None:
    rng = np.random.default_rng(2)
    x, y, groups = _separable(240, seed=1)
    labels = np.where(rng.random(240) < 0.25, rng.integers(0, 3, 240), y)  # noisy: the helpers disagree with some
    x[:, 0] += rng.normal(scale=1.5, size=240)  # overlapping grades, so a head is wrong on some pairs
    im, ci = helper_predictions(x, labels, groups, 3, seed=4)
    hard = np.flatnonzero((im != labels) & (ci == labels))
    assert 0 < len(hard) < 240
    chosen = select("hard_learnable", x, labels, groups, 3, rest_share=0.25, seed=4)
    assert set(hard.tolist()) <= set(chosen.rows.tolist())
    assert len(chosen.rows) == len(hard) + round(0.25 * (240 - len(hard)))
    assert chosen.detail["hard_learnable"] == len(hard)
    assert select("hard_learnable", x, labels, groups, 3, rest_share=0.25, seed=4).rows.tolist() == chosen.rows.tolist()


def test_query_balanced_takes_a_third_from_head_middle_and_tail_queries() -> None:
    # 3 head queries with 20 pairs each, 3 middle with 5, 3 tail with 1: a random sample would be mostly head.
    groups = np.repeat(np.arange(9), [20, 20, 20, 5, 5, 5, 1, 1, 1])
    rows = query_balanced(groups, 9, np.random.default_rng(0))
    assert len(rows) == 9 and len(set(rows.tolist())) == 9
    counts = np.bincount(np.searchsorted([3, 6], groups[rows], side="right"), minlength=3)
    assert counts.tolist() == [3, 3, 3]


def test_summary_counts_kept_and_dropped_per_grade() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    s = summary(Selection("drop_suspects", np.array([0, 2, 3, 5]), 0.3), labels, ["bad", "ok", "good"])
    assert s["selection_kept"] == 4 and s["selection_dropped"] == 2 and s["data_selection"] == "drop_suspects"
    assert s["selection_kept_per_grade"] == {"bad": 1, "ok": 2, "good": 1}
    assert s["selection_dropped_per_grade"] == {"bad": 1, "ok": 0, "good": 1}


@pytest.mark.parametrize(("changes", "words"), [
    ({"data_selection": "drop_all"}, "`data_selection` must be one of all, drop_suspects, hard_learnable"),
    ({"data_selection": "drop_suspects", "drop_share": 0.0}, "`drop_share` must be a share in (0, 1), got 0.0"),
    ({"drop_share": 1.5}, "got 1.5"),
    ({"rest_share": -0.1}, "`rest_share` must be a share in [0, 1], got -0.1"),
])
def test_stage_config_rejects_bad_selection_settings(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        StageConfig("ft", **changes)
    assert words in str(err.value)


def test_selection_is_refused_on_stages_that_do_not_train_on_the_training_pairs() -> None:
    with pytest.raises(ConfigError, match="applies to the stages that train on the project's training pairs"):
        StageConfig("dasa", data_selection="hard_learnable")
    assert StageConfig("lp", data_selection="drop_suspects").data_selection == "drop_suspects"
