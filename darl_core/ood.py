"""OOD detectors: ``fit(embeddings, labels=None) -> self``; ``score(embeddings)``, higher = more OOD.

One small class per detector, the math in a pure function beside it, a registry by name
(``DETECTORS``, ``get_detector``). Embedding detectors: Mahalanobis (Lee et al. 2018, shared
Ledoit-Wolf covariance), relative Mahalanobis (Ren et al. 2021), kNN (Sun et al. 2022). Logit
detectors (fit and score take grade logits): energy (Liu et al. 2020) and maximum softmax probability.
The ensemble (the default) averages normalised member scores, equally or with weights chosen on a
labelled validation split (``tune_weights``, ``Ensemble.tune``). Nearest-neighbour search lives in
``darl_core.neighbours`` (exact in blocks, or approximate for large problems).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.special import logsumexp

from darl_core.errors import ConfigError, DarlError, NotFittedError
from darl_core.neighbours import NeighbourIndex, as_matrix, l2_normalise

BLOCK = 65_536  # rows per block when projecting: bounds the temporary memory at 1M x 384


class DimensionMismatchError(DarlError, ValueError):
    """Scored inputs do not have the width the detector was fitted on."""


class EmptyBankError(DarlError, ValueError):
    """A detector was fitted on zero labelled rows."""


DETECTORS: dict[str, type[Detector]] = {}


def register(name: str) -> Callable[[type[Detector]], type[Detector]]:
    def add(cls: type[Detector]) -> type[Detector]:
        if name in DETECTORS:
            raise ConfigError(f"detector name {name!r} is already registered by {DETECTORS[name].__name__}")
        cls.name = name
        DETECTORS[name] = cls
        return cls
    return add


def get_detector(name: str, **kwargs: Any) -> Detector:
    """A new, unfitted detector by registry name (``DETECTORS``)."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name](**kwargs)


