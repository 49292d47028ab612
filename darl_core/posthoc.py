"""The choices a stage makes after training, and the guards that decide whether each one is kept.

In order: the weight-space pick (wi's α, dpo's strength), the zero-shot blend, the decision offsets and
the temperature. Each is fitted on labelled pairs the stage did not train on: the validation pairs and,
where the stage has them, the new (DASA) labels it held out, mostly from shifted queries. A choice judged
on the pairs it was fitted on looks better than it is, and a validation set of a few queries supports
almost any choice (on another retailer's data, 188 pairs of 5 queries let every step "win" in sample and
the result lost 4.6 OOD points of macro-F1 and most of its calibration). So every step:

1. is skipped, with the reason recorded, when validation is too small to support it: fewer than
   ``posthoc_min_queries`` queries, or fewer than ``posthoc_min_per_grade`` pairs of some grade;
2. is cross-fitted over query-grouped folds (``query_folds``: every pair of a query on one side): each
   fold is predicted by the choice fitted on the other folds, since pairs of one query are not
   independent and the test splits are by query;
3. is kept only when those out-of-fold predictions lower macro-F1 neither on the validation pairs nor,
   separately, on the held-out new labels, against leaving the step out; plus its own test: offsets must
   raise macro-F1 out of fold, the blend must lower the out-of-fold NLL, and a sharpening temperature must
   lower the out-of-fold calibration objective and not worsen it on the held-out labels (a softening one,
   fitted once validation passes 1., is kept: step 4 says what measured that).

A step that is not kept leaves the model as it was: wi keeps the fine-tuned endpoint (α = 1), dpo its
reference (α = 0), the others are left out. ``out_of_fold`` reruns the whole chain, guards included, on
the other folds for each fold, so the figure a stage reports is never measured on the pairs its choices
were fitted on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from darl_core.config import StageConfig
from darl_core.metrics import ece, evaluate, macro_f1, softmax
from darl_core.model import RelevanceModel, ZeroShotBlend, score_pairs, zero_shot_similarity
from darl_core.stages import blend_nll, fit_blend, fit_offsets, fit_temperature


@dataclass
class Labelled:
    """The pairs the post-hoc steps see. ``held``: a held-out new label (else a validation pair);
    ``logits``: per candidate α of the stage's pick (one key, ``None``, when it has none); ``cos``: the
    pretrained query-item similarity (zero-shot blend only)."""

    grades: np.ndarray
    queries: np.ndarray
    held: np.ndarray
    logits: dict[float | None, np.ndarray]
    cos: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.grades)


@dataclass
class Decisions:
    alpha: float | None = None
    blend: dict | None = None
    offsets: list[float] | None = None
    temperature: float | None = None
    record: dict[str, dict] = field(default_factory=dict)


def query_folds(queries, parts: int, seed) -> list[tuple[np.ndarray, np.ndarray]]:  # noqa: ANN001
    """(held-out rows, the other rows) for each of ``parts`` folds of the distinct queries, shuffled by
    ``seed``: the pairs of one query are always on the same side. Folds with no rows are dropped."""
    q = np.asarray(queries, dtype=str)
    distinct, group = np.unique(q, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(distinct))
    out = []
    for part in np.array_split(order, min(parts, len(distinct))):
        held = np.flatnonzero(np.isin(group, part))
        if len(held):
            out.append((held, np.setdiff1d(np.arange(len(q)), held)))
    return out


def support(grades: np.ndarray, queries, k: int, min_queries: int, min_per_grade: int) -> str | None:
    """Why these validation pairs cannot support a post-hoc choice, or None when they can."""
    n_queries = len(set(np.asarray(queries, dtype=str).tolist()))
    if n_queries < min_queries:
        return f"validation has {n_queries} queries < {min_queries} (posthoc_min_queries)"
    counts = np.bincount(np.asarray(grades, dtype=np.int64), minlength=k)
    if counts.min() < min_per_grade:
        g = int(counts.argmin())
        return f"validation has {int(counts[g])} pairs of grade {g} < {min_per_grade} (posthoc_min_per_grade)"
    return None


def _f1(z: np.ndarray, y: np.ndarray) -> float:
    return macro_f1(y, z.argmax(axis=1), z.shape[1])


def _calibration(z: np.ndarray, y: np.ndarray, by: str) -> float:
    if by == "ece":
        return ece(y, softmax(z))
    return blend_nll(z, np.zeros(len(y)), y, {"scale": 1.0, "weight": 0.0, "bias": 0.0})


def _no_harm(scores: dict[str, float]) -> str | None:
    for name in ("val", "holdout"):
        if f"{name}_macro_f1" in scores and round(scores[f"{name}_macro_f1"], 4) < round(
                scores[f"{name}_macro_f1_without"], 4):
            return (f"out of fold it lowers {name} macro-F1 ({scores[f'{name}_macro_f1_without']:.4f} -> "
                    f"{scores[f'{name}_macro_f1']:.4f})")
    return None


def _cross_fit(data: Labelled, rows: np.ndarray, config: StageConfig, fit: Callable[[np.ndarray], object],
               transform: Callable[[object, np.ndarray], np.ndarray]) -> np.ndarray:
    """Out-of-fold logits of ``rows``: each query fold transformed by the choice fitted on the others."""
    out = np.zeros((len(rows), data.logits[next(iter(data.logits))].shape[1]))
    for held, rest in query_folds(data.queries[rows], config.posthoc_folds, [config.seed, 23]):
        out[held] = transform(fit(rows[rest]), rows[held])
    return out


def _groups(n: int, groups, held) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    g = np.arange(n).astype(str) if groups is None else np.asarray(groups, dtype=str)
    return g, np.zeros(n, dtype=bool) if held is None else np.asarray(held, dtype=bool)


def _scores(y: np.ndarray, held: np.ndarray, z_new: np.ndarray, z_old: np.ndarray) -> dict[str, float]:
    """Macro-F1 with the step (out of fold) and without it, on the validation and the held-out rows."""
    out = {}
    for name, sel in (("val", ~held), ("holdout", held)):
        if sel.any():
            out[f"{name}_macro_f1"] = _f1(z_new[sel], y[sel])
            out[f"{name}_macro_f1_without"] = _f1(z_old[sel], y[sel])
    return out


def cross_fit_offsets(logits: np.ndarray, grades: np.ndarray, groups=None, held=None, folds: int = 5,  # noqa: ANN001
                      seed: int = 0) -> dict:
    """``fit_offsets`` with its guard: each query fold (``groups``; each row its own without) is predicted
    with the offsets fitted on the others. Kept (the fit on all rows) only when that out-of-fold macro-F1
    beats argmax's and lowers neither the validation nor the ``held`` rows' macro-F1; else all 0."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(grades, dtype=np.int64)
    g, held = _groups(len(y), groups, held)
    full = fit_offsets(z, y)
    oof = z.copy()
    for part, rest in query_folds(g, max(2, folds), [seed, 17]):
        oof[part] = z[part] + np.asarray(fit_offsets(z[rest], y[rest])["offsets"])
    scores = {"cv_macro_f1": _f1(oof, y), **_scores(y, held, oof, z)}
    reason = _no_harm(scores)
    if scores["cv_macro_f1"] <= full["macro_f1_before"]:
        reason = (f"out-of-fold macro-F1 {scores['cv_macro_f1']:.4f} does not beat argmax's "
                  f"{full['macro_f1_before']:.4f}")
    keep = reason is None
    return {**full, "offsets": full["offsets"] if keep else [0.0] * z.shape[1],
            "macro_f1_after": full["macro_f1_after"] if keep else full["macro_f1_before"], **scores,
            "kept": keep, "reason": reason or "raises out-of-fold macro-F1, lowers it on no part"}


