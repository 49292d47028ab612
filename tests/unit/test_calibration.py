"""Temperature fitting (stages.fit_temperature): by NLL and by top-label ECE, on synthetic logits whose
true temperature is known."""

from __future__ import annotations

import numpy as np
import pytest

from darl_core.errors import ConfigError
from darl_core.metrics import ece
from darl_core.stages import fit_temperature


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
