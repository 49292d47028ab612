"""Stage-specific pieces used by training.py: weight interpolation (wi), DPO preference pairs, and the
trainable-tensor snapshots that make resume exact.

WiSE-FT in weight space: θ(α) = (1 − α)·θ_lp + α·θ_ft. When the lp backbone is the pretrained one,
θ_lp's adapter delta is zero for a LoRA fine-tune and θ(α) is exactly the ft adapter with B scaled by
α (ΔW = α·B·A); for a full fine-tune, or an lp endpoint whose own backbone was tuned, every backbone
tensor is interpolated (``blender`` reads what the lp file lacks from the lp model itself). Heads
interpolate linearly. The dpo strength pick interpolates the same way from its reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from darl_core.config import CALIBRATE_BY, StageConfig
from darl_core.errors import ConfigError, ModelError
from darl_core.losses import dpo_loss
from darl_core.metrics import ece, macro_f1
from darl_core.model import (
    RelevanceModel,
    add_lora,
    model_from_spec,
    model_from_weights,
    saved_tuning,
    score_pairs,
    trainable_state,
)


def trainable_tensors(model: RelevanceModel, tuning: str) -> dict[str, dict[str, torch.Tensor]]:
    return {"backbone": trainable_state(model, tuning),
            "head": {k: v.detach().cpu().clone() for k, v in model.head.state_dict().items()}}


def load_trainable(model: RelevanceModel, state: dict) -> None:
    model.head.load_state_dict(state["head"])
    if state["backbone"]:
        model.backbone.load_state_dict(state["backbone"], strict=False)


def lp_checkpoint_for(config: StageConfig, ft_dir: Path) -> Path:
    """The lp endpoint: ``config.wi_lp_checkpoint`` or the parent recorded by the ft stage."""
    if config.wi_lp_checkpoint:
        return Path(config.wi_lp_checkpoint)
    record = json.loads((ft_dir / "config.json").read_text())
    if not record.get("parent"):
        raise ConfigError(f"the ft checkpoint {ft_dir} records no lp parent; set wi_lp_checkpoint")
    return Path(record["parent"])


def wi_endpoints(config: StageConfig, ft_dir: Path) -> tuple[RelevanceModel, Callable[[float], None], dict]:
    """The model, ``weights_at(α)`` between the lp endpoint and the ft checkpoint (α = 1 is ft), and what
    the stage records (the lp checkpoint, the tuning). α is picked by ``posthoc.decide``."""
    lp_dir = lp_checkpoint_for(config, ft_dir)
    ft = torch.load(ft_dir / "model.pt", map_location="cpu", weights_only=True)
    lp = torch.load(lp_dir / "model.pt", map_location="cpu", weights_only=True)
    spec = ft["spec"]
    if lp["spec"]["num_grades"] != spec["num_grades"]:
        raise ModelError(f"lp ({lp_dir}) and ft ({ft_dir}) have different numbers of grades")
    model = model_from_spec(spec)
    if ft["tuning"] == "lora" and any("lora_" in k for k in lp["backbone"]):
        raise ModelError(f"the lp checkpoint {lp_dir} has adapter weights; wi expects a frozen-backbone probe")
    model.base_tuned = ft["tuning"] == "full"
    model.max_length = config.max_length
    model.eval()
    return model, blender(model, lp, ft, lp_dir), {"lp_checkpoint": str(lp_dir), "tuning": ft["tuning"]}


def blender(model: RelevanceModel, start: dict, end: dict, start_dir: Path) -> Callable[[float], None]:
    """``weights_at(α)`` loads θ(α) = (1 − α)·θ_start + α·θ_end (saved weight dicts) into ``model``.

    A backbone tensor the start's file does not carry (it tuned less than the end did) is read from the
    start model itself, rebuilt from ``start_dir`` and named as in ``model`` (a plain backbone under
    peft's wrapper names): so α = 0 is always the start model, whatever its lineage tuned. LoRA tensors
    the start lacks: a ``B`` is zero (no adapter means ΔW = 0, so B scales with α) and an ``A`` is the
    end's (it only matters through B).
    """
    start_body = dict(start["backbone"])
    if any(k not in start_body and "lora_" not in k for k in end["backbone"]):
        start_body = {**endpoint_backbone(start_dir, model), **start_body}

    def weights_at(alpha: float) -> None:
        body = {}
        for key, tensor in end["backbone"].items():
            if key in start_body:
                origin = start_body[key]
            elif "lora_B" in key:
                origin = torch.zeros_like(tensor)
            elif "lora_" in key:
                origin = tensor
            else:  # endpoint_backbone covers every non-adapter tensor of the model or raised
                raise ModelError(f"no start value for {key}")
            body[key] = (1 - alpha) * origin + alpha * tensor
        model.backbone.load_state_dict(body, strict=False)
        model.head.load_state_dict({k: (1 - alpha) * start["head"][k] + alpha * end["head"][k] for k in end["head"]})

    return weights_at


def endpoint_backbone(ckpt_dir: Path, like: RelevanceModel) -> dict[str, torch.Tensor]:
    """Every non-adapter backbone tensor of the checkpoint in ``ckpt_dir``, under ``like``'s names: the
    checkpoint's model is rebuilt and, when ``like`` has LoRA adapters and it has none, wrapped the same
    way (adapters dropped again: they are not the checkpoint's)."""
    other = model_from_weights(Path(ckpt_dir) / "model.pt")
    if like.lora is not None and other.lora is None:
        add_lora(other, like.lora)
    state = {k: v.detach().cpu().clone() for k, v in other.backbone.state_dict().items() if "lora_" not in k}
    mine = {k for k in like.backbone.state_dict() if "lora_" not in k}
    if set(state) != mine:
        raise ModelError(f"the checkpoint {ckpt_dir} is not the same architecture as this model "
                         f"(e.g. {sorted(set(state) ^ mine)[:2]}): its weights cannot be interpolated with it")
    return state


def dpo_blender(ref_dir: Path, model: RelevanceModel) -> Callable[[float], None]:
    """``weights_at(α)``: θ(α) = (1 − α)·θ_ref + α·θ_dpo, from the reference in ``ref_dir`` to the weights
    DPO just trained into ``model``.

    DPO on a small grade head overshoots easily: it removes the optimistic bias and then keeps pushing
    predictions down. α = 0 is the reference itself; ``posthoc.decide`` picks the lowest over-recall among
    the α whose macro-F1 is not below the reference's, on validation and on the held-out new labels
    (``dpo_holdout``: mostly the shifted pairs DASA picked, so the pick cannot buy ID macro-F1 with OOD
    macro-F1), cross-fitted over query folds. A single value in ``dpo_alphas`` is used as it is.
    """
    ref = torch.load(Path(ref_dir) / "model.pt", map_location="cpu", weights_only=True)
    return blender(model, ref, trainable_tensors(model, saved_tuning(model, ref["tuning"])), Path(ref_dir))


def dpo_candidates(config: StageConfig) -> list[float]:
    """The strengths scored: the one given, or the grid with 0 (the reference) added."""
    if len(config.dpo_alphas) == 1:
        return [config.dpo_alphas[0]]
    return sorted(set(config.dpo_alphas) | {0.0})


def fit_temperature(logits: np.ndarray, grades: np.ndarray, by: str = "nll") -> dict[str, float]:
    """The temperature T for softmax(logits / T), from a log-spaced grid over [0.25, 8].

    ``by="nll"`` (Guo et al. 2017): the T that minimises the NLL. ``"ece"``: the T that minimises the
    top-label ECE (15 bins), ties to the T nearest the NLL one. NLL calibrates the whole grade
    distribution; ECE only the confidence of the predicted grade, which is what annotators and the Gap
    page see. They differ when the distribution's shape is off, e.g. when a class-weighted or DPO stage
    leaves spare mass on the rare grade: the NLL-best T then leaves the top grade underconfident.
    """
    if by not in CALIBRATE_BY:
        raise ConfigError(f"calibrate_by must be one of {CALIBRATE_BY}, got {by!r}")
    # numpy, not torch: the post-hoc guards fit this in every fold, and torch's per-call overhead on small
    # tensors (milliseconds under thread contention) dominated their cost
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(grades, dtype=np.int64)
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 161))
    nll, eces = np.empty(len(grid)), np.empty(len(grid))
    for i, t in enumerate(grid):
        zt = z / t
        zt = zt - zt.max(axis=1, keepdims=True)
        logp = zt - np.log(np.exp(zt).sum(axis=1, keepdims=True))
        nll[i] = -logp[np.arange(len(y)), y].mean()
        eces[i] = ece(y, np.exp(logp))
    at_one, by_nll = int(np.argmin(np.abs(grid - 1.0))), int(nll.argmin())
    pick = by_nll
    if by == "ece":  # the ECE both are reported with; the pick among ECE ties is the one nearest the NLL T
        ties = np.flatnonzero(eces <= eces.min() + 1e-12)
        pick = int(ties[np.argmin(np.abs(ties - by_nll))])
    return {"temperature": float(grid[pick]), "calibrate_by": by,
            "val_nll_before": float(nll[at_one]), "val_nll_after": float(nll[pick]),
            "val_ece_before": float(eces[at_one]), "val_ece_after": float(eces[pick])}