def cross_fit_blend(logits: np.ndarray, cos: np.ndarray, grades: np.ndarray, groups=None, held=None,  # noqa: ANN001
                    folds: int = 5, seed: int = 0) -> dict:
    """``fit_blend`` on all rows, kept only when its out-of-fold NLL (each query fold scored by a blend
    fitted on the others) beats the plain logits' and its out-of-fold macro-F1 is not lower on the
    validation nor the ``held`` rows; else the identity (``kept`` False)."""
    z, c, y = np.asarray(logits, dtype=np.float64), np.asarray(cos, dtype=np.float64), np.asarray(grades)
    g, held = _groups(len(y), groups, held)
    k = z.shape[1]
    identity = {"scale": 1.0, "weight": [0.0] * k, "bias": [0.0] * k}
    before = blend_nll(z, c, y, identity)
    oof = z.copy()
    for part, rest in query_folds(g, folds, seed):
        b = fit_blend(z[rest], c[rest], y[rest])
        oof[part] = b["scale"] * z[part] + c[part, None] * np.asarray(b["weight"]) + np.asarray(b["bias"])
    cv = blend_nll(oof, np.zeros(len(y)), y, identity)
    scores = _scores(y, held, oof, z)
    reason = _no_harm(scores) if cv < before else f"out-of-fold NLL {cv:.4f} is not below {before:.4f}"
    full = fit_blend(z, c, y) if reason is None else identity
    return {**full, "kept": reason is None, "nll_before": before, "cv_nll": cv,
            "nll_after": blend_nll(z, c, y, full), **scores,
            "reason": reason or "lowers out-of-fold NLL, lowers macro-F1 on no part"}


