"""How large should a drawn validation set be? (issue 26.) Validation-side data only.

When the user's val split is small, ``darl_core.validation.draw_validation`` moves whole training queries
into it: ``VAL_SHARE`` (10%) of them, at least ``VAL_MIN_QUERIES`` (8) in all. A larger share gives the
post-hoc steps more support (they need 128 queries) and the figures narrower intervals, but takes pairs from
training. This runs the product's default chain (lp -> ft (LoRA) -> wi -> DASA round -> dasa -> dpo, cheap
profile) on variant c of bench/robustness.py (1,500 training pairs, a 5-query val split, 400 DASA labels)
with the share at 5%, 10% and 20%, and judges each final model on labelled shifted data that nobody picked,
trained on or tested: a seeded sample of the unpicked labelled pool (up to 1,500 pool_id and 1,500 pool_ood
pairs, as bench/temperature_guard.py). Test splits are not read.

    nice -n 10 .venv/bin/python bench/val_draw.py --shares 0.05 0.1 0.2 --seeds 0 1 2

When is a val split too small to use as it is? ``VAL_MIN_QUERIES`` (8) decides whether a draw happens at all:
a val split of 8 to 127 queries is used as given, and every post-hoc step is then skipped (they need 128).
``--given-queries K --min-queries M`` runs the same chain with a K-query val split (drawn from Home Depot's
val_id, as variant c's 5), topped up when it has fewer than M queries: M <= K uses the split as given (the
rule before this measurement: VAL_MIN_QUERIES, 8), M = 128 tops it up by the 10% share (the rule since:
POSTHOC_MIN_QUERIES, the post-hoc steps' threshold). K must also pass ``MIN_VAL`` (50 pairs) for the split to be used as given: val_id has about
1.6 pairs a query, so 24 queries (37 pairs) are topped up either way and 60 queries (100 pairs) are not.
Rows are keyed by share, seed, K and M.

    nice -n 10 .venv/bin/python bench/val_draw.py --shares 0.1 --given-queries 60 --min-queries 8 128
Writes bench/results/val_draw.json (rows are added; a finished row is not rerun).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import robustness  # noqa: E402
from quality import configs, pick  # noqa: E402

from bench.common import load_window, save  # noqa: E402
from darl_core import validation  # noqa: E402
from darl_core.metrics import evaluate  # noqa: E402
from darl_core.model import load_checkpoint, score_pairs  # noqa: E402
from darl_core.training import run_stage  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "val_draw.json"
WORK = Path(".darl/bench/val_draw")
SAMPLE = 1500


def judge(ckpt: Path, data: dict, picked: np.ndarray, seed: int) -> dict:
    """Macro-F1 and ECE on the unpicked labelled pool, per part (the same sample for every share of a seed)."""
    model, out = load_checkpoint(ckpt), {}
    taken = set(picked.tolist())
    for part in ("pool_id", "pool_ood"):
        rng = np.random.default_rng([seed, 26])
        cand = np.flatnonzero(data["pool_split"] == part)
        sample = np.sort(rng.choice(cand, size=min(SAMPLE, len(cand)), replace=False))
        sample = np.array([i for i in sample if i not in taken])  # what this run's round picked is left out
        ex = data["pool"].subset(sample)
        m = evaluate(ex.grades, score_pairs(model, ex.queries, ex.items, batch_size=128, max_length=48).probs,
                     ex.queries)
        out.update({f"{part}_macro_f1": round(m["macro_f1"], 4), f"{part}_ece": round(m["ece"], 4),
                    f"{part}_pairs": len(sample)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--given-queries", type=int, default=robustness.VARIANTS["c"]["val_queries"],
                    help="queries in the val split given (variant c: 5)")
    ap.add_argument("--min-queries", type=int, nargs="+", default=[validation.VAL_MIN_QUERIES],
                    help="VAL_MIN_QUERIES values to run (the draw happens below this many val queries)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    rows: list[dict] = result.setdefault("rows", [])
    given, default_min = robustness.VARIANTS["c"]["val_queries"], validation.VAL_MIN_QUERIES
    have = {(r["share"], r["seed"], r.get("given_queries", given), r.get("min_queries", default_min)) for r in rows}
    robustness.VARIANTS["c"]["val_queries"] = args.given_queries
    for seed, share, min_q in ((a, b, c) for a in args.seeds for b in args.shares for c in args.min_queries):
        if (share, seed, args.given_queries, min_q) in have:
            continue
        validation.VAL_SHARE = share  # all read by draw_validation at call time
        # min_q: the query count below which a split is topped up (8: VAL_MIN_QUERIES alone, the rule before this
        # measurement; 128: POSTHOC_MIN_QUERIES, the post-hoc steps' threshold, the rule after it)
        validation.VAL_MIN_QUERIES, validation.POSTHOC_MIN_QUERIES = min(min_q, default_min), min_q
        t0 = time.perf_counter()
        data = robustness.variant_data("c", seed)
        d = WORK / f"c_s{seed}_share{share:g}"
        if (args.given_queries, min_q) != (given, default_min):
            d = WORK / f"c_s{seed}_share{share:g}_given{args.given_queries}_min{min_q}"
        dpo_key = "dpo"
        if share == 0.1 and (args.given_queries, min_q) == (given, default_min):
            # the default: bench/robustness.py's cheap-profile chain, reused (its real r3 dpo dir)
            d, dpo_key = robustness.WORK / "top2_e1" / f"c_s{seed}" / "lora", "dpo_r3"
        cfg = configs(seed, "lora", args.threads, 1.0, 2, num_grades=data["k"])
        train, val, pool = data["train"], data["val"], data["pool"]

        def stage(key: str, config, d=d, train=train, val=val, **kw):  # noqa: ANN001, ANN202
            return run_stage(config, train, val, d / key, **kw)

        lp = stage("lp", cfg["lp"])
        ft = stage("ft", cfg["ft"], parent=lp.checkpoint)
        wi = stage("wi", cfg["wi"], parent=ft.checkpoint)
        picked_file = d / "picked.npy"
        if not picked_file.is_file():
            np.save(picked_file, pick(f"dasa_{data['budget']}", wi.checkpoint, train, pool, seed, d,
                                      budget=data["budget"]))
        picked = np.load(picked_file)
        new = pool.subset(picked)
        dasa = stage("dasa", cfg["dasa"], parent=wi.checkpoint, new_labels=new)
        dpo = stage(dpo_key, cfg["dpo"], parent=dasa.checkpoint, new_labels=new)
        row = {"share": share, "seed": seed, "given_queries": args.given_queries, "min_queries": min_q,
               "train_pairs": data["train_pairs"], "val_pairs": data["val_pairs"],
               "val_queries": data["val_queries"], "val_macro_f1": round(dpo.metrics["val_macro_f1"], 4),
               "wi_alpha": wi.metrics.get("alpha"),
               "posthoc": {**robustness.kept_steps(wi.metrics), **robustness.kept_steps(dpo.metrics)}, **judge(dpo.checkpoint, data, picked, seed),
               "wall_s": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(row, flush=True)
        result.update(protocol=__doc__.split("\n\n")[1].replace("\n", " "), load=load_window(load0))
        save(RESULTS, result)
    by: dict = {}
    for r in rows:
        g, m = r.get("given_queries", given), r.get("min_queries", default_min)
        by.setdefault(str(r["share"]) if (g, m) == (given, default_min) else f"{r['share']}_given{g}_min{m}", []).append(r)
    result["by_share"] = {s: {k: round(float(np.mean([r[k] for r in rs])), 4) for k in
                              ("train_pairs", "val_queries", "pool_id_macro_f1", "pool_ood_macro_f1", "pool_id_ece",
                               "pool_ood_ece")} | {"seeds": len(rs)} for s, rs in sorted(by.items())}
    save(RESULTS, result)


if __name__ == "__main__":
    main()