def fit_blend(logits: np.ndarray, cos: np.ndarray, grades: np.ndarray, l2: float = 1e-3) -> dict:
    """``scale, weight[K], bias[K]`` minimising the NLL of ``softmax(scale * logits + weight * cos + bias)``
    (float64 L-BFGS from the identity; a small L2 pull on weight and bias towards 0 fixes the bias's
    free shift and keeps a useless ``cos`` near weight 0)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    c = torch.as_tensor(np.asarray(cos), dtype=torch.float64)[:, None]
    y = torch.as_tensor(np.asarray(grades), dtype=torch.long)
    k = z.shape[1]
    scale = torch.ones((), dtype=torch.float64, requires_grad=True)
    weight = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([scale, weight, bias], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():  # noqa: ANN202
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(scale * z + c * weight + bias, y) + \
            l2 * (weight.square().sum() + bias.square().sum())
        loss.backward()
        return loss
    opt.step(closure)
    return {"scale": float(scale.detach()), "weight": weight.detach().tolist(), "bias": bias.detach().tolist()}


def blend_nll(logits: np.ndarray, cos: np.ndarray, grades: np.ndarray, fit: dict) -> float:
    z = np.asarray(fit["scale"]) * logits + np.asarray(cos)[:, None] * np.asarray(fit["weight"]) + np.asarray(fit["bias"])
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(grades)), grades].mean())


def fit_offsets(logits: np.ndarray, grades: np.ndarray, *, levels: int = 400, sweeps: int = 3,
                min_gain: float = 0.002) -> dict:
    """Per-grade additive logit offsets that maximise macro-F1 on labelled ``logits`` / ``grades``.

    Argmax is the accuracy-optimal decision; macro-F1 weighs a rare grade's F1 as much as a common one's,
    and its optimal rule predicts a rare grade more often than argmax does (Lipton et al. 2014: the
    F1-optimal threshold of a calibrated score is half the F1 it reaches). The rule here is
    argmax(logits + o), found by coordinate ascent: for grade g the candidates are the offsets at which
    pairs switch to or from g (``levels`` quantiles of each pair's margin to its best other grade, so
    the search needs no scale), ``sweeps`` rounds, the most frequent grade's offset fixed at 0 (only
    differences matter). Each move must gain at least ``min_gain`` macro-F1 and among equal scores the
    offset nearest 0 wins, so a flat or noisy objective leaves argmax alone.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(grades, dtype=np.int64)
    k = z.shape[1]

    def score(o: np.ndarray) -> float:
        return macro_f1(y, (z + o).argmax(axis=1), k)

    offsets = np.zeros(k)
    anchor = int(np.bincount(y, minlength=k).argmax())
    before = best = score(offsets)
    for _ in range(sweeps):
        moved = False
        for g in range(k):
            if g == anchor:
                continue
            shifted = z + offsets
            margin = np.delete(shifted, g, axis=1).max(axis=1) - z[:, g]  # g wins where its offset > margin
            cuts = np.unique(np.quantile(margin, np.linspace(0, 1, levels + 1)))
            eps = 1e-6 * max(1.0, float(np.abs(cuts).max()))
            grid = np.unique(np.concatenate([[0.0], cuts + eps, cuts - eps]))
            grid = grid[np.argsort(np.abs(grid), kind="stable")]  # ties go to the value nearest 0
            trial, scores = offsets.copy(), []
            for v in grid:
                trial[g] = v
                scores.append(score(trial))
            i = int(np.argmax(scores))  # first maximum: the nearest 0 among ties
            if scores[i] >= best + min_gain and grid[i] != offsets[g]:
                offsets[g], best, moved = float(grid[i]), scores[i], True
        if not moved:
            break
    return {"offsets": [float(v) for v in offsets], "macro_f1_before": before, "macro_f1_after": best}


