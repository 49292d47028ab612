"""Where a figure becomes too thin to trust: the versions table and the Gap page flag any metric computed
on fewer than ``FEW_QUERIES`` queries (issue 26 §2). This measures where that threshold lies.

Two trained models of the robustness run (variant a, seed 0, cheap profile: the ``ce`` baseline and the
pipeline's ``dpo``) score Home Depot ``small``'s test_id and test_ood once. Then, for each query count n,
``DRAWS`` random sets of n queries are drawn from a split (without replacement), and on each set:
- the 95% query-bootstrap interval of the pipeline's macro-F1 (``metrics.macro_f1_interval``, the
  interval the flag prints), its half-width;
- the pipeline's macro-F1 minus ce's on the same pairs, and whether its sign agrees with the whole split's
  (how often a table on n queries would rank the two the wrong way round).
The threshold is the smallest n whose median half-width is at most ``HALF_WIDTH`` (5 points, about the
pipeline's mean gain over ce across the robustness variants: a thinner figure cannot show a gain of that
size), taken over both splits.

    nice -n 10 .venv/bin/python bench/few_queries.py
Writes bench/results/few_queries.json.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import load_window, save  # noqa: E402
from darl_core import homedepot  # noqa: E402
from darl_core.metrics import macro_f1, macro_f1_interval  # noqa: E402
from darl_core.model import load_checkpoint, score_pairs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "few_queries.json"
RUN = Path(".darl/bench/robustness/top2_e1/a_s0")
MODELS = {"pipeline": RUN / "lora" / "dpo_r2", "ce": RUN / "ce"}
COUNTS = (5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 300)
DRAWS = 200
HALF_WIDTH = 0.05


def main() -> None:
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    sp = homedepot.load_splits("small")
    out: dict = {"models": {k: str(v) for k, v in MODELS.items()}, "draws": DRAWS, "half_width": HALF_WIDTH, "splits": {}}
    for split in ("test_id", "test_ood"):
        frame = getattr(sp, split)
        y, queries = frame["grade"].to_numpy(), frame["query"].to_numpy()
        preds = {}
        for name, path in MODELS.items():
            s = score_pairs(load_checkpoint(path), frame["query"].tolist(), frame["title"].tolist(), batch_size=128,
                            max_length=48)
            preds[name] = s.probs.argmax(1)
        whole = macro_f1(y, preds["pipeline"], 3) - macro_f1(y, preds["ce"], 3)
        names = np.unique(queries)
        rng = np.random.default_rng(0)
        rows = []
        for n in COUNTS:
            halves, wrong, sd = [], 0, []
            for _ in range(DRAWS):
                keep = np.isin(queries, rng.choice(names, size=n, replace=False))
                iv = macro_f1_interval(y[keep], preds["pipeline"][keep], queries[keep], k=3, n_boot=300)
                halves.append((iv["high"] - iv["low"]) / 2)
                sd.append(iv["macro_f1"])
                diff = macro_f1(y[keep], preds["pipeline"][keep], 3) - macro_f1(y[keep], preds["ce"][keep], 3)
                wrong += int(np.sign(diff) != np.sign(whole))
            rows.append({"queries": n, "median_half_width": round(float(np.median(halves)), 4),
                         "macro_f1_sd_across_draws": round(float(np.std(sd)), 4),
                         "wrong_ranking_share": round(wrong / DRAWS, 3)})
            print(split, rows[-1], flush=True)
        out["splits"][split] = {"queries": int(len(names)), "pairs": int(len(y)),
                                "pipeline_minus_ce_whole_split": round(float(whole), 4), "by_count": rows}
    firsts = [next((r["queries"] for r in s["by_count"] if r["median_half_width"] <= HALF_WIDTH), None)
              for s in out["splits"].values()]
    out["threshold"] = None if None in firsts else max(firsts)
    out["load"] = load_window(load0)
    save(RESULTS, out)


if __name__ == "__main__":
    main()
