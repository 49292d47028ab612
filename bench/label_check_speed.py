"""Time of the cheap label check over 50,000 labelled pairs (issue 23 target: <= 5 minutes on this machine).

The pairs are the Home Depot ``full`` profile's train, pool and val_id rows (the first 50,000); the check is
what ``db.services.label_check.run_label_check`` computes with the default (pretrained backbone, 5
query-grouped folds, ordinal cleanlab): the pooled embeddings (``embeddings.model_compute``, as the
service's embedding cache fills), then the cross-fitted head and the ranking. The two are timed apart:
the embeddings are cached per version and shared with maps and selection, so a project whose pairs
were embedded already pays the second part only. Not timed: the database reads and the 50k row insert.

    .venv/bin/python bench/label_check_speed.py [--pairs 50000] [--threads N]

--threads defaults to torch's own count (every core), what the worker's check job gets.
Writes bench/results/label_check_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import load_window, save  # noqa: E402
from darl_core import homedepot  # noqa: E402
from darl_core.embeddings import model_compute  # noqa: E402
from darl_core.label_issues import out_of_fold_probs, rank_issues  # noqa: E402
from darl_core.model import load_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "label_check_speed.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--cache", type=Path, default=Path("/tmp/darl_bench"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    sp = homedepot.load_splits("full")
    frame = pd.concat([sp.train, sp.pool, sp.val_id], ignore_index=True).head(args.pairs)
    queries, items = frame["query"].tolist(), frame["title"].tolist()
    cache = args.cache / f"label_check_speed_{len(frame)}.npy"
    t0 = time.perf_counter()
    earlier = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    cached = cache.is_file()
    if cached:  # embedded by an earlier run: its embedding time stands (the cross-fit is timed anew)
        emb, embed_s = np.load(cache), earlier.get("embed_seconds") if earlier.get("pairs") == args.pairs else None
    else:
        emb = model_compute(load_model())(queries, items)[0]
        embed_s = time.perf_counter() - t0
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, emb)
    grades = frame["grade"].to_numpy()
    groups = pd.factorize(frame["query"])[0]
    t1 = time.perf_counter()
    found = rank_issues(grades, out_of_fold_probs(emb, grades, groups, 3, folds=5, seed=0), method="ordinal")
    check_s = time.perf_counter() - t1
    result = {"pairs": len(frame), "queries": int(groups.max() + 1), "torch_threads": args.threads,
              "embed_seconds": None if embed_s is None else round(embed_s, 1),
              "embed_load": earlier.get("embed_load", earlier.get("load")) if cached else load_window(load0),
              "cross_fit_and_rank_seconds": round(check_s, 1),
              "total_seconds": None if embed_s is None else round(embed_s + check_s, 1),
              "n_issues": found.n_issues, "target_total_le_300_s": None if embed_s is None else embed_s + check_s <= 300,
              "load": load_window(load0), "cpu_count": os.cpu_count()}
    print(result, flush=True)
    save(RESULTS, result)


if __name__ == "__main__":
    main()