def _pick_alpha(data: Labelled, rows: np.ndarray, stage: str) -> float:
    """wi: the best macro-F1, ties to the lower ECE. dpo: the lowest over-recall among the α whose macro-F1
    is not below the reference's (α = 0) on the validation rows nor on the held-out rows."""
    y = data.grades[rows]
    alphas = sorted(data.logits)
    if stage == "wi":
        return max(alphas, key=lambda a: (round(_f1(data.logits[a][rows], y), 4), -ece(y, softmax(data.logits[a][rows]))))
    held = data.held[rows]
    ok = []
    for a in alphas:
        z = data.logits[a][rows]
        if all(round(_f1(z[sel], y[sel]), 4) >= round(_f1(data.logits[0.0][rows][sel], y[sel]), 4)
               for sel in (~held, held) if sel.any()):
            ok.append(a)
    return min(ok, key=lambda a: (round(float((data.logits[a][rows].argmax(1) > y).mean()), 4),
                                  -_f1(data.logits[a][rows], y)))


def decide(data: Labelled, rows: np.ndarray, config: StageConfig, scale: float = 1.0) -> Decisions:
    """Every enabled step's choice on ``rows``, each guarded as the module docstring says. ``scale``
    shrinks the support thresholds (``out_of_fold`` decides on a share of the queries)."""
    dec = Decisions()
    val_rows = rows[~data.held[rows]]
    k = data.logits[next(iter(data.logits))].shape[1]
    small = support(data.grades[val_rows], data.queries[val_rows], k,
                    max(2, int(np.ceil(config.posthoc_min_queries * scale))),
                    int(np.ceil(config.posthoc_min_per_grade * scale)))
    if len(set(data.queries[rows].tolist())) < 2:
        small = small or "fewer than 2 queries: nothing to cross-fit"

    def step(name: str, kept: bool, reason: str, **extra) -> bool:
        dec.record[name] = {"kept": bool(kept), "reason": reason, **extra}
        return kept

    # 1. The weight-space pick.
    if None in data.logits:
        dec.alpha = None
    elif len(data.logits) == 1:
        dec.alpha = next(iter(data.logits))
        step("wi_alpha" if config.stage == "wi" else "dpo_strength", True, "one value given: used as it is",
             alpha=dec.alpha)
    else:
        name = "wi_alpha" if config.stage == "wi" else "dpo_strength"
        default = max(data.logits) if config.stage == "wi" else 0.0
        dec.alpha = default
        if small:
            step(name, False, small, alpha=default)
        else:
            full = _pick_alpha(data, rows, config.stage)
            oof = _cross_fit(data, rows, config, lambda r: _pick_alpha(data, r, config.stage),
                             lambda a, r: data.logits[a][r])
            scores = _scores(data.grades[rows], data.held[rows], oof, data.logits[default][rows])
            harm = _no_harm(scores)
            if full == default:
                step(name, True, f"the pick is the {'fine-tuned endpoint' if config.stage == 'wi' else 'reference'}",
                     alpha=full, **scores)
            elif harm:
                step(name, False, harm, alpha=default, fitted_alpha=full, **scores)
            else:
                dec.alpha = full
                step(name, True, "holds out of fold on every labelled part", alpha=full, **scores)
    base = data.logits[dec.alpha]

    # 2. The zero-shot blend: kept when its out-of-fold NLL beats the plain logits' and it does no harm.
    if config.zero_shot_blend and data.cos is not None:
        if small:
            step("zero_shot_blend", False, small)
        else:
            fit = cross_fit_blend(base[rows], data.cos[rows], data.grades[rows], data.queries[rows],
                                  data.held[rows], config.posthoc_folds, config.seed)
            if step("zero_shot_blend", fit["kept"], fit["reason"],
                    **{key: v for key, v in fit.items() if key not in ("kept", "reason")}):
                dec.blend = {k: fit[k] for k in ("scale", "weight", "bias")}
    z = base if dec.blend is None else (dec.blend["scale"] * base + data.cos[:, None] * np.asarray(dec.blend["weight"])
                                        + np.asarray(dec.blend["bias"]))

    # 3. Decision offsets: out of fold they must raise macro-F1 over all rows and lower it on no part.
    if config.decision_offsets:
        if small:
            step("offsets", False, small)
        else:
            fit = cross_fit_offsets(z[rows], data.grades[rows], data.queries[rows], data.held[rows],
                                    config.posthoc_folds, config.seed)
            if step("offsets", fit["kept"], fit["reason"],
                    **{key: v for key, v in fit.items() if key not in ("kept", "reason")}):
                dec.offsets = list(fit["offsets"])
    if dec.offsets is not None:
        z = z + np.asarray(dec.offsets)

    # 4. The temperature, fitted on the validation rows once they pass the support thresholds above. A softening T
    # (the model is overconfident on validation) is then kept: bench/temperature_guard.py scored every
    # robustness run's decision on labelled shifted pairs nobody picked or tested, and vetoing a softening T
    # because it lost out of fold or raised the held-out DASA labels' ECE (labels picked *because* the model
    # found them unusual) left ECE there at 0.051 / 0.044 (in-distribution / shifted pool, 29 runs) against
    # 0.039 / 0.041 when kept; 0.076 / 0.058 against 0.045 / 0.047 with the default profile. Below 128 queries
    # keeping every softening T had raised ECE (bench/posthoc_thresholds.py); the thresholds above skip those.
    # A sharpening T, the riskier way, must still win out of fold and must not worsen the held-out labels.
    # The out-of-fold and held-out figures are recorded either way.
    if config.calibrate:
        if small:  # what it would have been, for the record
            fitted = fit_temperature(z[val_rows], data.grades[val_rows], config.calibrate_by)["temperature"] \
                if len(val_rows) else 1.0
            step("temperature", False, small, temperature=1.0, fitted_temperature=fitted)
        else:
            by = config.calibrate_by
            fit = fit_temperature(z[val_rows], data.grades[val_rows], by)
            t = fit["temperature"]
            unchanged = {"temperature": 1.0, "fitted_temperature": t, "calibrate_by": by,
                         "val_nll_after": fit["val_nll_before"], "val_ece_after": fit["val_ece_before"],
                         "val_nll_before": fit["val_nll_before"], "val_ece_before": fit["val_ece_before"]}
            oof = _cross_fit(data, val_rows, config, lambda r: fit_temperature(z[r], data.grades[r], by)["temperature"],
                             lambda t_, r: z[r] / t_)
            y = data.grades[val_rows]
            scores = {f"cv_{by}": _calibration(oof, y, by), f"{by}_before": _calibration(z[val_rows], y, by)}
            held_rows = rows[data.held[rows]]
            if len(held_rows):
                yh = data.grades[held_rows]
                scores[f"holdout_{by}"] = _calibration(z[held_rows] / t, yh, by)
                scores[f"holdout_{by}_before"] = _calibration(z[held_rows], yh, by)
            figures = (f"out of fold {by} {scores[f'{by}_before']:.4f} -> {scores[f'cv_{by}']:.4f}"
                       + (f"; held-out labels {scores[f'holdout_{by}_before']:.4f} -> {scores[f'holdout_{by}']:.4f}"
                          if len(held_rows) else ""))
            harm = None
            if t < 1.0 and scores[f"cv_{by}"] >= scores[f"{by}_before"]:
                harm = f"sharpens (T {t:.3f}) without winning out of fold ({figures})"
            elif t < 1.0 and len(held_rows) and scores[f"holdout_{by}"] > scores[f"holdout_{by}_before"]:
                harm = f"sharpens (T {t:.3f}) and worsens the held-out labels' {by} ({figures})"
            reason = harm or (f"sharpens and wins out of fold ({figures})" if t < 1.0 else
                              f"softens (T {t:.3f}) on enough validation queries ({figures})")
            if step("temperature", harm is None, reason, **(unchanged if harm else {**fit, "fitted_temperature": t}),
                    **scores):
                dec.temperature = t
    return dec


