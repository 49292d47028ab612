"""Evaluation metrics for graded relevance: classification, ordinal agreement, calibration, ranking.

``evaluate(y_true, probs, queries)`` returns a flat dict; ``id_ood_report`` adds the ID − OOD gap.
Grades are 0-based indices, 0 = the least relevant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from darl_core.errors import ConfigError

ECE_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Grade probabilities from logits [N, K], row by row, in the logits' dtype (max-shifted: no overflow)."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or y.ndim != 1 or len(y) != len(p):
        raise ConfigError(f"need y_true [N] and probs [N, K], got shapes {y.shape} and {p.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ConfigError(f"grades must be in 0..{p.shape[1] - 1}, got {y.min()}..{y.max()}")
    return y, p


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Counts [true grade, predicted grade] (bincount: the post-hoc guards call this thousands of times)."""
    flat = np.asarray(y_true, dtype=np.int64) * k + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=k * k).reshape(k, k)


def per_grade_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per grade; 0 where undefined (as scikit-learn's zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    pred = cm.sum(axis=0)
    true = cm.sum(axis=1)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """Macro-F1 of hard predictions over ``k`` grades (the mean of ``per_grade_prf``'s F1, computed as
    2·tp / (predicted + true), which is the same number and cheap enough for the post-hoc guards' searches)."""
    cm = confusion(y_true, y_pred, k)
    denom = (cm.sum(axis=0) + cm.sum(axis=1)).astype(np.float64)
    tp = np.diag(cm).astype(np.float64)
    return float(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0).mean())


def quadratic_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights, from a confusion matrix."""
    k = cm.shape[0]
    n = cm.sum()
    if n == 0:
        return 0.0
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    w = (i - j) ** 2 / max((k - 1) ** 2, 1)
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    denom = (w * expected).sum()
    return float(1.0 - (w * cm).sum() / denom) if denom > 0 else 0.0


def ece(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error with equal-width confidence bins."""
    y, p = _check(y_true, probs)
    if not len(y):
        return 0.0
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # bins are (lo, hi]
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    return float(total)


def ndcg_at_k(y_true: np.ndarray, scores: np.ndarray, queries: Sequence[str], k: int = 10) -> float:
    """Mean NDCG@k over queries (gain 2^grade − 1); queries whose pairs are all grade 0 are skipped."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    q = np.asarray(list(queries))
    values = []
    for query in np.unique(q):
        sel = np.flatnonzero(q == query)
        gains = 2.0 ** y[sel] - 1
        ideal = np.sort(gains)[::-1][:k]
        discounts = 1.0 / np.log2(np.arange(2, len(ideal) + 2))
        idcg = (ideal * discounts).sum()
        if idcg <= 0:
            continue
        order = np.argsort(-s[sel], kind="stable")[:k]
        values.append((gains[order] * discounts[:len(order)]).sum() / idcg)
    return float(np.mean(values)) if values else float("nan")


def evaluate(y_true: np.ndarray, probs: np.ndarray, queries: Sequence[str] | None = None,
             grade_names: Sequence[str] | None = None) -> dict[str, float]:
    """All metrics for one test set. Keys: accuracy, macro_f1, qwk, ece, overconfidence, over_recall,
    under_recall, ndcg@10 (with queries), and ``{precision,recall,f1,predicted}_<grade>`` per grade."""
    y, p = _check(y_true, probs)
    k = p.shape[1]
    names = list(grade_names) if grade_names is not None else default_grade_names(k)
    pred = p.argmax(axis=1)
    cm = confusion(y, pred, k)
    precision, recall, f1 = per_grade_prf(cm)
    conf = p.max(axis=1)
    acc = float((pred == y).mean()) if len(y) else 0.0
    out: dict[str, float] = {
        "n": float(len(y)),
        "accuracy": acc,
        "macro_f1": float(f1.mean()),
        "qwk": quadratic_kappa(cm),
        "ece": ece(y, p),
        "overconfidence": float(conf.mean() - acc) if len(y) else 0.0,
        "over_recall": float((pred > y).mean()) if len(y) else 0.0,
        "under_recall": float((pred < y).mean()) if len(y) else 0.0,
    }
    for g, name in enumerate(names):
        out[f"precision_{name}"] = float(precision[g])
        out[f"recall_{name}"] = float(recall[g])
        out[f"f1_{name}"] = float(f1[g])
        out[f"predicted_{name}"] = float((pred == g).sum())
    if queries is not None:
        expected = (p * np.arange(k)).sum(axis=1)
        out["ndcg@10"] = ndcg_at_k(y, expected, queries, 10)
    return out


def default_grade_names(k: int) -> list[str]:
    if k == 3:
        return ["irrelevant", "weak", "strong"]
    return [f"g{g}" for g in range(k)]


def id_ood_report(id_metrics: dict[str, float], ood_metrics: dict[str, float]) -> dict[str, float]:
    """Prefix ID and OOD metrics and add ``gap_<m>`` = ID − OOD for every shared metric."""
    out = {f"id_{k}": v for k, v in id_metrics.items()}
    out.update({f"ood_{k}": v for k, v in ood_metrics.items()})
    for key in id_metrics.keys() & ood_metrics.keys():
        out[f"gap_{key}"] = id_metrics[key] - ood_metrics[key]
    return out


def _weighted_macro_f1(y: np.ndarray, pred: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of one prediction vector under each row of ``weights`` (B x N multiplicities): F1 per
    grade from weighted confusion counts, zero where undefined, as ``per_grade_prf``."""
    f1 = np.zeros((len(weights), k))
    for g in range(k):
        tp = weights[:, (y == g) & (pred == g)].sum(axis=1)
        n_pred = weights[:, pred == g].sum(axis=1)
        n_true = weights[:, y == g].sum(axis=1)
        denom = n_pred + n_true  # 2tp / (pred + true) is F1
        f1[:, g] = np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=np.float64), where=denom > 0)
    return f1.mean(axis=1)