class Detector:
    """Common base: input checks, the not-fitted guard, the dimension check."""

    name: ClassVar[str] = "detector"
    uses_logits: ClassVar[bool] = False  # True: fit/score take grade logits [N, K] instead of embeddings

    def __init__(self) -> None:
        self.dim_: int | None = None

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None) -> Detector:
        x = as_matrix(embeddings, "logits" if self.uses_logits else "embeddings")
        if len(x) == 0:
            raise EmptyBankError(f"{type(self).__name__}: the labelled bank is empty; label some pairs first")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != len(x):
                raise DimensionMismatchError(f"{len(labels)} labels for {len(x)} bank rows")
        self.dim_ = x.shape[1]
        self._fit(x, labels)
        return self

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return self._score(self._check(embeddings))

    def calibration_scores(self, idx: np.ndarray) -> np.ndarray:
        """Scores of fitted bank rows ``idx`` as if unseen (kNN leaves each row out); for normalising."""
        return self._score(self._bank_rows(idx))

    def _check(self, x: np.ndarray) -> np.ndarray:
        if self.dim_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(bank_embeddings, labels) first")
        x = as_matrix(x, "logits" if self.uses_logits else "embeddings")
        if x.shape[1] != self.dim_:
            raise DimensionMismatchError(
                f"{type(self).__name__} was fitted on width {self.dim_}, got width {x.shape[1]}; "
                "score with embeddings from the same model version and layer")
        return x

    def _fit(self, x: np.ndarray, labels: np.ndarray | None) -> None:
        self._bank = x

    def _bank_rows(self, idx: np.ndarray) -> np.ndarray:
        return self._bank[idx]

    def _score(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# --- Mahalanobis family -------------------------------------------------------------------------

def ledoit_wolf_cov(centred: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrunk covariance of centred rows and its shrinkage (as scikit-learn's
    ``ledoit_wolf``, which loops over 1,000-column blocks: 9 s on 50k x 384 here, this one < 1 s)."""
    n, p = centred.shape
    x = centred.astype(np.float64)
    emp = x.T @ x / n
    mu = np.trace(emp) / p
    sq_norms = np.einsum("ij,ij->i", x, x)
    beta_ = float(np.sum(sq_norms**2))  # sum over features j,k of sum_i x_ij^2 x_ik^2
    delta_ = float(np.sum(emp**2))  # ||X^T X||_F^2 / n^2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * np.trace(emp) + p * mu**2) / p
    shrinkage = 0.0 if beta == 0 or delta == 0 else min(beta, delta) / delta
    cov = (1.0 - shrinkage) * emp
    cov.flat[:: p + 1] += shrinkage * mu
    return cov, shrinkage


def shrunk_whitener(centred: np.ndarray) -> np.ndarray:
    """W with W W^T = inverse of the Ledoit-Wolf covariance, so ``||(x - m) W||^2`` is Mahalanobis."""
    cov, _ = ledoit_wolf_cov(centred)
    w, v = np.linalg.eigh(cov)
    return (v / np.sqrt(np.maximum(w, 1e-12))).astype(np.float32)


def min_class_distance(x: np.ndarray, means: np.ndarray, whitener: np.ndarray) -> np.ndarray:
    """min over classes c of the squared Mahalanobis distance ``||(x - m_c) W||^2``, in row blocks."""
    mw = means @ whitener
    m_sq = (mw * mw).sum(1)
    out = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), BLOCK):
        z = x[s:s + BLOCK] @ whitener
        d = (z * z).sum(1)[:, None] - 2.0 * (z @ mw.T) + m_sq[None, :]
        out[s:s + BLOCK] = d.min(1)
    return out


def class_means(x: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class means and the rows centred on their own class mean (one class when unlabelled)."""
    if labels is None:
        labels = np.zeros(len(x), dtype=np.int64)
    classes, inv = np.unique(labels, return_inverse=True)
    means = np.stack([x[inv == i].mean(0) for i in range(len(classes))]).astype(np.float32)
    return means, x - means[inv]


@register("mahalanobis")
class Mahalanobis(Detector):
    """Class-conditional means, one shared covariance with Ledoit-Wolf shrinkage; min distance."""

    def _fit(self, x: np.ndarray, labels: np.ndarray | None) -> None:
        super()._fit(x, labels)
        self.means_, centred = class_means(x, labels)
        self.whitener_ = shrunk_whitener(centred)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return min_class_distance(x, self.means_, self.whitener_)


@register("relative_mahalanobis")
class RelativeMahalanobis(Mahalanobis):
    """Mahalanobis minus the class-agnostic background distance (Ren et al. 2021): near-OOD."""

    def _fit(self, x: np.ndarray, labels: np.ndarray | None) -> None:
        super()._fit(x, labels)
        self.background_mean_, centred = class_means(x, None)
        self.background_whitener_ = shrunk_whitener(centred)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return super()._score(x) - min_class_distance(x, self.background_mean_, self.background_whitener_)


# --- kNN --------------------------------------------------------------------------------------

@register("knn")
class KNN(Detector):
    """Distance to the k-th nearest labelled neighbour on L2-normalised embeddings.

    ``method``: ``exact`` (blocked matmul), ``approximate`` (faiss IVF, else pynndescent) or
    ``auto`` (approximate once queries x bank exceeds ``darl_core.neighbours.EXACT_MAX_WORK``).
    """

    def __init__(self, k: int = 10, method: str = "auto") -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"knn `k` must be positive, got {k}")
        self.k = k
        self.method = method

    def _fit(self, x: np.ndarray, labels: np.ndarray | None) -> None:
        self.index_ = NeighbourIndex(l2_normalise(x), method=self.method)

    def _bank_rows(self, idx: np.ndarray) -> np.ndarray:
        return self.index_.bank[idx]

    def kneighbors(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarities [N, k] descending, bank row indices [N, k])."""
        x = self._check(x)
        k = min(k, len(self.index_.bank))
        method = self.index_.choose(len(x))  # decided on the whole query set, not per block
        sims = np.empty((len(x), k), np.float32)
        idx = np.empty((len(x), k), np.int64)
        for s in range(0, len(x), BLOCK):  # normalise block by block: no full-size copy
            sims[s:s + BLOCK], idx[s:s + BLOCK] = self.index_.search(l2_normalise(x[s:s + BLOCK]), k, method)
        return sims, idx

    def _score(self, x: np.ndarray) -> np.ndarray:
        k = min(self.k, len(self.index_.bank))
        return knn_distance(self.kneighbors(x, k)[0], k)

    def calibration_scores(self, idx: np.ndarray) -> np.ndarray:
        k = min(self.k, len(self.index_.bank) - 1)
        if k < 1:
            return np.zeros(len(idx))
        sims, nn = self.index_.search(self.index_.bank[idx], k + 1)
        # Leave the row itself out (it is its own nearest neighbour, distance 0).
        keep = nn != np.asarray(idx)[:, None]
        sims = np.where(keep, sims, -np.inf)
        sims = -np.sort(-sims, axis=1)[:, :k]
        return knn_distance(sims, k)


def knn_distance(sims: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of unit vectors to their k-th neighbour, from cosine similarities."""
    return np.sqrt(np.maximum(2.0 - 2.0 * sims[:, k - 1].astype(np.float64), 0.0))


# --- Logit detectors ---------------------------------------------------------------------------

@register("energy")
class Energy(Detector):
    """Energy ``-T logsumexp(logits / T)``: low for confident, in-distribution pairs."""

    uses_logits = True

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"energy `temperature` must be positive, got {temperature}")
        self.temperature = temperature

    def _score(self, x: np.ndarray) -> np.ndarray:
        return -self.temperature * logsumexp(x.astype(np.float64) / self.temperature, axis=1)


