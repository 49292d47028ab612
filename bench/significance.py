"""Is a quality-table difference beyond test-set noise? Paired, query-clustered bootstrap of macro-F1.

Scores the checkpoints of two table rows (one per seed) on test_id and test_ood of the Home Depot
protocol and reports, per test set, B's macro-F1 minus A's (each side the mean over its seeds, as the
table row), a 95% interval from resampling whole queries (the splits are by query, so pairs of one
query are not independent), how often a resample has B no better than A, and how often it reaches the
given target differences. Only the test sets are resampled: seed-to-seed training noise is the
table's sd column, not this interval.

With no arguments it compares `ce` and `dpo` as ``bench/quality.py`` leaves them with its defaults
(work directory ``.darl/bench/quality``, seed 0). The committed result, from per-seed work directories:

    .venv/bin/python bench/significance.py --seeds 0 1 2 \\
        --a ce=.darl/bench/ce_s{seed}/small_full/seed{seed}/ce \\
        --b dpo=.darl/bench/q_s{seed}/small_full/seed{seed}/dpo
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import load_window, save  # noqa: E402
from darl_core import homedepot  # noqa: E402
from darl_core.metrics import macro_f1_difference  # noqa: E402
from darl_core.model import load_checkpoint, score_pairs  # noqa: E402

SPLITS = {"id": "test_id", "ood": "test_ood"}


def predictions(ckpt: Path, frames: dict, cache: Path) -> dict[str, np.ndarray]:
    """Predicted grades of one checkpoint per test split, cached by the checkpoint's path and mtime."""
    weights = ckpt / "model.pt"
    if not weights.is_file():
        raise SystemExit(f"no checkpoint at {ckpt} (expected {weights}); run bench/quality.py for that row first")
    key = hashlib.sha1(f"{weights.resolve()}:{weights.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    path = cache / f"{key}.npz"
    if path.is_file():
        return dict(np.load(path))
    model = load_checkpoint(ckpt)
    out = {}
    for split, frame in frames.items():
        s = score_pairs(model, frame["query"].tolist(), frame["title"].tolist(), batch_size=128, max_length=48)
        out[split] = s.probs.argmax(axis=1)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="ce=.darl/bench/quality/small_full/seed{seed}/ce", metavar="NAME=DIR",
                    help="baseline row: name and checkpoint directory, {seed} standing for the seed")
    ap.add_argument("--b", default="dpo=.darl/bench/quality/small_full/seed{seed}/dpo", metavar="NAME=DIR",
                    help="compared row, as --a")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--targets", type=float, nargs="*", default=[0.03, 0.05],
                    help="differences whose reach is reported (issue 3: +3 points ID, +5 OOD)")
    ap.add_argument("--n-boot", type=int, default=5000)
    ap.add_argument("--profile", default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=".darl/bench/predictions")
    ap.add_argument("--out", default="bench/results/significance.json")
    args = ap.parse_args()
    load0 = os.getloadavg()
    torch.set_num_threads(args.threads)
    sides = {}
    for flag in ("a", "b"):
        name, sep, template = getattr(args, flag).partition("=")
        if not sep or "{seed}" not in template:
            raise SystemExit(f"--{flag} must be NAME=DIR with {{seed}} in DIR, got {getattr(args, flag)!r}")
        sides[flag] = (name, template)
    sp = homedepot.load_splits(args.profile)
    frames = {split: getattr(sp, attr) for split, attr in SPLITS.items()}
    t0 = time.perf_counter()
    preds = {flag: [predictions(Path(template.format(seed=s)), frames, Path(args.cache)) for s in args.seeds]
             for flag, (_, template) in sides.items()}
    result: dict = {"a": sides["a"][0], "b": sides["b"][0], "seeds": args.seeds, "profile": args.profile,
                    "method": "paired bootstrap over queries of the test set; each side is the mean of its seeds"}
    for split, frame in frames.items():
        y = frame["grade"].to_numpy()
        a = np.stack([p[split] for p in preds["a"]])
        b = np.stack([p[split] for p in preds["b"]])
        r = macro_f1_difference(y, a, b, frame["query"].tolist(), k=int(y.max()) + 1, n_boot=args.n_boot,
                                thresholds=args.targets)
        result[split] = r
        print(f"{split}: {sides['b'][0]} - {sides['a'][0]} macro-F1 {r['difference']:+.4f} "
              f"[{r['low']:+.4f}, {r['high']:+.4f}] over {r['groups']} queries; B no better in "
              f"{r['share_below_zero']:.1%}; " + ", ".join(f">= {t}: {v:.1%}" for t, v in r["share_at_least"].items()),
              flush=True)
    result["wall_s"] = time.perf_counter() - t0
    result["load"] = load_window(load0)
    save(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
