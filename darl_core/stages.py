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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from darl_core.config import CALIBRATE_BY, StageConfig
from darl_core.errors import ConfigError, ModelError
from darl_core.losses import dpo_loss
from darl_core.metrics import ece, evaluate, macro_f1
from darl_core.model import (
    RelevanceModel,
    ZeroShotBlend,
    add_lora,
    model_from_spec,
    model_from_weights,
    saved_tuning,
    score_pairs,
    trainable_state,
    zero_shot_similarity,
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


def interpolate(config: StageConfig, val, ft_dir: Path, emit: Callable) -> tuple[RelevanceModel, dict]:
    """Pick α on ``val`` (best macro-F1, ties to the lower ECE) and return the interpolated model."""
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
    weights_at = blender(model, lp, ft, lp_dir)
    table = {}
    for i, alpha in enumerate(config.wi_alphas):
        weights_at(alpha)
        table[f"{alpha:g}"] = _val_scores(model, val, config)
        emit(i + 1, len(config.wi_alphas), 0.0, None,
             f"alpha {alpha:g}: val macro-F1 {table[f'{alpha:g}']['macro_f1']:.4f}")
    best = max(config.wi_alphas, key=lambda a: (round(table[f"{a:g}"]["macro_f1"], 4), -table[f"{a:g}"]["ece"]))
    weights_at(best)
    model.eval()
    return model, {"alpha": best, "alphas": table, "lp_checkpoint": str(lp_dir), "tuning": ft["tuning"]}


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


def _val_scores(model: RelevanceModel, val, config: StageConfig) -> dict[str, float]:
    out = score_pairs(model, val.queries, val.items, batch_size=config.eval_batch_size, max_length=config.max_length)
    m = evaluate(val.grades, out.probs)
    return {"macro_f1": m["macro_f1"], "ece": m["ece"], "accuracy": m["accuracy"], "over_recall": m["over_recall"]}


def dpo_strength(config: StageConfig, val, ref_dir: Path, model: RelevanceModel,
                 emit: Callable, holdout=None) -> tuple[RelevanceModel, dict]:  # noqa: ANN001
    """Pick how far to move from the reference towards the DPO-trained weights, on ``val``.

    DPO on a small grade head overshoots easily: it removes the optimistic bias and then keeps
    pushing predictions down. θ(α) = (1 − α)·θ_ref + α·θ_dpo for α in ``dpo_alphas``; α = 0 is the
    reference itself. The pick is the lowest over-recall among the α whose val macro-F1 is not below
    the reference's (ties to the higher macro-F1), so the stage never trades macro-F1 for de-biasing.
    ``holdout`` (new labels kept out of training, ``dpo_holdout``): its macro-F1 must not fall below the
    reference's either. val is in-distribution; the new labels are mostly the shifted pairs DASA
    picked, so this keeps the pick from buying ID macro-F1 with OOD macro-F1.
    A single value in ``dpo_alphas`` is used as it is.
    """
    ref = torch.load(Path(ref_dir) / "model.pt", map_location="cpu", weights_only=True)
    weights_at = blender(model, ref, trainable_tensors(model, saved_tuning(model, ref["tuning"])), Path(ref_dir))
    if len(config.dpo_alphas) == 1:  # an explicit strength: no search
        weights_at(config.dpo_alphas[0])
        model.eval()
        return model, {"dpo_alpha": config.dpo_alphas[0], "dpo_alphas": {}}
    alphas = sorted(set(config.dpo_alphas) | {0.0})
    table, held = {}, {}
    for i, alpha in enumerate(alphas):
        weights_at(alpha)
        table[f"{alpha:g}"] = m = _val_scores(model, val, config)
        note = ""
        if holdout is not None and len(holdout):
            held[f"{alpha:g}"] = h = _val_scores(model, holdout, config)
            note = f"; held-out new labels macro-F1 {h['macro_f1']:.4f}"
        emit(i + 1, len(alphas), 0.0, None,
             f"dpo alpha {alpha:g}: val macro-F1 {m['macro_f1']:.4f}, over-recall {m['over_recall']:.4f}{note}")

    def kept(a: float, scores: dict) -> bool:
        return not scores or round(scores[f"{a:g}"]["macro_f1"], 4) >= round(scores["0"]["macro_f1"], 4)
    ok = [a for a in alphas if kept(a, table) and kept(a, held)]
    best = min(ok, key=lambda a: (round(table[f"{a:g}"]["over_recall"], 4), -table[f"{a:g}"]["macro_f1"]))
    weights_at(best)
    model.eval()
    return model, {"dpo_alpha": best, "dpo_alphas": table, **({"dpo_alphas_holdout": held} if held else {})}


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
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    target = torch.as_tensor(np.asarray(grades), dtype=torch.long)
    grid = torch.exp(torch.linspace(np.log(0.25), np.log(8.0), 161, dtype=torch.float64))
    nll = torch.stack([torch.nn.functional.cross_entropy(z / t, target) for t in grid]).numpy()
    eces = np.array([ece(target.numpy(), torch.softmax(z / t, dim=1).numpy()) for t in grid])
    at_one, by_nll = int(torch.argmin(torch.abs(grid - 1.0))), int(nll.argmin())
    pick = by_nll
    if by == "ece":  # the ECE both are reported with; the pick among ECE ties is the one nearest the NLL T
        ties = np.flatnonzero(eces <= eces.min() + 1e-12)
        pick = int(ties[np.argmin(np.abs(ties - by_nll))])
    return {"temperature": float(grid[pick]), "calibrate_by": by,
            "val_nll_before": float(nll[at_one]), "val_nll_after": float(nll[pick]),
            "val_ece_before": float(eces[at_one]), "val_ece_after": float(eces[pick])}


def fold_splits(n: int, parts: int, seed) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # noqa: ANN001
    """(held-out rows, the other rows) for each of ``parts`` folds of a seeded permutation of ``n`` rows:
    the cross-fitting guards of the blend and the decision offsets."""
    for part in np.array_split(np.random.default_rng(seed).permutation(n), parts):
        yield part, np.setdiff1d(np.arange(n), part)


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


def cross_fit_blend(logits: np.ndarray, cos: np.ndarray, grades: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """``fit_blend`` on all rows, kept only when its out-of-fold NLL (each fold scored by a blend fitted on
    the others) beats the plain logits' NLL; else the identity (``kept`` False)."""
    y = np.asarray(grades)
    k = np.asarray(logits).shape[1]
    identity = {"scale": 1.0, "weight": [0.0] * k, "bias": [0.0] * k}
    before = blend_nll(logits, cos, y, identity)
    total = 0.0
    for part, rest in fold_splits(len(y), min(folds, len(y)), seed):
        total += blend_nll(logits[part], cos[part], y[part], fit_blend(logits[rest], cos[rest], y[rest])) * len(part)
    cv = total / len(y)
    full = fit_blend(logits, cos, y)
    keep = cv < before
    return {**(full if keep else identity), "kept": bool(keep), "nll_before": before, "cv_nll": cv,
            "nll_after": blend_nll(logits, cos, y, full) if keep else before}


def apply_zero_shot_blend(model: RelevanceModel, sets: list, config: StageConfig) -> dict:
    """Fit the zero-shot blend on the labelled ``sets`` (val, and the held-out new labels when there are
    any) and attach it to ``model``, when the cross-fitted NLL says the pretrained similarity helps.

    Why: the stages fine-tune a pair encoder on in-distribution labels, and the pretrained backbone's
    own query-item similarity (a sentence-embedding model's purpose) is lost on the way; on Home Depot
    that similarity alone ranks ``irrelevant`` pairs of the unseen departments better (AUROC 0.80) than
    the fine-tuned models do (0.70-0.78). Kept as a feature, it is the part of the prediction that did
    not learn the training departments (cf. WiSE-FT's output ensemble with the zero-shot model)."""
    model.blend = model.output = None
    logits, cos, grades = [], [], []
    for data in sets:
        if data is None or not len(data):
            continue
        logits.append(score_pairs(model, data.queries, data.items, batch_size=config.eval_batch_size,
                                  max_length=config.max_length).logits)
        cos.append(zero_shot_similarity(model, data.queries, data.items, batch_size=config.eval_batch_size,
                                        max_length=config.max_length))
        grades.append(np.asarray(data.grades))
    fit = cross_fit_blend(np.concatenate(logits), np.concatenate(cos), np.concatenate(grades), seed=config.seed)
    if fit["kept"]:
        blend = ZeroShotBlend(model.num_grades).to(model.device)
        with torch.no_grad():
            blend.scale.fill_(fit["scale"])
            blend.weight.copy_(torch.as_tensor(fit["weight"]))
            blend.bias.copy_(torch.as_tensor(fit["bias"]))
        model.blend = blend
    return {"zero_shot_kept": fit["kept"], "zero_shot_scale": fit["scale"], "zero_shot_weight": fit["weight"],
            "zero_shot_bias": fit["bias"], "zero_shot_nll_before": fit["nll_before"],
            "zero_shot_nll_after": fit["nll_after"], "zero_shot_cv_nll": fit["cv_nll"],
            "zero_shot_pairs": int(sum(len(g) for g in grades))}


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


def cross_fit_offsets(logits: np.ndarray, grades: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """``fit_offsets`` with a guard: the rule is kept only if it also wins on pairs it was not fitted on.

    The fit's own macro-F1 gain is optimistic (it is measured where it was chosen). Here each of ``folds``
    parts is predicted with offsets fitted on the others; if the macro-F1 of those cross-fitted
    predictions does not beat argmax's, the offsets are all 0 (argmax kept), else the fit on all pairs.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(grades, dtype=np.int64)
    k = z.shape[1]
    full = fit_offsets(z, y)
    pred = z.argmax(axis=1)
    for part, rest in fold_splits(len(y), max(2, folds), [seed, 17]):
        pred[part] = (z[part] + np.asarray(fit_offsets(z[rest], y[rest])["offsets"])).argmax(axis=1)
    cv = macro_f1(y, pred, k)
    keep = cv > full["macro_f1_before"]
    return {**full, "offsets": full["offsets"] if keep else [0.0] * k,
            "macro_f1_after": full["macro_f1_after"] if keep else full["macro_f1_before"],
            "cv_macro_f1": cv, "kept": bool(keep)}


def apply_offsets(model: RelevanceModel, sets: list, config: StageConfig) -> dict:
    """``cross_fit_offsets`` on the labelled ``sets`` together (val, and the held-out new labels when there
    are any), folded into the output bias (the zero-shot blend's, or the ``OutputLayer``'s): argmax of the stored model
    is then the macro-F1 rule, or stays argmax when the rule did not win out of fold (``offsets_kept`` False)."""
    logits, grades = [], []
    for data in sets:
        if data is None or not len(data):
            continue
        logits.append(score_pairs(model, data.queries, data.items, batch_size=config.eval_batch_size,
                                  max_length=config.max_length).logits)
        grades.append(np.asarray(data.grades))
    fit = cross_fit_offsets(np.concatenate(logits), np.concatenate(grades), seed=config.seed)
    model.shift_logits(fit["offsets"])
    return {"decision_offsets": fit["offsets"], "offsets_kept": fit["kept"],
            "offsets_macro_f1_before": fit["macro_f1_before"], "offsets_macro_f1_after": fit["macro_f1_after"],
            "offsets_cv_macro_f1": fit["cv_macro_f1"], "offsets_pairs": int(sum(len(g) for g in grades))}


def calibrate_temperature(model: RelevanceModel, val, config: StageConfig) -> dict[str, float]:
    """Temperature scaling on ``val`` (``fit_temperature`` by ``config.calibrate_by``), folded into the
    output layer (the ``OutputLayer``'s scale and bias, or the blend's scale, weight and bias when there is one): predictions (argmax)
    stay the same and only the confidence changes."""
    logits = score_pairs(model, val.queries, val.items, batch_size=config.eval_batch_size,
                         max_length=config.max_length).logits
    fit = fit_temperature(logits, val.grades, config.calibrate_by)
    model.divide_logits(fit["temperature"])
    return fit


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
