"""Is the temperature's held-out-labels veto right? (issue 26, default profile.) Validation-side data only.

The dpo stage keeps a temperature T only when (1) T fitted on the validation pairs wins out of fold there,
and (2) T does not raise the ECE of the held-out new labels (the 20% of DASA's labels dpo keeps out).
Those held-out labels are no random sample of the shifted data: DASA picked them *because* the model found
them unusual. This asks, for every finished ``pipeline`` run of bench/robustness.py (both profiles), what
each decision did on labelled shifted data that is neither picked nor tested: a seeded sample of the
variant's labelled pool the round did not pick (up to 1,500 ``pool_id`` and 1,500 ``pool_ood`` pairs; the
benchmark has their grades, a product would not). Per run: the stage's decision and its reason, and the
pool ECE as the model stands against the other choice (T undone where kept, the fitted T where not).
Test splits are not read. The summary scores each rule (r2; r3, softening kept past the support
thresholds, the default since this measurement; r5, r3 with a softening T kept only up to 2; r6, a T fitted
on the validation pairs and the held-out DASA labels together; always; never) by mean pool ECE.

The 29 runs made under r2 (``dpo_r2``) chose r3; r5 was proposed after looking at them. Runs made since
under r3 (``dpo_r3``) are fresh: neither rule was chosen on them, so ``rules_fresh`` is the test of r3 and r5
that the first 29 cannot be. A run's r2 decision is derived from the figures its stage recorded (a softening T
kept only when it won out of fold and did not worsen the held-out labels), its r3 decision likewise.
Each run's scores are cached beside its checkpoint (``guard_scores.npz``), so a rerun scores only new runs;
the 29 r2 runs keep the figures of their first scoring (r6, proposed after it, is scored on the fresh runs).

    nice -n 10 .venv/bin/python bench/temperature_guard.py
Writes bench/results/temperature_guard.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from robustness import variant_data  # noqa: E402

from bench.common import load_window, save  # noqa: E402
from darl_core.config import StageConfig  # noqa: E402
from darl_core.metrics import ece, softmax  # noqa: E402
from darl_core.model import load_checkpoint, score_pairs  # noqa: E402
from darl_core.stages import fit_temperature  # noqa: E402
from darl_core.training import holdout_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "temperature_guard.json"
WORK = Path(".darl/bench/robustness")
SAMPLE = 1500


def category(t: dict) -> str:
    if t["kept"]:
        return "kept"
    if "worsens the held-out" in t["reason"]:  # (a reason may quote the held-out figures without a veto)
        return "won out of fold, vetoed by the held-out labels"
    if "out of fold" in t["reason"]:
        return "lost out of fold"
    return "too little validation data"


def scores(stage: Path, variant: str, seed: int) -> dict[str, np.ndarray]:
    """The stage's final logits and the grades of its pool sample, validation pairs and held-out new labels,
    computed once (``guard_scores.npz`` in the stage directory: the same checkpoint, the same seeded sample)."""
    cache = stage / "guard_scores.npz"
    if cache.is_file():
        return dict(np.load(cache))
    data = variant_data(variant, seed)
    picked = np.load(stage.parent / "picked.npy")
    taken = set(picked.tolist())
    rng = np.random.default_rng([seed, 26])
    model = load_checkpoint(stage)
    config = StageConfig.from_dict(json.loads((stage / "config.json").read_text())["config"])
    held = holdout_split(config, data["pool"].subset(picked))[1]
    sets = {"val": data["val"], "held": held}
    for part in ("pool_id", "pool_ood"):
        cand = np.array([i for i in np.flatnonzero(data["pool_split"] == part) if i not in taken])
        sets[part] = data["pool"].subset(np.sort(rng.choice(cand, size=min(SAMPLE, len(cand)), replace=False)))
    out = {}
    for name, ex in sets.items():
        out[f"{name}_logits"] = score_pairs(model, ex.queries, ex.items, batch_size=128, max_length=48).logits
        out[f"{name}_grades"] = np.asarray(ex.grades)
    np.savez(cache, **out)
    return out


def pool_figures(stage: Path, variant: str, seed: int, t: dict) -> dict:
    """Pool ECE as the stage stands, under the other temperature choice, and under r6's T."""
    z, out = scores(stage, variant, seed), {}
    fitted = t["fitted_temperature"]
    undo = fitted if t["kept"] else 1.0  # the logits before the temperature step
    for part in ("pool_id", "pool_ood"):
        zp, yp = z[f"{part}_logits"], z[f"{part}_grades"]
        other = zp * fitted if t["kept"] else zp / fitted
        out[f"{part}_ece_as_is"] = round(float(ece(yp, softmax(zp))), 4)
        out[f"{part}_ece_other_choice"] = round(float(ece(yp, softmax(other))), 4)
    # r6: T fitted on the validation pairs and the held-out DASA labels together (by the stage's objective)
    both = np.concatenate([z["val_logits"], z["held_logits"]]) * undo
    t6 = fit_temperature(both, np.concatenate([z["val_grades"], z["held_grades"]]), t.get("calibrate_by", "ece"))
    out["r6_temperature"] = round(t6["temperature"], 3)
    for part in ("pool_id", "pool_ood"):
        out[f"{part}_ece_r6"] = round(float(ece(z[f"{part}_grades"], softmax(z[f"{part}_logits"] * undo
                                                                              / t6["temperature"]))), 4)
    return out


def r2_keeps(t: dict) -> bool:
    """What r2 decides from a stage's temperature record (r2 or r3 run): a softening T must have won out of
    fold and not worsened the held-out labels; a sharpening T is judged the same under both rules."""
    if t["stage_rules"] == "r2" or t["fitted_temperature"] < 1.0:
        return t["kept"]
    by = t.get("calibrate_by", "ece")
    if f"cv_{by}" not in t:  # skipped for too little validation data: no rule keeps it
        return t["kept"]
    won = t[f"cv_{by}"] < t[f"{by}_before"]
    held = f"holdout_{by}" not in t or t[f"holdout_{by}"] <= t[f"holdout_{by}_before"]
    return bool(won and held)


