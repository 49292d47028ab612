"""Temperature fitting (stages.fit_temperature): by NLL and by top-label ECE, on synthetic logits whose
true temperature is known."""

from __future__ import annotations

import numpy as np
import pytest

from darl_core.errors import ConfigError
from darl_core.metrics import ece
from darl_core.posthoc import cross_fit_offsets
from darl_core.stages import fit_offsets, fit_temperature


def sample(n: int, true_t: float, seed: int, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and grades drawn from softmax(z / true_t); ``shift`` is then added to the logits the model
    reports, a per-grade distortion no temperature can undo."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.0, size=(n, 3))
    p = np.exp(z / true_t)
    p /= p.sum(1, keepdims=True)
    grades = (rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1)
    return (z + shift if shift is not None else z), grades


@pytest.mark.parametrize("by", ["nll", "ece"])
def test_recovers_a_known_temperature(by: str) -> None:
    z, y = sample(20_000, 2.0, 0)
    fit = fit_temperature(z, y, by)
    assert fit["calibrate_by"] == by
    assert fit["temperature"] == pytest.approx(2.0, rel=0.1 if by == "nll" else 0.2)
    assert fit["val_ece_after"] < 0.02 < fit["val_ece_before"]  # overconfident at T = 1
    assert fit["val_nll_after"] < fit["val_nll_before"]


def test_ece_objective_wins_on_ece_when_the_shape_is_off() -> None:
    # Spare mass on grade 0 (as a class-weighted loss leaves it): the NLL-best T trades top-grade
    # confidence for the rare grade's probability; the ECE-best T does not.
    z, y = sample(20_000, 1.0, 1, shift=np.array([2.0, 0.0, 0.0]))
    by_nll, by_ece = fit_temperature(z, y, "nll"), fit_temperature(z, y, "ece")
    assert by_ece["temperature"] != by_nll["temperature"]
    assert by_ece["val_ece_after"] < by_nll["val_ece_after"] - 0.005
    assert by_nll["val_nll_after"] <= by_ece["val_nll_after"]  # each objective wins its own game
    # The reported ECE is the ECE of the rescaled logits.
    t = by_ece["temperature"]
    p = np.exp(z / t - (z / t).max(1, keepdims=True))
    assert by_ece["val_ece_after"] == pytest.approx(ece(y, p / p.sum(1, keepdims=True)))


def test_unknown_objective_is_refused() -> None:
    z, y = sample(100, 1.0, 2)
    with pytest.raises(ConfigError, match="calibrate_by"):
        fit_temperature(z, y, "brier")


def shifted_sample(n: int, seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Grades 8 / 46 / 46 %, logits that favour the true grade, the rare grade 0 pushed down by ``shift``."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.08, 0.46, 0.46])
    z = rng.normal(0, 1, (n, 3))
    z[np.arange(n), y] += 1.5
    z[:, 0] -= shift
    return z, y


def macro_f1(z: np.ndarray, y: np.ndarray, offsets) -> float:  # noqa: ANN001
    from sklearn.metrics import f1_score
    return float(f1_score(y, (z + np.asarray(offsets)).argmax(1), average="macro"))


def test_offsets_raise_macro_f1_of_a_suppressed_rare_grade_and_hold_on_new_data() -> None:
    z, y = shifted_sample(3000, 0, shift=1.5)
    fit = fit_offsets(z, y)
    assert fit["offsets"][0] > 0.5  # the rare grade is lifted...
    assert fit["offsets"][1] == 0.0 or fit["offsets"][2] == 0.0  # ...against the most frequent one, fixed at 0
    assert fit["macro_f1_before"] == pytest.approx(macro_f1(z, y, [0, 0, 0]))  # agrees with scikit-learn
    assert fit["macro_f1_after"] == pytest.approx(macro_f1(z, y, fit["offsets"]))
    assert fit["macro_f1_after"] > fit["macro_f1_before"] + 0.03
    z2, y2 = shifted_sample(3000, 1, shift=1.5)  # fitted on one sample, better on another
    assert macro_f1(z2, y2, fit["offsets"]) > macro_f1(z2, y2, [0, 0, 0]) + 0.02


def test_offsets_leave_argmax_alone_when_nothing_is_to_gain() -> None:
    y = np.arange(300) % 3
    assert fit_offsets(np.eye(3)[y] * 4.0, y)["offsets"] == [0.0, 0.0, 0.0]  # already perfect
    z = np.random.default_rng(2).normal(0, 1, (300, 3))  # pure noise: no move clears min_gain reliably...
    fit = fit_offsets(z, y, min_gain=1.0)  # ...and with an unreachable min_gain none is taken
    assert fit["offsets"] == [0.0, 0.0, 0.0] and fit["macro_f1_after"] == fit["macro_f1_before"]


def test_offsets_work_for_five_grades() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice(5, size=4000, p=[0.05, 0.1, 0.25, 0.3, 0.3])
    z = rng.normal(0, 1, (4000, 5))
    z[np.arange(4000), y] += 1.5
    z[:, :2] -= 1.0  # the two rare grades suppressed (argmax under-predicts them)
    fit = fit_offsets(z, y)
    assert len(fit["offsets"]) == 5 and fit["offsets"][int(np.bincount(y).argmax())] == 0.0
    assert fit["macro_f1_after"] > fit["macro_f1_before"] + 0.015
    assert fit["macro_f1_after"] == pytest.approx(macro_f1(z, y, fit["offsets"]))


def test_cross_fit_keeps_a_rule_that_holds_out_of_fold_and_drops_one_that_does_not() -> None:
    z, y = shifted_sample(3000, 0, shift=1.5)
    kept = cross_fit_offsets(z, y)
    assert kept["kept"] and kept["offsets"] == fit_offsets(z, y)["offsets"]
    assert kept["macro_f1_before"] < kept["cv_macro_f1"] <= kept["macro_f1_after"] + 0.01
    # Balanced labels unrelated to the logits: argmax already predicts each grade a third of the time, the
    # best a blind rule can do (with skewed labels, matching the label shares would be a real gain).
    # The in-sample fit still "gains" by fitting the noise; out of fold it does not.
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 1, (600, 3))
    labels = np.arange(600) % 3
    in_sample = fit_offsets(noise, labels)
    assert in_sample["macro_f1_after"] > in_sample["macro_f1_before"]
    dropped = cross_fit_offsets(noise, labels)
    assert not dropped["kept"] and dropped["offsets"] == [0.0, 0.0, 0.0]
    assert dropped["macro_f1_after"] == dropped["macro_f1_before"]


def blend_sample(n: int, seed: int, signal: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits that carry half the truth and a cosine that carries the rest (``signal`` 0: pure noise)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.2, 0.4, 0.4])
    cos = rng.normal(size=n) + signal * (y - 1.0)
    z = rng.normal(size=(n, 3)) + 1.0 * np.eye(3)[y]
    return z, cos, y