def apply(dec: Decisions, data: Labelled, rows: np.ndarray) -> np.ndarray:
    """The logits of ``rows`` after ``dec``'s choices (what the finished model scores)."""
    z = data.logits[dec.alpha][rows]
    if dec.blend is not None:
        z = dec.blend["scale"] * z + data.cos[rows, None] * np.asarray(dec.blend["weight"]) + np.asarray(dec.blend["bias"])
    if dec.offsets is not None:
        z = z + np.asarray(dec.offsets)
    if dec.temperature is not None:
        z = z / dec.temperature
    return z


def enabled(data: Labelled, config: StageConfig) -> bool:
    return (len(data.logits) > 1 or config.zero_shot_blend or config.decision_offsets or config.calibrate)


def out_of_fold(data: Labelled, config: StageConfig) -> np.ndarray:
    """Logits of every row from the whole chain decided on the other query folds (its guards included,
    the support thresholds scaled by the share of validation queries those folds hold)."""
    rows = np.arange(len(data))
    if not enabled(data, config):
        return data.logits[next(iter(data.logits))]
    folds = query_folds(data.queries, config.posthoc_folds, [config.seed, 29])
    if len(folds) < 2:  # one query: every step is skipped (decide says so), nothing was fitted
        return apply(decide(data, rows, config), data, rows)
    out = np.zeros((len(data), data.logits[next(iter(data.logits))].shape[1]))
    n_val = max(1, len(set(data.queries[~data.held].tolist())))
    for held, rest in folds:
        share = len(set(data.queries[rest][~data.held[rest]].tolist())) / n_val
        out[held] = apply(decide(data, rest, config, scale=share), data, held)
    return out


