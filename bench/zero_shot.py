"""Zero-shot blend: what the pretrained backbone's query-item similarity (``StageConfig.zero_shot_blend``)
adds to finished checkpoints, alone and with decision offsets, paired per seed on the Home Depot tests:
``ce`` and ``dpo`` by default, ``--rows`` any of ``ce lp_ft_wi dasa_1000 random_1000 dpo`` (does DASA
still lift OOD once every model gets the blend?). (The ``+offsets`` rows replace
bench/decision_offsets.py, which measured the offsets alone.)

The stage steps run after training in this order: zero-shot blend (``posthoc.decide``:
scale, per-grade weight on the cosine and bias by NLL, kept when its 5-fold cross-fitted NLL is lower),
decision offsets (the same), temperature (ECE). They do
not touch the trained weights, so applying them here to a finished checkpoint with exactly those
functions gives what the stage with the options would save (the blend's free scale absorbs a
temperature the checkpoint already has), and each row of a seed is the same trained weights with and
without them. ``dpo`` fits on val_id plus the 20% of DASA's labels its strength pick kept out, every
other row on val_id. Checkpoints: bench/quality.py's rows (same work directory; trained first, with
``--no-zero-shot``, when missing). The committed results, one process per seed pair:

    .venv/bin/python bench/zero_shot.py --seeds 0 1 2 --work .darl/bench/q_s{seed}
    .venv/bin/python bench/zero_shot.py --seeds 0 1 2 --work .darl/bench/q_s{seed} \
        --rows ce lp_ft_wi dasa_1000 random_1000 dpo --out bench/results/variants/zero_shot_rows.json
    .venv/bin/python bench/zero_shot.py --merge /tmp/zs_a.json /tmp/zs_b.json   # runs of several processes
"""

from __future__ import annotations

import argparse
import json
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
from darl_core.posthoc import finish  # noqa: E402
from darl_core.training import holdout_split  # noqa: E402

KEYS = ("id_macro_f1", "ood_macro_f1", "gap", "id_ece", "ood_ece", "irrelevant_f1", "ood_irrelevant_f1",
        "id_predicted_irrelevant", "ood_predicted_irrelevant", "over_recall")
STEPS = ("offsets", "zs", "zs+offsets")
BASES = ("ce", "lp_ft_wi", "dasa_1000", "random_1000", "dpo")  # bench/quality.py rows
CKPT = {"lp_ft_wi": "wi"}  # a row's checkpoint directory, where it is not the row's name


