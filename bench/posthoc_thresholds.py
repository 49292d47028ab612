"""Where do the post-hoc guards' support thresholds lie? (issue 26, item 1)

A stage skips its post-hoc steps (zero-shot blend, decision offsets, temperature) when validation has
fewer than ``posthoc_min_queries`` queries or fewer than ``posthoc_min_per_grade`` pairs of some grade.
This measures what the steps do as validation shrinks: one trained checkpoint is scored once on the
protocol's whole val_id split (``full`` profile, ~6,300 pairs of ~990 queries), on the labelled shifted
pool (pool_ood of the ``small`` profile: the pairs DASA's simulated annotators label, never a test split)
and on test_id / test_ood; then, for each size, ``--draws`` validation sets of that many queries are
drawn, every step is decided on them by ``posthoc.decide`` with the support thresholds switched off (the
cross-fitted no-harm guards still on), and the decided steps are applied to the other sets. The change
in macro-F1 and ECE against leaving every step out, per size, says below which size the steps do harm
even when cross-fitted. Thresholds are CHOSEN on ``val_rest`` (the val_id queries not drawn) and
``pool_ood`` only; the test columns are reported, not used. The same draws under the default thresholds
show what the skip buys.

    nice -n 10 .venv/bin/python bench/posthoc_thresholds.py --checkpoint .darl/bench/robustness/top2_e1/a_s0/lora/dasa
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import load_window, save  # noqa: E402
from darl_core import homedepot, posthoc  # noqa: E402
from darl_core.config import stage_config  # noqa: E402
from darl_core.metrics import ece, macro_f1, softmax  # noqa: E402
from darl_core.model import load_checkpoint, score_pairs, zero_shot_similarity  # noqa: E402

SETS = ("val_rest", "pool_ood", "id", "ood")  # chosen on the first two; the test splits are only reported
HARM = 0.005  # a draw "harms" a split when its test macro-F1 falls by more than half a point


def scored(model, frame) -> posthoc.Labelled:  # noqa: ANN001
    q, t = frame["query"].tolist(), frame["title"].tolist()
    z = score_pairs(model, q, t, batch_size=128, max_length=48).logits
    cos = zero_shot_similarity(model, q, t, batch_size=128, max_length=48)
    return posthoc.Labelled(frame["grade"].to_numpy(), np.asarray(q, dtype=str), np.zeros(len(q), dtype=bool),
                            {None: z}, cos)


def sub(data: posthoc.Labelled, rows: np.ndarray) -> posthoc.Labelled:
    return posthoc.Labelled(data.grades[rows], data.queries[rows], data.held[rows],
                            {k: z[rows] for k, z in data.logits.items()}, None if data.cos is None else data.cos[rows])


def test_scores(dec: posthoc.Decisions, tests: dict[str, posthoc.Labelled]) -> dict[str, float]:
    out = {}
    for split, data in tests.items():
        z = posthoc.apply(dec, data, np.arange(len(data)))
        out[f"{split}_macro_f1"] = macro_f1(data.grades, z.argmax(1), z.shape[1])
        out[f"{split}_ece"] = ece(data.grades, softmax(z))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True, help="a trained stage directory (model.pt)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5, 8, 16, 32, 64, 128, 256, 400])
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/posthoc_thresholds.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0, t0 = os.getloadavg(), time.perf_counter()
    model = load_checkpoint(Path(args.checkpoint))
    val = scored(model, homedepot.load_splits("full").val_id)
    sp = homedepot.load_splits("small")
    pool_ood = sp.pool[sp.pool["split"] == "pool_ood"].reset_index(drop=True)
    tests = {"id": scored(model, sp.test_id), "ood": scored(model, sp.test_ood), "pool_ood": scored(model, pool_ood)}
    raw = test_scores(posthoc.Decisions(), tests)
    print(f"scored in {time.perf_counter() - t0:.0f} s; raw test {raw}", flush=True)
    base = stage_config("dpo", {"num_grades": val.logits[None].shape[1]})
    configs = {"no_thresholds": replace(base, posthoc_min_queries=2, posthoc_min_per_grade=0),
               "default_thresholds": base}
    distinct = np.unique(val.queries)
    rows_of = {q: np.flatnonzero(val.queries == q) for q in distinct}
    sizes: list[dict] = []
    for n in args.sizes:
        draws: dict[str, list[dict]] = {name: [] for name in configs}
        for d in range(args.draws):
            rng = np.random.default_rng([n, d])
            rows = np.sort(np.concatenate([rows_of[q] for q in rng.choice(distinct, size=n, replace=False)]))
            counts = np.bincount(val.grades[rows], minlength=val.logits[None].shape[1])
            rest = np.setdiff1d(np.arange(len(val)), rows)
            sets = {**tests, "val_rest": sub(val, rest)}
            before = {**raw, **test_scores(posthoc.Decisions(), {"val_rest": sets["val_rest"]})}
            for name, cfg in configs.items():
                dec = posthoc.decide(val, rows, replace(cfg, seed=d))
                s = test_scores(dec, sets)
                draws[name].append({"pairs": len(rows), "min_per_grade": int(counts.min()),
                                    "kept": sorted(k for k, r in dec.record.items() if r["kept"]),
                                    **{k: s[k] - before[k] for k in s}})
        entry: dict = {"queries": n, "pairs": float(np.mean([x["pairs"] for x in draws["no_thresholds"]])),
                       "min_per_grade": float(np.median([x["min_per_grade"] for x in draws["no_thresholds"]]))}
        for name, xs in draws.items():
            entry[name] = {
                **{f"{split}_{m}_change": float(np.mean([x[f"{split}_{m}"] for x in xs]))
                   for split in SETS for m in ("macro_f1", "ece")},
                **{f"{split}_harmed_share": float(np.mean([x[f"{split}_macro_f1"] < -HARM for x in xs]))
                   for split in SETS},
                "kept_share": {step: float(np.mean([step in x["kept"] for x in xs]))
                               for step in ("zero_shot_blend", "offsets", "temperature")},
            }
        sizes.append(entry)
        e = entry["no_thresholds"]
        print(f"{n} queries ({entry['pairs']:.0f} pairs, min/grade {entry['min_per_grade']:.0f}): "
              + " ".join(f"{k} {e[k + '_macro_f1_change']:+.4f}/{e[k + '_ece_change']:+.4f}" for k in SETS)
              + f" kept {e['kept_share']}", flush=True)
    save(Path(args.out), {"checkpoint": args.checkpoint, "val_pool": {"pairs": len(val), "queries": len(distinct)},
                          "raw_test": raw, "draws": args.draws, "harm": HARM, "sizes": sizes,
                          "wall_s": time.perf_counter() - t0, "load": load_window(load0)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