def finish(model: RelevanceModel, val, holdout, config: StageConfig, emit: Callable,  # noqa: ANN001
           weights_at: Callable[[float], None] | None = None,
           alphas: Sequence[float | None] = (None,)) -> tuple[dict, dict[str, np.ndarray]]:
    """Score ``val`` and ``holdout`` (the held-out new labels, or None) at each candidate α (``weights_at``
    loads one into ``model``), decide every enabled step (``decide``), fold the choices into ``model``
    and return (the stage metrics they add, out-of-fold probabilities {"val", "holdout"}).
    ``metrics["posthoc"]`` says per step whether it was kept and why."""
    sets = [val] + ([holdout] if holdout is not None and len(holdout) else [])
    queries = [q for s in sets for q in s.queries]
    items = [i for s in sets for i in s.items]
    grades = np.concatenate([np.asarray(s.grades) for s in sets])
    held = np.arange(len(grades)) >= len(val)
    logits, table, held_table = {}, {}, {}
    for i, alpha in enumerate(alphas):
        if weights_at is not None and alpha is not None:
            weights_at(alpha)
        logits[alpha] = z = score_pairs(model, queries, items, batch_size=config.eval_batch_size,
                                        max_length=config.max_length).logits
        if alpha is None:
            continue
        table[f"{alpha:g}"] = m = _scores_of(z[~held], grades[~held])
        note = ""
        if held.any():
            held_table[f"{alpha:g}"] = h = _scores_of(z[held], grades[held])
            note = f"; held-out new labels macro-F1 {h['macro_f1']:.4f}"
        emit(i + 1, len(alphas), 0.0, None, f"{'dpo alpha' if config.stage == 'dpo' else 'alpha'} {alpha:g}: "
             f"val macro-F1 {m['macro_f1']:.4f}, over-recall {m['over_recall']:.4f}{note} (in sample)")
    cos = zero_shot_similarity(model, queries, items, batch_size=config.eval_batch_size,
                               max_length=config.max_length) if config.zero_shot_blend else None
    data = Labelled(grades, np.asarray(queries, dtype=str), held, logits, cos)
    rows = np.arange(len(grades))
    dec = decide(data, rows, config)
    oof = softmax(out_of_fold(data, config))

    if weights_at is not None and dec.alpha is not None:
        weights_at(dec.alpha)
    model.blend = model.output = None
    if dec.blend is not None:
        blend = ZeroShotBlend(model.num_grades).to(model.device)
        with torch.no_grad():
            blend.scale.fill_(dec.blend["scale"])
            blend.weight.copy_(torch.as_tensor(dec.blend["weight"]))
            blend.bias.copy_(torch.as_tensor(dec.blend["bias"]))
        model.blend = blend
    if dec.offsets is not None:
        model.shift_logits(dec.offsets)
    if dec.temperature is not None:
        model.divide_logits(dec.temperature)
    model.eval()
    for name, r in dec.record.items():
        emit(1, 1, 0.0, None, f"post-hoc {name}: {'kept' if r['kept'] else 'not kept'} ({r['reason']})")

    out: dict = {"posthoc": dec.record}
    fitted = apply(dec, data, rows)
    out["val_macro_f1_in_sample"] = _f1(fitted[~held], grades[~held])  # optimistic: the choices saw these pairs
    if table:
        key = "alpha" if config.stage == "wi" else "dpo_alpha"
        out.update({key: dec.alpha, "alphas" if config.stage == "wi" else "dpo_alphas": table,
                    **({"dpo_alphas_holdout": held_table} if held_table else {})})
    r = dec.record
    if "zero_shot_blend" in r:
        b = dec.blend or {"scale": 1.0, "weight": [0.0] * model.num_grades, "bias": [0.0] * model.num_grades}
        out.update({"zero_shot_kept": r["zero_shot_blend"]["kept"], "zero_shot_scale": b["scale"],
                    "zero_shot_weight": b["weight"], "zero_shot_bias": b["bias"], "zero_shot_pairs": len(grades),
                    **{f"zero_shot_{k}": r["zero_shot_blend"][k] for k in ("nll_before", "nll_after", "cv_nll")
                       if k in r["zero_shot_blend"]}})
    if "offsets" in r:
        out.update({"decision_offsets": dec.offsets or [0.0] * model.num_grades, "offsets_kept": r["offsets"]["kept"],
                    "offsets_pairs": len(grades),
                    **{f"offsets_{k}": r["offsets"][k] for k in ("macro_f1_before", "macro_f1_after", "cv_macro_f1")
                       if k in r["offsets"]}})
    if "temperature" in r:
        out.update({"temperature": dec.temperature or 1.0, "calibrate_by": config.calibrate_by,
                    **{k: v for k, v in r["temperature"].items() if k.startswith(("val_nll", "val_ece"))}})
    return out, {"val": oof[~held], "holdout": oof[held]}


def _scores_of(z: np.ndarray, y: np.ndarray) -> dict[str, float]:
    m = evaluate(y, softmax(z))
    return {"macro_f1": m["macro_f1"], "ece": m["ece"], "accuracy": m["accuracy"], "over_recall": m["over_recall"]}