def macro_f1_difference(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, groups: Sequence[str], *,
                        k: int, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                        thresholds: Sequence[float] = ()) -> dict:
    """Macro-F1 of B minus A with a paired, group-clustered bootstrap interval.

    ``pred_a`` / ``pred_b``: predicted grades, one row per pair or one row per training seed (S x N):
    each side's macro-F1 is then its mean over seeds, as a table row reports it. ``groups`` (the query
    of each pair): a resample draws whole queries with replacement, since pairs of one query are not
    independent and the splits are by query; the same resample scores both sides (paired). Returns the
    observed difference, the ``level`` percentile interval, and ``share_below_zero`` (the resampled
    differences <= 0: how often B is no better than A) and, per given threshold t, the share of
    resampled differences >= t (``share_at_least``: e.g. how often a +5-point target would be met).
    """
    y = np.asarray(y_true)
    a, b = np.atleast_2d(pred_a), np.atleast_2d(pred_b)
    if a.shape[1] != len(y) or b.shape[1] != len(y) or len(groups) != len(y):
        raise ConfigError(f"predictions ({a.shape[1]}, {b.shape[1]}), groups ({len(groups)}) and grades ({len(y)}) "
                          "must describe the same pairs")
    if not 0 < level < 1 or n_boot < 1:
        raise ConfigError(f"need 0 < level < 1 and n_boot >= 1, got {level!r} and {n_boot!r}")
    n_groups = len(set(np.asarray(groups, dtype=str).tolist()))

    def side(preds: np.ndarray, w: np.ndarray) -> np.ndarray:
        return np.mean([_weighted_macro_f1(y, p, w, k) for p in preds], axis=0)

    observed = float(side(b, np.ones((1, len(y))))[0] - side(a, np.ones((1, len(y))))[0])
    diffs = np.concatenate([side(b, w) - side(a, w) for w in _query_resamples(groups, n_boot, seed)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {"difference": observed, "low": float(low), "high": float(high), "level": level,
            "share_below_zero": float((diffs <= 0).mean()), "n_boot": n_boot, "groups": int(n_groups),
            "sd": float(diffs.std(ddof=1)) if n_boot > 1 else 0.0,
            "share_at_least": {f"{t:g}": float((diffs >= t).mean()) for t in thresholds}}


def _query_resamples(groups: Sequence[str], n_boot: int, seed: int):  # noqa: ANN202 - yields [B, N] arrays
    """Weights of ``n_boot`` resamples of whole groups (queries) with replacement, in chunks: each pair
    counts as often as its query was drawn (pairs of one query are not independent; splits are by query)."""
    _, group_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(group_of.max()) + 1 if len(group_of) else 0
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // max(1, len(group_of)))  # resamples scored at once: about 32 MB of weights
    for start in range(0, n_boot, chunk):
        draws = np.stack([np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
                          for _ in range(min(chunk, n_boot - start))])
        yield draws[:, group_of].astype(np.float64)


def macro_f1_interval(y_true: np.ndarray, pred: np.ndarray, groups: Sequence[str], *, k: int, n_boot: int = 1000,
                      level: float = 0.95, seed: int = 0) -> dict:
    """Macro-F1 of one prediction vector with a group-clustered (query) bootstrap ``level`` interval: how
    much the figure could move with another draw of queries. Returns macro_f1, low, high, queries."""
    y, p = np.asarray(y_true), np.asarray(pred)
    if len(p) != len(y) or len(groups) != len(y):
        raise ConfigError(f"predictions ({len(p)}), groups ({len(groups)}) and grades ({len(y)}) must describe "
                          "the same pairs")
    if not 0 < level < 1 or n_boot < 1:
        raise ConfigError(f"need 0 < level < 1 and n_boot >= 1, got {level!r} and {n_boot!r}")
    n_queries = len(set(np.asarray(groups, dtype=str).tolist()))
    if not len(y):
        return {"macro_f1": float("nan"), "low": float("nan"), "high": float("nan"), "queries": 0}
    values = np.concatenate([_weighted_macro_f1(y, p, w, k) for w in _query_resamples(groups, n_boot, seed)])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"macro_f1": macro_f1(y, p, k), "low": float(low), "high": float(high), "queries": n_queries}