def test_blend_recovers_a_cosine_that_carries_the_grade_and_lowers_held_out_nll() -> None:
    from darl_core.posthoc import cross_fit_blend
    from darl_core.stages import blend_nll, fit_blend

    z, cos, y = blend_sample(3000, 0, signal=1.5)
    fit = cross_fit_blend(z, cos, y)
    assert fit["kept"] and fit["cv_nll"] < fit["nll_before"] and fit["nll_after"] < fit["nll_before"]
    w = fit["weight"]
    assert w[0] < w[1] < w[2]  # a higher cosine means a higher grade
    z2, cos2, y2 = blend_sample(3000, 1, signal=1.5)  # and it holds on a second sample
    identity = {"scale": 1.0, "weight": [0.0] * 3, "bias": [0.0] * 3}
    assert blend_nll(z2, cos2, y2, fit) < blend_nll(z2, cos2, y2, identity) - 0.05
    # A useless cosine gets (almost) no weight: the fit does not invent a signal.
    noise = fit_blend(*blend_sample(3000, 2, signal=0.0))
    assert max(abs(v) for v in noise["weight"]) < 0.1


def test_blend_is_dropped_when_it_does_not_win_out_of_fold() -> None:
    from darl_core.posthoc import cross_fit_blend

    # Perfectly calibrated logits and a noise cosine, few pairs: nothing to learn, the identity stays.
    rng = np.random.default_rng(3)
    z = rng.normal(size=(60, 3)) * 2.0
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    fit = cross_fit_blend(z, rng.normal(size=60), y)
    assert not fit["kept"] and fit["weight"] == [0.0] * 3 and fit["scale"] == 1.0
    assert fit["nll_after"] == fit["nll_before"] and fit["cv_nll"] >= fit["nll_before"]