@register("msp")
class MaxSoftmax(Detector):
    """Negative maximum softmax probability (Hendrycks & Gimpel 2017)."""

    uses_logits = True

    def _score(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return -np.exp(x.max(1) - logsumexp(x, axis=1))


# --- Ensemble ----------------------------------------------------------------------------------

COMBINE = ("zscore", "rank")


def combine_scores(parts: Mapping[str, np.ndarray], weights: Mapping[str, float], method: str,
                   reference: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Weighted mean of normalised member scores.

    ``zscore``: ``(s - mean) / std`` with the bank's calibration statistics (batch-independent);
    ``rank``: percentile rank within the scored batch, in [0, 1].
    """
    total = np.zeros(len(next(iter(parts.values()))), dtype=np.float64)
    for name, s in parts.items():
        if method == "rank":
            order = np.argsort(s, kind="stable")
            z = np.empty(len(s), dtype=np.float64)
            z[order] = np.arange(len(s)) / max(len(s) - 1, 1)
        else:
            mean, std = (reference or {}).get(name, (float(np.mean(s)), float(np.std(s))))
            z = (s - mean) / (std if std > 0 else 1.0)
        total += weights[name] * z
    return total / sum(weights[n] for n in parts)


def tune_weights(parts: Mapping[str, np.ndarray], is_ood: np.ndarray, *, method: str = "zscore",
                 reference: Mapping[str, tuple[float, float]] | None = None,
                 grid: Sequence[float] = (0.0, 0.5, 1.0)) -> tuple[dict[str, float], float]:
    """Member weights from ``grid`` whose combined score best separates a labelled validation set
    (``is_ood``: 1 = OOD, 0 = in-distribution), by AUROC; returns (weights, that AUROC).

    Equal weights can fall below the best member when a weak one is averaged in (Mahalanobis on
    pretrained features: 0.60 against kNN's 0.75). Every member alone is on the grid, so on the
    validation set the result is never below the best member; ties go to fewer members.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(is_ood).reshape(-1)
    if len(np.unique(y)) != 2:
        raise ConfigError("tune_weights needs validation rows of both kinds: is_ood must hold 0s and 1s")
    if any(len(s) != len(y) for s in parts.values()):
        raise DimensionMismatchError(f"member scores and is_ood differ in length ({len(y)} labels)")
    if not grid or any(g < 0 for g in grid) or not any(grid):
        raise ConfigError(f"tune_weights `grid` must hold weights >= 0, not all 0, got {tuple(grid)}")
    names = list(parts)
    best: tuple[float, int] | None = None
    chosen: dict[str, float] = {}
    for combo in itertools.product(sorted(set(grid)), repeat=len(names)):
        if not any(combo):
            continue
        weights = dict(zip(names, combo, strict=True))
        used = {n: parts[n] for n in names if weights[n] > 0}
        auc = float(roc_auc_score(y, combine_scores(used, weights, method, reference)))
        key = (round(auc, 4), -len(used))  # 4 decimals: below that is noise on any real split
        if best is None or key > best:
            best, chosen = key, {n: float(w) / max(combo) for n, w in weights.items()}  # largest = 1
    return chosen, best[0] if best else float("nan")


@register("ensemble")
class Ensemble(Detector):
    """Averages normalised member scores; ``score_parts`` keeps each member's raw score as a reason."""

    def __init__(self, members: Sequence[str] = ("knn", "mahalanobis", "relative_mahalanobis"),
                 combine: str = "zscore", weights: Mapping[str, float] | None = None,
                 member_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
                 calibration_size: int = 4000, seed: int = 0) -> None:
        super().__init__()
        if not members:
            raise ConfigError("ensemble `members` must name at least one detector, got none")
        if combine not in COMBINE:
            raise ConfigError(f"ensemble `combine` must be one of {COMBINE}, got {combine!r}")
        if "ensemble" in members:
            raise ConfigError("an ensemble cannot contain another ensemble")
        kwargs = member_kwargs or {}
        self.members = {name: get_detector(name, **kwargs.get(name, {})) for name in members}
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in members}
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ConfigError(f"ensemble `weights` must be >= 0 and not all 0, got {self.weights}")
        self.combine = combine
        self.calibration_size = calibration_size
        self.seed = seed
        self.reference_: dict[str, tuple[float, float]] = {}
        self.validation_auroc_: float | None = None  # set by tune()

    @property
    def uses_logits_members(self) -> list[str]:
        return [n for n, d in self.members.items() if d.uses_logits]

    def _inputs(self, name: str, embeddings: np.ndarray, logits: np.ndarray | None, where: str) -> np.ndarray:
        if not self.members[name].uses_logits:
            return embeddings
        if logits is None:
            raise ConfigError(f"ensemble member {name!r} scores grade logits: pass logits= to {where}")
        return logits

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None,
            logits: np.ndarray | None = None) -> Ensemble:
        x = as_matrix(embeddings, "embeddings")
        if len(x) == 0:
            raise EmptyBankError("Ensemble: the labelled bank is empty; label some pairs first")
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(len(x), size=min(self.calibration_size, len(x)), replace=False))
        for name, det in self.members.items():
            det.fit(self._inputs(name, x, logits, "fit"), labels)
            cal = det.calibration_scores(idx)
            self.reference_[name] = (float(np.mean(cal)), float(np.std(cal)))
        self.dim_ = x.shape[1]
        return self

    def score_parts(self, embeddings: np.ndarray, logits: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Raw score of each member, plus ``"ensemble"``: the combined score (higher = more OOD)."""
        x = self._check(embeddings)
        parts = {name: det.score(self._inputs(name, x, logits, "score"))
                 for name, det in self.members.items()}
        parts["ensemble"] = combine_scores(parts, self.weights, self.combine, self.reference_)
        return parts

    def score(self, embeddings: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        return self.score_parts(embeddings, logits)["ensemble"]

    def tune(self, embeddings: np.ndarray, is_ood: np.ndarray, logits: np.ndarray | None = None,
             grid: Sequence[float] = (0.0, 0.5, 1.0)) -> Ensemble:
        """Set member weights on labelled validation rows (``is_ood`` 1 = OOD), see ``tune_weights``.

        The validation rows must be disjoint from any test set the ensemble is then judged on.
        """
        parts = self.score_parts(embeddings, logits)
        parts.pop("ensemble")
        self.weights, self.validation_auroc_ = tune_weights(parts, is_ood, method=self.combine,
                                                            reference=self.reference_, grid=grid)
        return self
