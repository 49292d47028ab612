"""Known values and gradients of each loss term."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darl_core.config import LossConfig, StageConfig
from darl_core.errors import ConfigError
from darl_core.losses import (
    class_weights_for,
    cross_entropy,
    darl_loss,
    dpo_loss,
    entropy_penalty,
    ordinal_cost,
    overconfidence_penalty,
)


def test_cross_entropy_uniform_is_log_k():
    assert cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])).item() == pytest.approx(math.log(3))


def test_ordinal_cost_known_value_and_order():
    # uniform over 3 grades, true grade 2: (1 + 0.25 + 0) / 3
    assert ordinal_cost(torch.zeros(1, 3), torch.tensor([2])).item() == pytest.approx(1.25 / 3)
    strong = torch.tensor([2])
    on_irrelevant = ordinal_cost(torch.tensor([[10.0, 0.0, 0.0]]), strong).item()
    on_weak = ordinal_cost(torch.tensor([[0.0, 10.0, 0.0]]), strong).item()
    assert on_irrelevant == pytest.approx(4 * on_weak, rel=1e-3)  # power 2: twice the distance, 4x the cost
    assert ordinal_cost(torch.tensor([[0.0, 0.0, 10.0]]), strong).item() < 1e-3


def test_ordinal_cost_gradient_matches_finite_differences():
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 3, 1, 2, 3])
    assert torch.autograd.gradcheck(lambda z: ordinal_cost(z, target, 1.5), (logits,))


def test_overconfidence_penalty_values_and_gradient():
    conf90 = torch.tensor([[math.log(9.0 * 2), 0.0, 0.0]] * 4)  # p_max = 18/20 = 0.9
    wrong = torch.tensor([1, 1, 1, 1])
    right = torch.tensor([0, 0, 0, 0])
    assert overconfidence_penalty(conf90, wrong).item() == pytest.approx(0.9, abs=1e-6)
    assert overconfidence_penalty(conf90, right).item() == 0.0  # no more confident than accurate
    z = conf90.clone().requires_grad_(True)
    overconfidence_penalty(z, wrong).backward()
    assert z.grad[:, 0].gt(0).all()  # descent lowers the over-confident logit
    z2 = conf90.clone().requires_grad_(True)
    overconfidence_penalty(z2, right).backward()
    assert torch.count_nonzero(z2.grad) == 0


def test_entropy_penalty_uniform_is_minus_log_k():
    assert entropy_penalty(torch.zeros(2, 5)).item() == pytest.approx(-math.log(5))


def test_darl_loss_terms_switch_and_add():
    torch.manual_seed(0)
    z, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    plain, parts = darl_loss(z, y, LossConfig(class_weights=None))
    assert set(parts) == {"ce"} and plain.item() == pytest.approx(cross_entropy(z, y).item())
    cfg = LossConfig(class_weights=None, ordinal_weight=0.5, occ_weight=2.0)
    total, parts = darl_loss(z, y, cfg)
    expected = parts["ce"] + 0.5 * ordinal_cost(z, y).item() + 2.0 * overconfidence_penalty(z, y).item()
    assert total.item() == pytest.approx(expected, rel=1e-5)
    _, parts = darl_loss(z, y, LossConfig(class_weights=None, occ_weight=1.0, occ_form="entropy"))
    assert parts["occ"] == pytest.approx(entropy_penalty(z).item())


def test_dpo_loss_known_value_and_gradient_direction():
    z = torch.randn(3, 3, requires_grad=True)
    chosen, rejected = torch.tensor([0, 1, 2]), torch.tensor([2, 2, 0])
    loss = dpo_loss(z, z.detach().clone(), chosen, rejected, beta=0.5)
    assert loss.item() == pytest.approx(math.log(2))  # policy == reference: margin 0
    loss.backward()
    rows = torch.arange(3)
    assert (z.grad[rows, chosen] < 0).all() and (z.grad[rows, rejected] > 0).all()


def test_inverse_class_weights():
    w = class_weights_for(LossConfig(), np.array([0, 1, 1, 2]), 3)
    assert w.tolist() == pytest.approx([1.2, 0.6, 1.2])
    assert class_weights_for(LossConfig(class_weights=None), np.array([0]), 3) is None
    assert class_weights_for(LossConfig(class_weights=[3, 1, 1]), np.array([0]), 3).tolist() == [3, 1, 1]


@pytest.mark.parametrize("kwargs, word", [
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"occ_form": "focal"}, "occ_form"),
    ({"class_weights": "balanced"}, "class_weights"), ({"ordinal_weight": -1}, "ordinal_weight"),
])
def test_loss_config_rejects_bad_values(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        LossConfig(**kwargs)


def test_stage_config_validation_and_round_trip():
    with pytest.raises(ConfigError, match="'xx'"):
        StageConfig("xx")
    with pytest.raises(ConfigError, match="one weight per grade"):
        StageConfig("ft", num_grades=4, loss=LossConfig(class_weights=(3.0, 1.0, 1.0)))
    cfg = StageConfig("wi", wi_alphas=(0.0, 0.5), loss=LossConfig(ordinal_weight=1.0))
    assert StageConfig.from_dict(cfg.to_dict()) == cfg
    assert StageConfig("lp").tuning == "head"
