"""Ablation of the DaRL loss terms on ``val_id``, cheap enough to run on CPU: a linear probe (grade head)
trained with each loss variant on frozen pretrained MiniLM features of the 6,000 train pairs, 3 seeds.

It picks the forms and weights; the quality benchmark then fine-tunes with the chosen loss.
Features are read from the quality bench's lp stage cache when present, else computed.

    nice -n 10 .venv/bin/python bench/loss_ablation.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from darl_core import homedepot  # noqa: E402
from darl_core.config import LossConfig  # noqa: E402
from darl_core.losses import class_weights_for, darl_loss  # noqa: E402
from darl_core.metrics import evaluate  # noqa: E402
from darl_core.model import load_model, score_pairs  # noqa: E402

VARIANTS = {
    "ce_plain": LossConfig(class_weights=None),
    "ce (inverse weights)": LossConfig(),
    "ce + label smoothing 0.1": LossConfig(label_smoothing=0.1),
    "ce + ordinal (γ=1, λ=1)": LossConfig(ordinal_weight=1.0, ordinal_power=1.0),
    "ce + ordinal (γ=2, λ=1)": LossConfig(ordinal_weight=1.0, ordinal_power=2.0),
    "ce + ordinal (γ=2, λ=3)": LossConfig(ordinal_weight=3.0, ordinal_power=2.0),
    "ce + occ dca (λ=1)": LossConfig(occ_weight=1.0),
    "ce + occ dca (λ=3)": LossConfig(occ_weight=3.0),
    "ce + occ entropy (λ=0.1)": LossConfig(occ_weight=0.1, occ_form="entropy"),
    "darl: ordinal γ=2 λ=1 + dca λ=1": LossConfig(ordinal_weight=1.0, occ_weight=1.0),
    "darl: ordinal γ=2 λ=1 + dca λ=3": LossConfig(ordinal_weight=1.0, occ_weight=3.0),
}


def features(frame, cache: Path | None) -> np.ndarray:
    if cache is not None and cache.is_file():
        return np.load(cache)
    model = load_model()
    return score_pairs(model, frame["query"].tolist(), frame["title"].tolist(), batch_size=128,
                       max_length=48).embeddings


def probe(x: np.ndarray, y: np.ndarray, loss: LossConfig, seed: int, epochs: int = 10) -> torch.nn.Linear:
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], 3)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.0)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    weight = class_weights_for(loss, y, 3)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), 64):
            rows = order[i:i + 64]
            value, _ = darl_loss(head(xt[rows]), yt[rows], loss, weight)
            opt.zero_grad()
            value.backward()
            opt.step()
    return head


def main() -> int:
    torch.set_num_threads(1)
    sp = homedepot.load_splits("small")
    work = Path(".darl/bench/ablation")
    work.mkdir(parents=True, exist_ok=True)
    lp_cache = Path(".darl/bench/quality/small_full2/seed0/lp/features.npy")
    xtr = features(sp.train, lp_cache)
    val_cache = work / "val_features.npy"
    if not val_cache.is_file():
        np.save(val_cache, features(sp.val_id, None))
    xva = np.load(val_cache)
    ytr, yva = sp.train["grade"].to_numpy(), sp.val_id["grade"].to_numpy()
    rows = []
    for name, loss in VARIANTS.items():
        ms = []
        for seed in range(3):
            head = probe(xtr, ytr, loss, seed)
            with torch.no_grad():
                probs = head(torch.from_numpy(xva)).softmax(1).numpy()
            ms.append(evaluate(yva, probs, sp.val_id["query"].tolist()))
        row = {"variant": name}
        for key in ("macro_f1", "ece", "qwk", "f1_irrelevant", "over_recall", "accuracy"):
            vals = [m[key] for m in ms]
            row[key] = {"mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1))}
        rows.append(row)
        print(f"{name:36s} macro-F1 {row['macro_f1']['mean']:.4f}±{row['macro_f1']['sd']:.4f} "
              f"ECE {row['ece']['mean']:.4f} QWK {row['qwk']['mean']:.4f} irr-F1 {row['f1_irrelevant']['mean']:.3f} "
              f"over-recall {row['over_recall']['mean']:.3f}", flush=True)
    Path("bench/results/loss_ablation.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