def names(bases) -> tuple[str, ...]:
    return tuple(f"{b}{s}" for b in bases for s in ("",) + tuple("+" + x for x in STEPS))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--work", default=".darl/bench/quality",
                    help="bench/quality.py's --work directory ({seed} is filled in: one directory per seed)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/variants/zero_shot.json")
    ap.add_argument("--rows", nargs="+", default=["ce", "dpo"], choices=BASES,
                    help="checkpoints to apply the steps to (dpo fits on val_id plus its held-out DASA labels, "
                         "the others on val_id)")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only summarise the runs of these earlier outputs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start, t0 = os.getloadavg(), time.perf_counter()
    sp = homedepot.load_splits("small")
    val, pool = examples(sp.val_id), examples(sp.pool)
    tests = {"id": examples(sp.test_id), "ood": examples(sp.test_ood)}
    merged = [json.loads(Path(f).read_text()) for f in args.merge or []]
    runs = [r for m in merged for r in m["runs"]]
    if args.merge:
        args.seeds = sorted({r["seed"] for r in runs})
    for seed in [] if args.merge else args.seeds:
        root = Path(args.work.format(seed=seed))
        d = root / "small_full" / f"seed{seed}"
        if not all((d / CKPT.get(name, name) / "model.pt").is_file() for name in args.rows):
            subprocess.run([sys.executable, str(Path(__file__).with_name("quality.py")), "--seeds", str(seed),
                            "--threads", str(args.threads), "--rows", *args.rows, "--no-zero-shot",
                            "--work", str(root), "--out", str(root / "quality_zero_shot_bases.json")], check=True)
        cfg = configs(seed, "full", args.threads, 2.0, None)["dpo"].replace(decision_offsets=True)
        _, holdout = holdout_split(cfg, pool.subset(np.load(d / "picked_dasa_1000.npy")))
        for name, sets in ((b, [val, holdout] if b == "dpo" else [val]) for b in args.rows):
            model = load_checkpoint(d / CKPT.get(name, name))
            runs.append({"name": name, "seed": seed, **test_metrics(model, tests, args.threads)})
            base = runs[-1]
            for steps in STEPS:
                model = load_checkpoint(d / CKPT.get(name, name))
                # the stage's own post-hoc chain (posthoc.finish: guarded, cross-fitted over query folds)
                fit, _ = finish(model, val, sets[1] if len(sets) > 1 else None,
                                cfg.replace(zero_shot_blend="zs" in steps, decision_offsets="offsets" in steps,
                                            calibrate=True, dpo_alphas=(0.0,)), lambda *a: None)
                runs.append({"name": f"{name}+{steps}", "seed": seed, **test_metrics(model, tests, args.threads),
                             **{k: v for k, v in fit.items() if k.startswith(("zero_shot", "offsets", "decision"))},
                             "temperature": fit["temperature"]})
                r = runs[-1]
                print(f"seed {seed} {name}+{steps}: blend {'kept' if fit.get('zero_shot_kept') else '-'} "
                      f"offsets {'kept' if fit.get('offsets_kept') else '-'}  ID {base['id_macro_f1']:.4f} -> "
                      f"{r['id_macro_f1']:.4f}  OOD {base['ood_macro_f1']:.4f} -> {r['ood_macro_f1']:.4f}  "
                      f"ECE {r['id_ece']:.3f}/{r['ood_ece']:.3f}", flush=True)
    bases = [b for b in BASES if any(r["name"] == b for r in runs)]
    rows = []
    for name in names(bases):
        rs = [r for r in runs if r["name"] == name]
        rows.append({"name": name, "seeds": len(rs), **{k: mean_sd([r[k] for r in rs]) for k in KEYS}})

    def lift(a: str, b: str, key: str) -> dict:
        by_seed = {r["seed"]: r[key] for r in runs if r["name"] == a}
        return mean_sd([r[key] - by_seed[r["seed"]] for r in runs if r["name"] == b])
    pairs = [(n, f"{n}+{s}") for n in bases for s in STEPS] + [
        (a + s, b + t) for a, b, s, t in [("ce", "dpo", "", ""), ("ce", "dpo", "", "+zs+offsets"),
                                          ("ce", "dpo", "+zs+offsets", "+zs+offsets"), ("ce", "dpo", "+offsets", "+offsets"),
                                          ("lp_ft_wi", "dasa_1000", "", ""), ("lp_ft_wi", "random_1000", "", ""),
                                          ("lp_ft_wi", "dasa_1000", "+zs+offsets", "+zs+offsets"),
                                          ("lp_ft_wi", "random_1000", "+zs+offsets", "+zs+offsets"),
                                          ("ce", "lp_ft_wi", "+zs+offsets", "+zs+offsets")]
        if a in bases and b in bases]
    lifts = {f"{b} - {a}": {k: lift(a, b, k) for k in ("id_macro_f1", "ood_macro_f1")} for a, b in pairs}
    save(Path(args.out), {"seeds": args.seeds, "work": args.work, "rows": rows, "lifts": lifts,
                          "runs": [{k: v for k, v in r.items() if not k.endswith("_predicted")} for r in runs],
                          "wall_s": sum(m["wall_s"] for m in merged) if merged else time.perf_counter() - t0,
                          "load": [m["load"] for m in merged] if merged else load_window(load_start)})
    for a, v in lifts.items():
        print(f"{a}: ID {v['id_macro_f1']['mean']:+.4f}  OOD {v['ood_macro_f1']['mean']:+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
