"""DASA by query vs by pair at the same label budget, on the Home Depot protocol (profile ``small``).

The bank is the labelled train split (6,000 pairs); the pool is pool_ood + pool_id (4,000 + 4,000 pairs,
3,886 queries). Every pair is embedded once with the pretrained backbone (the product's own pair embedding:
``darl_core.embeddings.lazy_compute(None)``, no training, cached under ``--cache``) and scored once with the
default detector (the ensemble, ``SelectionConfig()``). Then, for each seed, a 1,000-pair batch:
- ``by_pair``: ``select_batch`` (today's DASA; the baseline);
- ``by_query_mean`` / ``by_query_max``: ``select_by_query`` with up to ``per_query`` pairs of each query,
  queries ranked by the mean / max OOD score of their pool pairs;
- ``random``: 1,000 pool pairs drawn uniformly (the floor).
Reported: the share of pool_ood pairs among the picks (all, and the main picks without the control slice),
the queries covered, and pairs per query; each by-query figure also as a ratio to by_pair of the same seed.
Not run here: the ``dasa`` training stage's test_ood macro-F1 after labelling each batch (CPU is scarce).

    nice -n 10 .venv/bin/python bench/select_by_query.py [--seeds 0,1,2] [--per-query 10] [--cache DIR]
Writes bench/results/select_by_query.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darl_core.homedepot import load_splits  # noqa: E402
from darl_core.query_selection import select_by_query  # noqa: E402
from darl_core.selection import SelectionConfig, score_pool, select_batch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "select_by_query.json"


def embeddings(cache: Path, name: str, queries: list[str], titles: list[str]) -> np.ndarray:
    from darl_core.embeddings import lazy_compute

    path = cache / f"select_by_query-base-{name}.npy"
    if path.is_file():
        return np.load(path)
    t0 = time.time()
    emb, _ = lazy_compute(None)(queries, titles)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, emb.astype(np.float32))
    print(f"embedded {name}: {len(queries)} pairs in {time.time() - t0:.0f} s", flush=True)
    return emb


def figures(rows: list[int], control: list[bool], is_ood: np.ndarray, query_ids: list[str]) -> dict[str, Any]:
    rows_a = np.asarray(rows)
    main = rows_a[~np.asarray(control)] if any(control) else rows_a
    per = np.unique(np.asarray(query_ids, dtype=object)[rows_a], return_counts=True)[1]
    return {"n": len(rows), "ood_share": round(float(is_ood[rows_a].mean()), 4),
            "ood_share_main_picks": round(float(is_ood[main].mean()), 4), "queries": len(per),
            "pairs_per_query_mean": round(float(per.mean()), 2), "pairs_per_query_max": int(per.max())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--per-query", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/darl_bench"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    t_start, load0 = time.time(), os.getloadavg()
    splits = load_splits("small")
    bank_df, pool_df = splits.train, splits.pool
    bank = embeddings(args.cache, "train", bank_df["query"].tolist(), bank_df["title"].tolist())
    pool = embeddings(args.cache, "pool", pool_df["query"].tolist(), pool_df["title"].tolist())
    labels = bank_df["grade"].to_numpy()
    is_ood = (pool_df["split"] == "pool_ood").to_numpy()
    query_ids = pool_df["query"].tolist()
    config = SelectionConfig()
    t0 = time.time()
    scores = score_pool(pool, bank, config=config, bank_labels=labels)
    score_s = time.time() - t0
    runs: dict[str, dict[str, Any]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        out: dict[str, Any] = {}
        t0 = time.time()
        sel = select_batch(pool, bank, budget=args.budget, config=config, bank_labels=labels, pool_scores=scores,
                           seed=seed)
        out["by_pair"] = figures([s.index for s in sel], [s.is_control for s in sel], is_ood, query_ids) | {
            "seconds": round(time.time() - t0, 2)}
        for aggregate in ("mean", "max"):
            t0 = time.time()
            sel = select_by_query(pool, bank, budget=args.budget, query_ids=query_ids, per_query=args.per_query,
                                  aggregate=aggregate, config=config, bank_labels=labels, pool_scores=scores, seed=seed)
            f = figures([s.index for s in sel], [s.is_control for s in sel], is_ood, query_ids)
            f["seconds"] = round(time.time() - t0, 2)
            f["ood_share_vs_by_pair"] = round(f["ood_share"] / out["by_pair"]["ood_share"], 3)
            f["queries_vs_by_pair"] = round(f["queries"] / out["by_pair"]["queries"], 3)
            out[f"by_query_{aggregate}"] = f
        rng = np.random.default_rng(seed)
        out["random"] = figures(list(rng.choice(len(pool), args.budget, replace=False)), [False] * args.budget,
                                is_ood, query_ids)
        runs[f"seed_{seed}"] = out
        print(f"seed {seed}: " + ", ".join(f"{k} OOD {v['ood_share']:.3f} / {v['queries']} queries"
                                            for k, v in out.items()), flush=True)
    methods = ("by_pair", "by_query_mean", "by_query_max", "random")
    summary = {m: {k: round(float(np.mean([r[m][k] for r in runs.values()])), 4)
                   for k in ("ood_share", "ood_share_main_picks", "queries", "pairs_per_query_mean")}
               for m in methods}
    for m in ("by_query_mean", "by_query_max"):
        summary[m]["ood_share_vs_by_pair"] = round(summary[m]["ood_share"] / summary["by_pair"]["ood_share"], 3)
        summary[m]["ood_share_sd_over_seeds"] = round(float(np.std([r[m]["ood_share"] for r in runs.values()])), 4)
    result = {
        "what": "share of pool_ood pairs among a 1,000-pair DASA batch: by query (mean, max aggregate) vs by pair",
        "baseline": "by_pair (select_batch, today's default), same seeds, same scores; random as the floor",
        "setup": {"profile": "small", "bank": f"train {len(bank_df):,} labelled pairs",
                  "pool": f"pool_ood {int(is_ood.sum()):,} + pool_id {int((~is_ood).sum()):,} pairs, "
                          f"{pool_df['query'].nunique():,} queries",
                  "pairs_per_query_in_pool": {"mean": round(float(pool_df.groupby('query').size().mean()), 2),
                                              "max": int(pool_df.groupby('query').size().max())},
                  "budget": args.budget, "per_query": args.per_query, "embedding": "pretrained backbone, no training",
                  "detector": config.detector, "order": "ood (untrained head: no logits)",
                  "scoring_seconds": round(score_s, 1)},
        "summary_mean_over_seeds": summary, "runs": runs,
        "not_run": "the dasa stage's test_ood macro-F1 after labelling each batch (needs training; CPU is scarce)",
        "machine": {"cores": os.cpu_count(), "load_avg_start": [round(x, 2) for x in load0],
                    "load_avg_end": [round(x, 2) for x in os.getloadavg()], "wall_s": round(time.time() - t_start, 1)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
