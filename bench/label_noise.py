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

``--refit`` measures the check's refit option instead (``label_issues.refit_probs``: 5 query-grouped folds,
each scored by the ``ce`` baseline fine-tuned on the other four; cheap profile: top 2 layers, 1 epoch,
max_length 48, 1 thread), with the baseline the issue names, the per-pair training loss of a plain ``ce``
fine-tune on all the (noisy) pairs, and random. ``--jobs adjacent_10:0 uniform_20:1 real:0`` picks the
settings (``real``: the untouched grades); each finished job is kept under .darl/bench/label_noise/ and a
rerun continues. Writes bench/results/label_noise_refit.json.
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
REFIT_RESULTS = RESULTS.with_name("label_noise_refit.json")
REFIT_WORK = Path(".darl/bench/label_noise")
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
    ap.add_argument("--refit", action="store_true", help="measure the refit option (see the module docstring)")
    ap.add_argument("--jobs", nargs="*", default=[], help="with --refit: SETTING:SEED, e.g. adjacent_10:0 real:0")
    args = ap.parse_args()
    load0, t_start = os.getloadavg(), time.perf_counter()
    train = load_splits("small").train.sample(n=args.pairs, random_state=0).reset_index(drop=True)
    raw = pd.read_csv(default_dir() / "pairs.csv").drop_duplicates(["search_term", "product_title"])
    rel = train.merge(raw[["search_term", "product_title", "relevance"]], how="left",
                      left_on=["query", "title"], right_on=["search_term", "product_title"])["relevance"].to_numpy()
    if args.refit:
        refit_main(train, rel, args.jobs)
        return
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
    rounded, disagreed = _rounding(rel)
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


def _rounding(rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rounding decided: means 1.67 / 2.33, raters disagreed at all: also 1.33 / 2.67) per pair."""
    rounded = np.isclose(rel, 5 / 3, atol=0.01) | np.isclose(rel, 7 / 3, atol=0.01)
    return rounded, rounded | np.isclose(rel, 4 / 3, atol=0.01) | np.isclose(rel, 8 / 3, atol=0.01)


def refit_job(train: pd.DataFrame, rel: np.ndarray, setting: str, seed: int) -> dict:
    """One refit measurement: out-of-fold probabilities from 5 ce fine-tunes, and a plain ce fine-tune on every
    pair for the training-loss baseline; injected noise scored by detection figures, ``real`` by what the top
    1,000 suspects of the untouched grades look like."""
    import torch

    from darl_core.config import stage_config
    from darl_core.label_issues import refit_probs
    from darl_core.model import load_checkpoint, score_pairs
    from darl_core.training import Examples, run_stage
    from darl_core.validation import draw_validation

    torch.set_num_threads(1)
    grades = train["grade"].to_numpy()
    labels = grades if setting == "real" else inject(grades, int(setting.split("_")[1]) / 100, setting.split("_")[0], seed)
    data = Examples(train["query"].tolist(), train["title"].tolist(), labels)
    groups = pd.factorize(train["query"])[0]
    config = stage_config("ce", {"num_grades": K, "epochs": 1, "train_layers": 2, "max_length": 48, "threads": 1,
                                 "seed": seed})
    work = REFIT_WORK / f"pairs{len(train)}" / f"{setting}_s{seed}"
    t0 = time.perf_counter()
    probs = refit_probs(data, groups, K, config, work / "folds", folds=5, seed=seed,
                        progress=lambda f, m: print(f"  [{setting} s{seed}] {m}", flush=True) if "scored" in m else None)
    refit_s = time.perf_counter() - t0
    fit, val, _ = draw_validation(data, data.subset(np.zeros(0, int)))
    plain = run_stage(config, fit.concat(val), val, work / "plain")  # every pair trains; val only picks the checkpoint
    p_all = score_pairs(load_checkpoint(plain.checkpoint), data.queries, data.items, max_length=48).probs
    plain_loss = -np.log(np.clip(p_all[np.arange(len(labels)), labels], 1e-12, None))
    out: dict = {"setting": setting, "seed": seed, "refit_seconds": round(refit_s, 1),
                 "oof_accuracy": round(float((probs.argmax(1) == labels).mean()), 4)}
    scores = {"ordinal": -rank_issues(labels, probs, method="ordinal").quality,
              "cleanlab": -rank_issues(labels, probs, method="cleanlab").quality,
              "finetune_training_loss": plain_loss,
              "random": np.random.default_rng(1000 + seed).random(len(labels))}
    if setting == "real":
        rounded, disagreed = _rounding(rel)
        top_n = min(1000, len(labels) // 5)
        for name, score in scores.items():
            top = np.argsort(-score, kind="stable")[:top_n]
            out[name] = {"rounding_decided_share": round(float(rounded[top].mean()), 4),
                         "raters_disagreed_share": round(float(disagreed[top].mean()), 4)}
        out["base_rate"] = {"rounding_decided_share": round(float(rounded.mean()), 4),
                            "raters_disagreed_share": round(float(disagreed.mean()), 4), "top": top_n}
    else:
        flipped = labels != grades
        out.update({name: figures(flipped, score) for name, score in scores.items()})
    return out


def refit_main(train: pd.DataFrame, rel: np.ndarray, jobs: list[str]) -> None:
    import json

    load0 = os.getloadavg()
    for job in jobs:
        setting, seed = job.split(":")
        done = REFIT_WORK / f"pairs{len(train)}" / f"{setting}_s{seed}" / "result.json"
        if not done.is_file():
            res = refit_job(train, rel, setting, int(seed))
            res["load"] = load_window(load0)
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(res, indent=1))
        print(done.read_text(), flush=True)
    runs = [json.loads(f.read_text()) for f in sorted((REFIT_WORK / f"pairs{len(train)}").glob("*_s*/result.json"))]
    summary: dict = {}
    for setting in sorted({r["setting"] for r in runs}):
        rs = [r for r in runs if r["setting"] == setting]
        names = [k for k in rs[0] if isinstance(rs[0][k], dict) and k not in ("load", "base_rate")]
        row = {"seeds": sorted(r["seed"] for r in rs), "refit_seconds": round(float(np.mean([r["refit_seconds"] for r in rs])), 1),
               "oof_accuracy": round(float(np.mean([r["oof_accuracy"] for r in rs])), 4)}
        for name in names + (["base_rate"] if "base_rate" in rs[0] else []):
            row[name] = {m: {"mean": round(float(np.mean([r[name][m] for r in rs])), 4),
                             "sd": round(float(np.std([r[name][m] for r in rs])), 4)}
                         for m in rs[0][name] if m != "top"}
        summary[setting] = row
    adj = summary.get("adjacent_10", {}).get("ordinal", {}).get("auroc", {}).get("mean")
    real = summary.get("real", {})
    save(REFIT_RESULTS, {
        "protocol": f"Home Depot small, train subsample {len(train)} (seed 0); refit: 5 query-grouped folds, each "
                    "scored by the ce baseline (class-weighted CE, full tuning of the top 2 layers, 1 epoch, "
                    "max_length 48) fine-tuned on the other 4, its validation drawn by query from them; "
                    "finetune_training_loss: the same ce fine-tuned on every pair, per-pair loss in sample",
        "settings": summary,
        "targets": {"auroc_adjacent_10_ge_0.85": None if adj is None else adj >= 0.85,
                    "real_rounding_decided_ge_1.5x_base": None if not real else
                    real["ordinal"]["rounding_decided_share"]["mean"]
                    >= 1.5 * real["base_rate"]["rounding_decided_share"]["mean"]},
        "runs": len(runs)})


if __name__ == "__main__":
    main()
