"""How quality grows with the label budget: the quality table's ``dasa`` stage after ``lp_ft_wi`` with
N pool labels picked by DASA (the product default) or at random, N in ``--budgets``.

Same protocol, configs and stage directories as ``bench/quality.py`` (rows ``dasa_<N>`` and ``random_<N>``
under each seed's directory), so the 1,000-label rows and the ``lp_ft_wi`` checkpoint of a finished quality
run are reused, not retrained. Not part of the quality table: it answers "how many labels should we buy?".

    nice -n 10 .venv/bin/python bench/budget.py --seeds 0 --work .darl/bench/q_s0   # one seed per process
    .venv/bin/python bench/budget.py --merge .darl/bench/q_s0 .darl/bench/q_s1 .darl/bench/q_s2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import configs, examples, mean_sd, merged_runs, pick, test_metrics  # noqa: E402

from darl_core import homedepot  # noqa: E402
from darl_core.training import run_stage  # noqa: E402

METHODS = ("dasa", "random")
KEYS = ("id_macro_f1", "ood_macro_f1", "gap", "id_ece", "ood_ece", "irrelevant_f1", "val_macro_f1")


def summarise(runs: list[dict]) -> list[dict]:
    """Mean ± sd per (method, budget), with the lift over each seed's lp_ft_wi (budget 0)."""
    base = {r["seed"]: r for r in runs if r["budget"] == 0}
    out = []
    for key in sorted({(r["method"], r["budget"]) for r in runs}, key=lambda k: (k[1], k[0])):
        rs = [r for r in runs if (r["method"], r["budget"]) == key]
        row: dict = {"method": key[0], "budget": key[1], "seeds": len(rs)}
        for k in KEYS:
            vals = [r[k] for r in rs]
            row[k] = mean_sd(vals)
        lifts = [r["ood_macro_f1"] - base[r["seed"]]["ood_macro_f1"] for r in rs if r["seed"] in base]
        if lifts and key[1] > 0:
            row["ood_lift"] = mean_sd(lifts)
        out.append(row)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--replay-ratio", type=float, default=1.0, help="dasa stage: replayed training pairs per new "
                    "label (the quality table's 1; use a --work of its own for another value)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=".darl/bench/quality", help="a bench/quality.py --work directory")
    ap.add_argument("--out", default="bench/results/budget.json")
    ap.add_argument("--merge", nargs="+", metavar="WORK", help="only write --out from these work directories")
    args = ap.parse_args()
    sub = "small_full"  # the quality table's profile and tuning
    if args.merge:
        runs = merged_runs(args.merge, sub, "budget_runs.json", "run bench/budget.py with that --work first")
        Path(args.out).write_text(json.dumps(summarise(runs), indent=1))
        print(f"{len(runs)} runs from {len(args.merge)} work directories -> {args.out}")
        return 0
    if any(b < 1 for b in args.budgets):
        raise SystemExit("budgets must be positive numbers of labels")
    torch.set_num_threads(args.threads)
    work = Path(args.work) / sub
    runs_file = work / "budget_runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.is_file() else []
    sp = homedepot.load_splits("small")
    train, val, pool = examples(sp.train), examples(sp.val_id), examples(sp.pool)
    tests = {"id": examples(sp.test_id), "ood": examples(sp.test_ood)}

    def log(ev) -> None:
        if ev.step % 100 == 0 and ev.step > 0:
            print(f"  [{ev.stage}] {time.strftime('%H:%M:%S')} {ev.message}", flush=True)

    def record(seed: int, method: str, budget: int, res, **extra) -> None:
        if any((r["seed"], r["method"], r["budget"]) == (seed, method, budget) for r in runs):
            return
        m = test_metrics(res.checkpoint, tests, args.threads)
        runs.append({"seed": seed, "method": method, "budget": budget, "val_macro_f1": res.metrics["val_macro_f1"],
                     **{k: m[k] for k in KEYS if k in m}, **extra})
        runs_file.write_text(json.dumps(runs, indent=1))
        print(f"seed {seed} {method} {budget}: ID {m['id_macro_f1']:.4f} OOD {m['ood_macro_f1']:.4f}", flush=True)

    for seed in args.seeds:
        d = work / f"seed{seed}"
        cfg = configs(seed, "full", args.threads, 2.0, None, replay_ratio=args.replay_ratio)
        lp = run_stage(cfg["lp"], train, val, d / "lp", progress=log)  # reused when the quality run made them
        ft = run_stage(cfg["ft"], train, val, d / "ft", parent=lp.checkpoint, progress=log)
        wi = run_stage(cfg["wi"], train, val, d / "wi", parent=ft.checkpoint, progress=log)
        record(seed, "none", 0, wi)
        for budget in sorted(args.budgets):
            for method in args.methods:
                name = f"{method}_{budget}"
                picked_file = d / f"picked_{name}.npy"
                if not picked_file.is_file():
                    np.save(picked_file, pick(name, wi.checkpoint, train, pool, seed, d, budget=budget))
                rows = np.load(picked_file)
                ood_share = float((sp.pool["split"].to_numpy()[rows] == "pool_ood").mean())
                res = run_stage(cfg["dasa"], train, val, d / name, parent=wi.checkpoint, new_labels=pool.subset(rows),
                                progress=log)
                record(seed, method, budget, res, picked_ood_share=ood_share, replay_ratio=args.replay_ratio)
    Path(args.out).write_text(json.dumps(summarise(runs), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