def dpo_pairs(model: RelevanceModel, data, config: StageConfig, out_dir: Path) -> dict[str, torch.Tensor]:
    """Reference logits of the (still untrained) parent and one preference pair per chosen example.

    chosen = the true grade; rejected = the reference's prediction where it is above the true grade
    (``dpo_pairs="over"``: the optimistic errors LREF de-biases) or wrong at all (``"wrong"``); -1 = none.
    """
    cache = out_dir / "ref_logits.npy"
    if not cache.is_file():
        out = score_pairs(model, data.queries, data.items, batch_size=config.eval_batch_size,
                          max_length=config.max_length)
        np.save(cache, out.logits)
    ref = np.load(cache)
    pred = ref.argmax(axis=1)
    wrong = pred > data.grades if config.dpo_pairs == "over" else pred != data.grades
    rejected = np.where(wrong, pred, -1)
    return {"ref_logits": torch.from_numpy(ref), "chosen": torch.as_tensor(data.grades),
            "rejected": torch.as_tensor(rejected)}


def batch_dpo_loss(logits: torch.Tensor, pairs: dict, rows, config: StageConfig) -> torch.Tensor:
    rows = torch.as_tensor(rows)
    rejected = pairs["rejected"][rows]
    sel = rejected >= 0
    if not bool(sel.any()):
        return logits.sum() * 0.0
    dev = logits.device
    return dpo_loss(logits[sel.to(dev)], pairs["ref_logits"][rows][sel].to(dev), pairs["chosen"][rows][sel].to(dev),
                    rejected[sel].to(dev), config.dpo_beta)
