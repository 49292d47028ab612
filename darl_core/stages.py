"""Stage-specific pieces used by training.py: weight interpolation (wi), DPO preference pairs, and the
trainable-tensor snapshots that make resume exact.

WiSE-FT in weight space: θ(α) = (1 − α)·θ_lp + α·θ_ft. The lp backbone is the pretrained one, so
for a LoRA fine-tune θ_lp's adapter delta is zero and θ(α) is exactly the ft adapter with B scaled by
α (ΔW = α·B·A); for a full fine-tune every backbone tensor is interpolated. Heads interpolate linearly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from darl_core.config import StageConfig
from darl_core.errors import ConfigError, ModelError
from darl_core.losses import dpo_loss
from darl_core.metrics import evaluate
from darl_core.model import RelevanceModel, model_from_spec, score_pairs, trainable_state


def trainable_tensors(model: RelevanceModel, tuning: str) -> dict[str, dict[str, torch.Tensor]]:
    return {"backbone": trainable_state(model, tuning),
            "head": {k: v.detach().clone() for k, v in model.head.state_dict().items()}}


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


def interpolate(config: StageConfig, val, ft_dir: Path, emit: Callable) -> tuple[RelevanceModel, dict]:
    """Pick α on ``val`` (best macro-F1, ties to the lower ECE) and return the interpolated model."""
    lp_dir = lp_checkpoint_for(config, ft_dir)
    ft = torch.load(ft_dir / "model.pt", map_location="cpu", weights_only=True)
    lp = torch.load(lp_dir / "model.pt", map_location="cpu", weights_only=True)
    spec = ft["spec"]
    if lp["spec"]["num_grades"] != spec["num_grades"]:
        raise ModelError(f"lp ({lp_dir}) and ft ({ft_dir}) have different numbers of grades")
    model = model_from_spec(spec)
    base = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    lp_body = lp["backbone"]
    if ft["tuning"] == "lora" and any("lora_" in k for k in lp_body):
        raise ModelError(f"the lp checkpoint {lp_dir} has adapter weights; wi expects a frozen-backbone probe")

    def weights_at(alpha: float) -> None:
        body = {}
        for key, tensor in ft["backbone"].items():
            if "lora_B" in key and ft["tuning"] == "lora":
                body[key] = alpha * tensor
            elif "lora_" in key:
                body[key] = tensor
            else:
                start = lp_body.get(key, base[key])
                body[key] = (1 - alpha) * start + alpha * tensor
        model.backbone.load_state_dict(body, strict=False)
        model.head.load_state_dict({k: (1 - alpha) * lp["head"][k] + alpha * ft["head"][k] for k in ft["head"]})

    table = {}
    for i, alpha in enumerate(config.wi_alphas):
        weights_at(alpha)
        out = score_pairs(model, val.queries, val.items, batch_size=config.eval_batch_size,
                          max_length=config.max_length)
        m = evaluate(val.grades, out.probs)
        table[f"{alpha:g}"] = {"macro_f1": m["macro_f1"], "ece": m["ece"], "accuracy": m["accuracy"]}
        emit(i + 1, len(config.wi_alphas), 0.0, None, f"alpha {alpha:g}: val macro-F1 {m['macro_f1']:.4f}")
    best = max(config.wi_alphas, key=lambda a: (round(table[f"{a:g}"]["macro_f1"], 4), -table[f"{a:g}"]["ece"]))
    weights_at(best)
    model.eval()
    return model, {"alpha": best, "alphas": table, "lp_checkpoint": str(lp_dir), "tuning": ft["tuning"]}


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
    return dpo_loss(logits[sel], pairs["ref_logits"][rows][sel], pairs["chosen"][rows][sel], rejected[sel],
                    config.dpo_beta)
