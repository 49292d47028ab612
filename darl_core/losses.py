r"""Cross-entropy baselines, the DaRL loss terms and the DPO loss on the grade distribution.

The DaRL loss (each term switchable and weighted from ``LossConfig``), for logits z over K ordered
grades, p = softmax(z), true grade y and class weights w:

    L = CE_w(z, y)                                         (weighted cross-entropy)
      + λ_ord · mean_i Σ_k p_ik · (|k − y_i| / (K − 1))^γ  (ordinal: expected grade distance)
      + λ_occ · max(0, mean_i max_k p_ik − mean_i 1[argmax_k p_ik = y_i])   (over-confidence, "dca")

Why: the ordinal term is the expected cost of a prediction under a distance that grows with the
number of grades skipped, so putting mass on "irrelevant" for a "strong" pair costs 2^γ times more
than on "weak" (plain CE treats both as equally wrong). The over-confidence term (a hinge on the
difference between confidence and accuracy, cf. DCA, Liang et al. 2020) is zero while the model is
no more confident than it is accurate on the batch and pushes confidence down only beyond that, so
it targets the fine-tuned over-confidence DaRL describes without flattening every prediction
(unlike a plain entropy bonus, available as ``occ_form="entropy"`` for comparison).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from darl_core.config import LossConfig


def class_weights_for(config: LossConfig, grades: np.ndarray, num_grades: int) -> torch.Tensor | None:
    """Resolve ``config.class_weights`` to a tensor (inverse frequency normalised to mean 1)."""
    cw = config.class_weights
    if cw is None:
        return None
    if cw == "inverse":
        counts = np.bincount(np.asarray(grades, dtype=np.int64), minlength=num_grades).astype(np.float64)
        inv = 1.0 / np.maximum(counts, 1.0)
        inv[counts == 0] = 0.0  # a grade absent from training gets no weight rather than infinite weight
        weights = inv / inv[inv > 0].mean()
        return torch.tensor(weights, dtype=torch.float32)
    return torch.tensor(cw, dtype=torch.float32)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """(Weighted) cross-entropy, weighted mean over the batch as in ``F.cross_entropy``."""
    return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)


def ordinal_cost(logits: torch.Tensor, target: torch.Tensor, power: float = 2.0) -> torch.Tensor:
    """Mean expected grade distance Σ_k p_k (|k − y| / (K − 1))^power."""
    k = logits.shape[1]
    grades = torch.arange(k, device=logits.device, dtype=logits.dtype)
    dist = ((grades.unsqueeze(0) - target.unsqueeze(1).to(logits.dtype)).abs() / max(k - 1, 1)) ** power
    return (logits.softmax(dim=1) * dist).sum(dim=1).mean()


def overconfidence_penalty(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """max(0, mean confidence − accuracy) over the batch; the gradient flows through confidence."""
    probs = logits.softmax(dim=1)
    conf, pred = probs.max(dim=1)
    acc = (pred == target).to(logits.dtype).mean()
    return F.relu(conf.mean() - acc)


def entropy_penalty(logits: torch.Tensor) -> torch.Tensor:
    """Negative mean entropy (the confidence penalty of Pereyra et al. 2017)."""
    logp = logits.log_softmax(dim=1)
    return (logp.exp() * logp).sum(dim=1).mean()


def darl_loss(logits: torch.Tensor, target: torch.Tensor, config: LossConfig,
              weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured loss and its parts (floats, for logging). See the module docstring."""
    ce = cross_entropy(logits, target, weight, config.label_smoothing)
    total = ce
    parts = {"ce": float(ce.detach())}
    if config.ordinal_weight > 0:
        ordinal = ordinal_cost(logits, target, config.ordinal_power)
        total = total + config.ordinal_weight * ordinal
        parts["ordinal"] = float(ordinal.detach())
    if config.occ_weight > 0:
        occ = overconfidence_penalty(logits, target) if config.occ_form == "dca" else entropy_penalty(logits)
        total = total + config.occ_weight * occ
        parts["occ"] = float(occ.detach())
    return total, parts


def dpo_loss(logits: torch.Tensor, ref_logits: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor,
             beta: float) -> torch.Tensor:
    """DPO on the grade distribution: −log σ(β[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])."""
    logp = logits.log_softmax(dim=1)
    ref = ref_logits.log_softmax(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    margin = (logp[rows, chosen] - ref[rows, chosen]) - (logp[rows, rejected] - ref[rows, rejected])
    return -F.logsigmoid(beta * margin).mean()