def main() -> None:
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    earlier = {(r["profile"], r["variant"], r["seed"], r["tuning"]): r for r in old.get("runs", [])
               if r.get("stage", "dpo_r2") == "dpo_r2"}
    rows: list[dict] = []
    for metrics in sorted(WORK.glob("*/*_s*/*/dpo_r[23]/metrics.json")):
        stage = metrics.parent
        profile, run, tuning = stage.parts[-4], stage.parts[-3], stage.parts[-2]
        variant, seed = run.split("_s")
        t = json.loads(metrics.read_text())["posthoc"].get("temperature")
        if t is None or abs(t.get("fitted_temperature", 1.0) - 1.0) < 1e-6:
            continue
        t = {**t, "stage_rules": stage.name[-2:]}
        out = {"profile": profile, "variant": variant, "seed": int(seed), "tuning": tuning, "stage": stage.name,
               "kept": t["kept"], "reason": t["reason"], "category": category(t),
               "fitted_temperature": round(t["fitted_temperature"], 3), "r2_keeps": r2_keeps(t)}
        known = earlier.get((profile, variant, int(seed), tuning)) if stage.name == "dpo_r2" else None
        if known is not None and not (stage / "guard_scores.npz").is_file():
            # the runs r3 was chosen on, scored before: their figures are kept (r6 is judged on the fresh runs)
            out.update({k: v for k, v in known.items() if k.startswith(("pool_", "r6_"))})
        else:
            out.update(pool_figures(stage, variant, int(seed), t))
        out["right_on_both"] = bool(out["pool_id_ece_as_is"] <= out["pool_id_ece_other_choice"]
                                    and out["pool_ood_ece_as_is"] <= out["pool_ood_ece_other_choice"])
        rows.append(out)
        print(out, flush=True)
    by: dict[str, dict] = {}
    for r in rows:
        c = by.setdefault(r["category"], {"runs": 0, "right_on_both": 0, "pool_id_gain_of_other": [],
                                          "pool_ood_gain_of_other": []})
        c["runs"] += 1
        c["right_on_both"] += int(r["right_on_both"])
        for part in ("pool_id", "pool_ood"):
            c[f"{part}_gain_of_other"].append(r[f"{part}_ece_as_is"] - r[f"{part}_ece_other_choice"])
    for c in by.values():
        for part in ("pool_id", "pool_ood"):
            c[f"{part}_gain_of_other"] = round(float(np.mean(c[f"{part}_gain_of_other"])), 4)
    fresh = [r for r in rows if r["stage"] == "dpo_r3"]
    save(RESULTS, {"sample_per_part": SAMPLE, "runs": rows, "by_category": by,
                   "rules": rules([r for r in rows if r["stage"] == "dpo_r2"]), "rules_fresh": rules(fresh),
                   "fresh_runs_differing": {name: sum(keep(r) != RULES["r3"](r) for r in fresh) for name, keep in RULES.items()},
                   "load": load_window(load0),
                   "note": "gain_of_other > 0: the other choice would have had lower pool ECE (the decision was wrong). "
                           "rules: the 29 dpo_r2 runs r3 was chosen on; rules_fresh: the dpo_r3 runs made since"})


def _r3(r: dict) -> bool:
    if r.get("stage", "dpo_r2") == "dpo_r3":
        return r["kept"]
    return r["kept"] or (r["fitted_temperature"] > 1 and r["reason"].startswith("softens (T "))


# Which temperature each rule keeps, from a run's record (r2: softening and sharpening T must win out of fold
# and not worsen the held-out labels; r3: a softening T kept past the support thresholds, sharpening as r2;
# r5: r3, but a softening T only up to 2 (proposed after the first 29 runs, judged on the fresh ones);
# always: the fitted T past the thresholds; never: none). r6, scored apart in rules(): a T fitted on the
# validation pairs and the held-out DASA labels together, kept wherever the thresholds passed (proposed,
# like r5, before the fresh runs were scored).
RULES = {"r2": lambda r: r.get("r2_keeps", r["kept"]),
         "r3": _r3,
         "r5": lambda r: _r3(r) and not (r["fitted_temperature"] > 2.0),
         "always": lambda r: r["category"] != "too little validation data",
         "never": lambda r: False}


def rules(rows: list[dict]) -> dict:
    """Mean pool ECE (pool_id, pool_ood) under each rule, over all runs and per profile."""
    def ece_of(r: dict, keep: bool, part: str) -> float:
        same = keep == r["kept"]
        return r[f"{part}_ece_as_is"] if same else r[f"{part}_ece_other_choice"]

    def r6(r: dict, part: str) -> float:  # the union's T wherever the support thresholds passed
        return ece_of(r, False, part) if r["category"] == "too little validation data" else r[f"{part}_ece_r6"]
    out: dict = {}
    for profile in sorted({r["profile"] for r in rows}) + ["all"]:
        rs = [r for r in rows if profile in ("all", r["profile"])]
        out[profile] = {"runs": len(rs), **{name: {part: round(float(np.mean([ece_of(r, keep(r), part) for r in rs])), 4)
                                                   for part in ("pool_id", "pool_ood")}
                                            for name, keep in RULES.items()},
                        **({"r6": {part: round(float(np.mean([r6(r, part) for r in rs])), 4) for part in ("pool_id", "pool_ood")}}
                           if all("pool_id_ece_r6" in r for r in rs) else {})}
    return out


if __name__ == "__main__":
    main()
