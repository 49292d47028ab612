"""Label-noise benchmark (issue 23): how well the label check finds wrong grades, on the Home Depot protocol.

A seeded subsample of the ``small`` profile's train split is embedded once with the frozen pretrained
MiniLM: ``pair``, the mean-pooled embedding of the query-item pair in one pass (what the product's
label check uses, from the shared embedding cache), and ``biencoder``, the query and the title each
encoded alone, as MiniLM was trained, with their product and cosine (a candidate feature, measured here). Noise is injected into its grades (10% / 20%,
adjacent-grade or uniform, several seeds), and four detectors rank the pairs, all in the same run on
the same embeddings and folds:
- ``ordinal``: ours, cleanlab's label quality scaled by 1 / (1 + |E[grade] - label|), out of fold;
- ``cleanlab``: cleanlab's default label quality (self-confidence) on the same out-of-fold probabilities;
- ``loss``: per-pair cross-entropy of the same head fitted on every pair (in-sample training loss);
- ``random``.
Figures per detector: detection AUROC (flipped = positive) and precision / recall among the top N,
N = the number flipped. Also, on the untouched grades (no injection): among the top 1,000 suspects, the
share whose rater mean the rounding decided (1.67 / 2.33) and whose raters disagreed at all
(1.33 / 1.67 / 2.33 / 2.67), against their base rates in the same subsample.

    nice -n 10 .venv/bin/python bench/label_noise.py [--pairs 5000] [--seeds 0] [--cache /tmp/darl_bench]
Writes bench/results/label_noise.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import load_window, save  # noqa: E402
from darl_core.homedepot import default_dir, load_splits  # noqa: E402
from darl_core.label_issues import in_sample_loss, out_of_fold_probs, rank_issues  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "label_noise.json"
K = 3


def inject(grades: np.ndarray, rate: float, kind: str, seed: int) -> np.ndarray:
    """``rate`` of the grades changed (seeded): to an adjacent grade, or to any other grade uniformly."""
    rng = np.random.default_rng(seed)
    noisy = grades.copy()
    idx = rng.permutation(len(grades))[: int(round(rate * len(grades)))]
    for i in idx:
        g = grades[i]
        others = [h for h in range(K) if h != g and (kind == "uniform" or abs(h - g) == 1)]
        noisy[i] = others[rng.integers(len(others))]
    return noisy


def figures(flipped: np.ndarray, suspicion: np.ndarray) -> dict[str, float]:
    """AUROC and precision / recall at N = number flipped (higher suspicion = more likely wrong)."""
    n = int(flipped.sum())
    top = np.argsort(-suspicion, kind="stable")[:n]
    hit = int(flipped[top].sum())
    return {"auroc": round(float(roc_auc_score(flipped, suspicion)), 4),
            "precision_at_n": round(hit / n, 4), "recall_at_n": round(hit / n, 4)}


def detectors(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    probs = out_of_fold_probs(emb, labels, groups, K, seed=seed)
    return {"ordinal": -rank_issues(labels, probs, method="ordinal").quality,
            "cleanlab": -rank_issues(labels, probs, method="cleanlab").quality,
            "loss": in_sample_loss(emb, labels, K, seed=seed),
            "random": np.random.default_rng(1000 + seed).random(len(labels))}


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def embed(train: pd.DataFrame, cache: Path) -> dict[str, np.ndarray]:
    """``pair`` and ``biencoder`` features (see the module docstring), cached under ``cache``."""
    path = cache / f"label_noise_minilm_{len(train)}.npz"
    if path.is_file():
        with np.load(path) as z:
            return dict(z)
    import torch

    from darl_core.embeddings import pooled_layers
    from darl_core.model import load_model, score_pairs

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t0 = time.perf_counter()
    model = load_model()
    queries, titles = train["query"].tolist(), train["title"].tolist()
    pair = score_pairs(model, queries, titles, batch_size=64).embeddings
    q = _unit(next(iter(pooled_layers(model, queries, [""] * len(queries), layers=[-1]).values())))
    t = _unit(next(iter(pooled_layers(model, titles, [""] * len(titles), layers=[-1]).values())))
    feats = {"pair": pair, "biencoder": np.hstack([q, t, q * t, (q * t).sum(1, keepdims=True)])}
    print(f"embedded {len(train):,} pairs (pair + query and title alone) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **feats)
    return feats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/darl_bench"))
    args = ap.parse_args()
    load0, t_start = os.getloadavg(), time.perf_counter()
    train = load_splits("small").train.sample(n=args.pairs, random_state=0).reset_index(drop=True)
    raw = pd.read_csv(default_dir() / "pairs.csv").drop_duplicates(["search_term", "product_title"])
    rel = train.merge(raw[["search_term", "product_title", "relevance"]], how="left",
                      left_on=["query", "title"], right_on=["search_term", "product_title"])["relevance"].to_numpy()
    feats = embed(train, args.cache)
    grades = train["grade"].to_numpy()
    groups = pd.factorize(train["query"])[0]
    injected, real, ratios, check_s = {}, {}, {}, {}
    for feature, emb in feats.items():
        summary = _injected(emb, grades, groups, args, feature)
        injected[feature] = summary
        ratios[feature] = {key: {"ordinal_over_cleanlab_auroc": round(by["ordinal"]["auroc"]["mean"]
                                                                      / by["cleanlab"]["auroc"]["mean"], 4),
                                 "ordinal_over_loss_auroc": round(by["ordinal"]["auroc"]["mean"]
                                                                  / by["loss"]["auroc"]["mean"], 4)}
                           for key, by in summary.items()}
        real[feature], check_s[feature] = _real_noise(emb, grades, groups, rel)
    result = {
        "protocol": f"Home Depot small, train subsample {args.pairs} (seed 0), frozen pretrained MiniLM, 5 "
                    f"query-grouped folds, logistic head (class-balanced, C 0.1); noise seeds {args.seeds}; "
                    "precision = recall at N = number flipped",
        "injected": injected,
        "real_noise": real,
        "targets": {"auroc_adjacent_10_ge_0.85": {f: by.get("adjacent_10", {}).get("ordinal", {}).get("auroc", {})
                                                  .get("mean", 0) >= 0.85 for f, by in injected.items()},
                    "real_rounding_decided_ge_1.5x_base": {
                        f: r["ordinal"]["rounding_decided_share"] >= 1.5 * r["base_rate"]["rounding_decided_share"]
                        for f, r in real.items()}},
        "ratios": ratios,
        "cross_fit_seconds": check_s,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "load": load_window(load0),
    }
    save(RESULTS, result)


def _injected(emb: np.ndarray, grades: np.ndarray, groups: np.ndarray, args: argparse.Namespace,
              feature: str) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for kind in ("adjacent", "uniform"):
        for rate in args.rates:
            key = f"{kind}_{int(rate * 100)}"
            for seed in args.seeds:
                noisy = inject(grades, rate, kind, seed)
                flipped = noisy != grades
                t0 = time.perf_counter()
                for name, score in detectors(emb, noisy, groups, seed).items():
                    runs.setdefault(key, {}).setdefault(name, []).append(figures(flipped, score))
                print(f"{feature} {key} seed {seed}: {time.perf_counter() - t0:.1f} s  " + "  ".join(
                    f"{n} {v[-1]['auroc']:.3f}" for n, v in runs[key].items()), flush=True)
    return {key: {name: {m: {"mean": round(float(np.mean([r[m] for r in rs])), 4),
                             "sd": round(float(np.std([r[m] for r in rs])), 4)} for m in rs[0]}
                  for name, rs in by.items()} for key, by in runs.items()}


def _real_noise(emb: np.ndarray, grades: np.ndarray, groups: np.ndarray,
                rel: np.ndarray) -> tuple[dict[str, dict[str, float]], float]:
    """Real noise, nothing injected: what the top suspects of the untouched grades look like."""
    t0 = time.perf_counter()
    probs = out_of_fold_probs(emb, grades, groups, K, seed=0)
    check_s = round(time.perf_counter() - t0, 2)
    real: dict[str, dict[str, float]] = {}
    rounded = np.isclose(rel, 5 / 3, atol=0.01) | np.isclose(rel, 7 / 3, atol=0.01)
    disagreed = rounded | np.isclose(rel, 4 / 3, atol=0.01) | np.isclose(rel, 8 / 3, atol=0.01)
    top_n = min(1000, len(grades) // 5)
    for method in ("ordinal", "cleanlab"):
        found = rank_issues(grades, probs, method=method)
        top = np.argsort(found.quality, kind="stable")[:top_n]
        real[method] = {"top": top_n, "n_issues": found.n_issues,
                        "rounding_decided_share": round(float(rounded[top].mean()), 4),
                        "raters_disagreed_share": round(float(disagreed[top].mean()), 4)}
    real["oof_head"] = {"accuracy": round(float((probs.argmax(1) == grades).mean()), 4)}
    real["base_rate"] = {"rounding_decided_share": round(float(rounded.mean()), 4),
                         "raters_disagreed_share": round(float(disagreed.mean()), 4),
                         "relevance_matched": int(np.isfinite(rel).sum())}
    return real, check_s


if __name__ == "__main__":
    main()
