"""Agreement statistics against published values and independent computations."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from itertools import permutations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from darl_core.agreement import accuracy, flag_rates, krippendorff_alpha, pairwise_qwk, qwk, throughput
from darl_core.errors import ConfigError

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units,
# values 1..5 (here 0..4), None = missing. Published: nominal .743, ordinal .815, interval .849.
_ = None
KRIPP = [
    [0, 1, 2, 2, 1, 0, 3, 0, 1, _, _, _],
    [0, 1, 2, 2, 1, 1, 3, 0, 1, 4, _, 2],
    [_, 2, 2, 2, 1, 2, 3, 1, 1, 4, 0, _],
    [0, 1, 2, 2, 1, 3, 3, 0, 1, 4, 0, _],
]
UNITS = [list(col) for col in zip(*KRIPP, strict=True)]


@pytest.mark.parametrize(("metric", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_matches_krippendorffs_worked_example(metric: str, published: float) -> None:
    assert krippendorff_alpha(UNITS, 5, metric) == pytest.approx(published, abs=5e-4)


def _alpha_by_pairs(units: list[list[int | None]], k: int) -> float:
    """Independent definition: 1 - D_o / D_e over all pairable value pairs (ordinal distance)."""
    pairable = [[v for v in u if v is not None] for u in units]
    pairable = [u for u in pairable if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n_c = np.bincount(values, minlength=k)

    def d(c: int, g: int) -> float:
        lo, hi = min(c, g), max(c, g)
        return float((n_c[lo:hi + 1].sum() - (n_c[lo] + n_c[hi]) / 2) ** 2)

    observed = sum(d(a, b) / (len(u) - 1) for u in pairable for a, b in permutations(u, 2)) / len(values)
    expected = sum(d(a, b) for a, b in permutations(values, 2)) / (len(values) * (len(values) - 1))
    return 1 - observed / expected


def test_alpha_ordinal_agrees_with_pairwise_definition_on_random_data() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 60)
    units = [[int(np.clip(t + rng.integers(-1, 2), 0, 3)) if rng.random() < 0.8 else None for _ in range(3)]
             for t in truth]
    assert krippendorff_alpha(units, 4) == pytest.approx(_alpha_by_pairs(units, 4), abs=1e-9)


def test_alpha_edge_cases() -> None:
    assert krippendorff_alpha([[1, 1], [2, 2], [0, 0]], 3) == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]], 3))  # no variation: undefined
    assert math.isnan(krippendorff_alpha([[1], [2, None]], 3))  # nothing pairable
    with pytest.raises(ConfigError):
        krippendorff_alpha([[0, 7]], 3)


def test_qwk_matches_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, 200)
    b = np.clip(a + rng.integers(-1, 2, 200), 0, 2)
    assert qwk(list(a), list(b), 3) == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    assert math.isnan(qwk([1, 1], [1, 1], 3))


def test_pairwise_qwk_uses_common_units_only() -> None:
    votes = {1: {"ann": 0, "bob": 0}, 2: {"ann": 2, "bob": 2, "cy": 1}, 3: {"ann": 1, "bob": 2}, 4: {"cy": 0}}
    result = {(p.rater_a, p.rater_b): p for p in pairwise_qwk(votes, 3)}
    assert result[("ann", "bob")].n == 3
    assert result[("ann", "bob")].kappa == pytest.approx(cohen_kappa_score([0, 2, 1], [0, 2, 2], weights="quadratic"))
    assert result[("ann", "cy")].n == 1 and math.isnan(result[("ann", "cy")].kappa)


def test_throughput_caps_breaks_and_accuracy() -> None:
    t0 = datetime(2026, 1, 1, 9)
    times = [t0, t0 + timedelta(seconds=10), t0 + timedelta(seconds=20), t0 + timedelta(hours=2)]
    per_hour, med = throughput(times, [10, 10, 10, 12])
    assert med == 10.0
    assert per_hour == pytest.approx(4 * 3600 / (10 + 10 + 300 + 10))  # the 2-hour gap counts as 5 min
    acc = accuracy({1: {"a": 2, "b": 1}, 2: {"a": 0}, 3: {"b": 2}}, {1: 2, 2: 0})
    assert acc == {"a": (2, 1.0), "b": (1, 0.0)}


def test_flag_rates() -> None:
    rates = flag_rates({"ann": [True, False, False, True], "bob": [False], "eve": []})
    assert rates["ann"] == (2, 0.5) and rates["bob"] == (0, 0.0)
    assert rates["eve"][0] == 0 and math.isnan(rates["eve"][1])
