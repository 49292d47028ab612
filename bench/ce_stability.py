"""Why did `ce_plus_labels` collapse at the default profile? (issue 26.) Full tuning of every layer at lr 1e-4.

In ``bench/robustness.py --epochs 2 --train-layers 0`` on variant a, the user's baseline `ce` (full tuning of
every layer, 2 epochs, lr 1e-4) trained on 6,000 pairs scored 0.459 / 0.434, but the same recipe on those
pairs plus 1,000 DASA labels (`ce_plus_labels`, the LoRA chain's picks) scored 0.362 / 0.328, 3 seeds. This
reruns that recipe at a lower backbone lr, from the robustness run's own data and picks, and records each
run's final training loss (the class-weighted CE of a model that predicts uniformly is ln 3 = 1.0986, so a
final loss near it means the model learned nothing), its predicted grade shares and its validation macro-F1
(what a choice of lr may be made on). Test figures are reported, never chosen on.

    nice -n 10 .venv/bin/python bench/ce_stability.py --variants a c --seeds 0 1 2 --recipes ce ce_plus_labels
Writes bench/results/ce_stability.json (rows are added; a finished row is not rerun).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from quality import configs  # noqa: E402
from robustness import test_metrics, variant_data  # noqa: E402

from bench.common import load_window, save  # noqa: E402
from darl_core.model import load_checkpoint, score_pairs  # noqa: E402
from darl_core.training import run_stage  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ce_stability.json"
WORK = Path(".darl/bench/robustness/all_e2")  # the default profile's runs (robustness.py --epochs 2 --train-layers 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", default=["a"], choices=["a", "c"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-5])
    ap.add_argument("--recipes", nargs="+", default=["ce_plus_labels"], choices=["ce", "ce_plus_labels"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    rows: list[dict] = result.setdefault("rows", [])
    have = {(r.get("variant", "a"), r["recipe"], r["seed"], r["lr"]) for r in rows}
    for variant, seed in [(v, s) for v in args.variants for s in args.seeds]:
        data = variant_data(variant, seed)
        run_dir = WORK / f"{variant}_s{seed}"
        picked = np.load(run_dir / "lora" / "picked.npy")
        sets = {"ce": data["train"], "ce_plus_labels": data["train"].concat(data["pool"].subset(picked))}
        base = configs(seed, "full", 1, 2.0, None, num_grades=3)["ce"]
        for recipe in args.recipes:
            for lr in [1e-4, *args.lrs]:
                if (variant, recipe, seed, lr) in have:
                    continue
                stored = run_dir / ("ce" if recipe == "ce" else "lora/ce_plus_labels")
                out = stored if lr == 1e-4 else run_dir / "ce_stability" / f"{recipe}_lr{lr:g}"
                t0 = time.perf_counter()
                res = run_stage(base.replace(lr=lr), sets[recipe], data["val"], out)  # lr 1e-4: the stored run
                val = data["val"]
                probs = score_pairs(load_checkpoint(res.checkpoint), val.queries, val.items, batch_size=128,
                                    max_length=48).probs
                row = {"variant": variant, "recipe": recipe, "seed": seed, "lr": lr, "train_pairs": len(sets[recipe]),
                       "final_train_loss": round(res.metrics["train_loss"], 4),
                       "uniform_loss": round(math.log(3), 4),
                       "val_macro_f1": round(res.metrics["val_macro_f1"], 4),
                       "val_predicted_share": np.round(np.bincount(probs.argmax(1), minlength=3) / len(val), 3).tolist(),
                       **{k: round(v, 4) for k, v in test_metrics(res.checkpoint, data["tests"]).items()
                          if k in ("id_macro_f1", "ood_macro_f1", "id_ece", "ood_ece")},
                       "wall_s": round(time.perf_counter() - t0, 1)}
                rows.append(row)
                print(row, flush=True)
                result.update(protocol=__doc__.split("\n\n")[1].replace("\n", " "), load=load_window(load0))
                save(RESULTS, result)


if __name__ == "__main__":
    main()
