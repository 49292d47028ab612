"""Decision offsets: what the macro-F1 decision rule (``StageConfig.decision_offsets``) adds to finished
``ce`` and ``dpo`` checkpoints, paired per seed on the Home Depot tests.

The stage option fits per-grade logit offsets for macro-F1 on the validation pairs (and the held-out
new labels, where the stage has them), folds them into the head, then fits the temperature
(``stages.apply_offsets``, ``stages.calibrate_temperature``). Applied here after the fact to each
checkpoint with exactly those functions, so both rows of a seed are the same trained weights with and
without the rule: ``ce`` fits on val_id (it has no new labels) and then also gets the ECE temperature
the ``dpo`` row already has; ``dpo`` fits on val_id plus the 20% of DASA's labels its strength pick kept
out. The checkpoints are bench/quality.py's (rows ``ce`` and ``dpo``, same work directory); a seed
that lacks them is trained first by running bench/quality.py for those two rows. The committed result,
from one work directory per seed:

    .venv/bin/python bench/decision_offsets.py --seeds 0 1 2 --work .darl/bench/q_s{seed}
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quality import configs, examples, mean_sd, test_metrics  # noqa: E402

from bench.common import load_window, save  # noqa: E402
from darl_core import homedepot  # noqa: E402
from darl_core.model import load_checkpoint  # noqa: E402
from darl_core.stages import apply_offsets, calibrate_temperature  # noqa: E402
from darl_core.training import holdout_split  # noqa: E402

KEYS = ("id_macro_f1", "ood_macro_f1", "gap", "id_ece", "ood_ece", "irrelevant_f1", "ood_irrelevant_f1",
        "id_predicted_irrelevant", "ood_predicted_irrelevant", "over_recall")
NAMES = ("ce", "ce+offsets", "dpo", "dpo+offsets")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--work", default=".darl/bench/quality",
                    help="bench/quality.py's --work directory ({seed} is filled in: one directory per seed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/variants/decision_offsets.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start, t0 = os.getloadavg(), time.perf_counter()
    sp = homedepot.load_splits("small")
    val, pool = examples(sp.val_id), examples(sp.pool)
    tests = {"id": examples(sp.test_id), "ood": examples(sp.test_ood)}
    runs = []
    for seed in args.seeds:
        root = Path(args.work.format(seed=seed))
        d = root / "small_full" / f"seed{seed}"
        if not all((d / name / "model.pt").is_file() for name in ("ce", "dpo")):
            subprocess.run([sys.executable, str(Path(__file__).with_name("quality.py")), "--seeds", str(seed),
                            "--threads", str(args.threads), "--rows", "ce", "dpo", "--work", str(root),
                            "--out", str(root / "quality_ce_dpo.json")], check=True)
        cfg = configs(seed, "full", args.threads, 2.0, None)["dpo"].replace(decision_offsets=True)
        _, holdout = holdout_split(cfg, pool.subset(np.load(d / "picked_dasa_1000.npy")))
        for name, sets in (("ce", [val]), ("dpo", [val, holdout])):
            model = load_checkpoint(d / name)
            runs.append({"name": name, "seed": seed, **test_metrics(model, tests, args.threads)})
            fit = {**apply_offsets(model, sets, cfg), **calibrate_temperature(model, val, cfg)}
            runs.append({"name": f"{name}+offsets", "seed": seed, **test_metrics(model, tests, args.threads),
                         "offsets": fit["decision_offsets"], "temperature": fit["temperature"],
                         "fit_pairs": fit["offsets_pairs"], "kept": fit["offsets_kept"],
                         "fit_macro_f1": [fit["offsets_macro_f1_before"], fit["offsets_macro_f1_after"]],
                         "cv_macro_f1": fit["offsets_cv_macro_f1"]})
            a, b = runs[-2], runs[-1]
            print(f"seed {seed} {name}: offsets {np.round(fit['decision_offsets'], 2).tolist()} "
                  f"(cross-fitted val macro-F1 {fit['offsets_cv_macro_f1']:.4f} vs argmax "
                  f"{fit['offsets_macro_f1_before']:.4f}: {'kept' if fit['offsets_kept'] else 'argmax'})  "
                  f"ID {a['id_macro_f1']:.4f} -> {b['id_macro_f1']:.4f}  "
                  f"OOD {a['ood_macro_f1']:.4f} -> {b['ood_macro_f1']:.4f}", flush=True)
    rows = []
    for name in NAMES:
        rs = [r for r in runs if r["name"] == name]
        rows.append({"name": name, "seeds": len(rs), **{k: mean_sd([r[k] for r in rs]) for k in KEYS}})

    def lift(a: str, b: str, key: str) -> dict:
        by_seed = {r["seed"]: r[key] for r in runs if r["name"] == a}
        return mean_sd([r[key] - by_seed[r["seed"]] for r in runs if r["name"] == b])
    lifts = {f"{b} - {a}": {k: lift(a, b, k) for k in ("id_macro_f1", "ood_macro_f1")}
             for a, b in (("ce", "ce+offsets"), ("dpo", "dpo+offsets"), ("ce", "dpo"), ("ce", "dpo+offsets"),
                          ("ce+offsets", "dpo+offsets"))}
    save(Path(args.out), {"seeds": args.seeds, "work": args.work, "rows": rows, "lifts": lifts,
                          "runs": [{k: v for k, v in r.items() if not k.endswith("_predicted")} for r in runs],
                          "wall_s": time.perf_counter() - t0, "load": load_window(load_start)})
    for a, v in lifts.items():
        print(f"{a}: ID {v['id_macro_f1']['mean']:+.4f}  OOD {v['ood_macro_f1']['mean']:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
