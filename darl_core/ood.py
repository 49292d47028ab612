"""OOD detectors: ``fit(embeddings, labels=None) -> self``; ``score(embeddings)``, higher = more OOD.

One small class per detector, the math in a pure function beside it, a registry by name
(``DETECTORS``, ``get_detector``). Embedding detectors: Mahalanobis (Lee et al. 2018, shared
Ledoit-Wolf covariance), relative Mahalanobis (Ren et al. 2021), kNN (Sun et al. 2022), and the kNN
density ratio against the unlabelled pool (``knn_ratio``: the bank's k-th neighbour distance minus
the pool's; it needs ``background=`` at fit). Logit detectors (fit and score take grade logits):
energy (Liu et al. 2020) and maximum softmax probability. The ensemble (the default: kNN +
knn_ratio, so it needs the pool at fit) averages normalised member scores, equally or with weights
chosen on a labelled validation split (``tune_weights``, ``Ensemble.tune``). Nearest-neighbour
search lives in ``darl_core.neighbours`` (exact in blocks, or approximate for large problems).
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
    uses_background: ClassVar[bool] = False  # True: fit needs the unlabelled pool as ``background``

    def __init__(self) -> None:
        self.dim_: int | None = None

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None, *,
            background: np.ndarray | None = None) -> Detector:
        """Fit on the labelled bank. ``background`` (the unlabelled pool's embeddings) is used only by
        detectors with ``uses_background``; the others ignore it."""
        x = as_matrix(embeddings, "logits" if self.uses_logits else "embeddings")
        if len(x) == 0:
            raise EmptyBankError(f"{type(self).__name__}: the labelled bank is empty; label some pairs first")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != len(x):
                raise DimensionMismatchError(f"{len(labels)} labels for {len(x)} bank rows")
        if self.uses_background:
            if background is None:
                raise ConfigError(f"{type(self).__name__} ({self.name!r}) compares the labelled bank with the "
                                  "unlabelled pool: pass background=<pool embeddings> to fit")
            background = as_matrix(background, "background embeddings")
            if len(background) == 0:
                raise EmptyBankError(f"{type(self).__name__}: the background (unlabelled pool) is empty")
            if background.shape[1] != x.shape[1]:
                raise DimensionMismatchError(f"background width {background.shape[1]} != bank width {x.shape[1]}; "
                                             "embed both with the same model version and layer")
        self.dim_ = x.shape[1]
        self._fit(x, labels)
        if self.uses_background:
            self._fit_background(background)
        return self

    def score(self, embeddings: np.ndarray, *, background_idx: np.ndarray | None = None) -> np.ndarray:
        """Scores, higher = more OOD. ``background_idx[i]`` (detectors with ``uses_background``): the
        background row that ``embeddings[i]`` is, left out of its own neighbours; -1 for none. Pass
        ``np.arange(n)`` when scoring the very pool the detector was fitted with."""
        x = self._check(embeddings)
        if self.uses_background:
            return self._score_background(x, background_idx)
        return self._score(x)

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

    def _fit_background(self, background: np.ndarray) -> None:  # pragma: no cover - uses_background only
        raise NotImplementedError

    def _score_background(self, x: np.ndarray, background_idx: np.ndarray | None) -> np.ndarray:  # pragma: no cover
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

    def _score(self, x: np.ndarray) -> np.ndarray:
        return kth_distance(self.index_, x, self.k)

    def calibration_scores(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        return kth_distance(self.index_, self.index_.bank[idx], self.k, exclude=idx)


def knn_distance(sims: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of unit vectors to their k-th neighbour, from cosine similarities."""
    return np.sqrt(np.maximum(2.0 - 2.0 * sims[:, k - 1].astype(np.float64), 0.0))


def kth_distance(index: NeighbourIndex, x: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Distance of each row of ``x`` to its k-th neighbour in ``index`` (rows normalised block by block).

    ``exclude[i]``: an index row left out of row i's neighbours (the row itself, when ``x`` holds index
    rows; it would be its own nearest neighbour at distance 0), or -1 for none.
    """
    k = min(k, len(index.bank) - (1 if exclude is not None else 0))
    if k < 1:
        return np.zeros(len(x))
    extra = 1 if exclude is not None else 0
    method = index.choose(len(x))  # decided on the whole query set, not per block
    out = np.empty(len(x), dtype=np.float64)
    for s in range(0, len(x), BLOCK):
        sims, nn = index.search(l2_normalise(x[s:s + BLOCK]), k + extra, method)
        if extra:
            sims = np.where(nn != np.asarray(exclude[s:s + BLOCK])[:, None], sims, -np.inf)
            sims = -np.sort(-sims, axis=1)[:, :k]
        out[s:s + BLOCK] = knn_distance(sims, k)
    return out


@register("knn_ratio")
class KnnRatio(KNN):
    """kNN density ratio: distance to the k-th labelled neighbour minus distance to the k-th neighbour
    in the unlabelled pool (``background``).

    ``score(x) = d_k(x, bank) - d_k(x, pool)``. kNN alone ranks every pair far from the labels as OOD,
    a lone outlier first; subtracting the pool distance favours pairs where the pool is dense but the
    labels are not: the parts of the catalogue that are common and not covered (a nonparametric
    density-ratio estimate; the unlabelled pool as "wild" data, as in Katz-Samuels et al. 2022).
    On the Home Depot protocol (pretrained MiniLM, last layer) it separates test_id from test_ood at
    AUROC 0.94 against kNN's 0.77 (``bench/ood.py``); the test queries are never in the pool.
    Pool rows scored against the pool leave themselves out (``score(pool, background_idx=arange(n))``).
    ``max_background``: larger pools are subsampled (seeded); a density ratio only needs a sample of
    the pool. 20,000 keeps a 1M-pair selection at 101 s on 2 cores (100,000: 190 s; bench/select_speed.py).
    """

    uses_background = True

    def __init__(self, k: int = 10, method: str = "auto", max_background: int = 20_000, seed: int = 0) -> None:
        super().__init__(k=k, method=method)
        if max_background < 2:
            raise ConfigError(f"knn_ratio `max_background` must be at least 2, got {max_background}")
        self.max_background = max_background
        self.seed = seed

    def _fit_background(self, background: np.ndarray) -> None:
        n = len(background)
        rows = np.arange(n)
        if n > self.max_background:
            rows = np.sort(np.random.default_rng(self.seed).choice(n, size=self.max_background, replace=False))
        self.background_rows_ = rows
        self.background_n_ = n
        self.background_index_ = NeighbourIndex(l2_normalise(background[rows]), method=self.method)

    def _positions(self, background_idx: np.ndarray | None, n: int) -> np.ndarray | None:
        """Positions in the (subsampled) background index of the given background rows; -1 for none."""
        if background_idx is None:
            return None
        idx = np.asarray(background_idx, dtype=np.int64).reshape(-1)
        if len(idx) != n:
            raise DimensionMismatchError(f"{len(idx)} background_idx for {n} scored rows")
        if len(idx) and idx.max() >= self.background_n_:
            raise DimensionMismatchError(f"background_idx {int(idx.max())} is outside the background "
                                         f"({self.background_n_} rows)")
        rows = self.background_rows_
        pos = np.clip(np.searchsorted(rows, idx), 0, len(rows) - 1)
        return np.where((idx >= 0) & (rows[pos] == idx), pos, -1)

    def _score_background(self, x: np.ndarray, background_idx: np.ndarray | None,
                          bank_distance: np.ndarray | None = None) -> np.ndarray:
        exclude = self._positions(background_idx, len(x))
        if bank_distance is None:
            bank_distance = kth_distance(self.index_, x, self.k)
        return bank_distance - kth_distance(self.background_index_, x, self.k, exclude)

    def score_given_bank_distance(self, embeddings: np.ndarray, bank_distance: np.ndarray, *,
                                  background_idx: np.ndarray | None = None) -> np.ndarray:
        """``score`` with d_k(x, bank) already known (a kNN member with the same k on the same bank):
        the ensemble saves the larger of the two searches at 1M pool pairs."""
        x = self._check(embeddings)
        if len(bank_distance) != len(x):
            raise DimensionMismatchError(f"{len(bank_distance)} bank distances for {len(x)} scored rows")
        return self._score_background(x, background_idx, np.asarray(bank_distance, dtype=np.float64))

    def calibration_scores(self, idx: np.ndarray) -> np.ndarray:
        bank_rows = self.index_.bank[np.asarray(idx, dtype=np.int64)]
        return super().calibration_scores(idx) - kth_distance(self.background_index_, bank_rows, self.k)


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
# Chosen on validation (val_id vs pool_ood, bench/ood.py): equal z-score weights of kNN and the pool
# ratio separate test_id/test_ood at AUROC 0.94 (pretrained and fine-tuned MiniLM alike); adding
# Mahalanobis (0.65 alone) pulls it to 0.91, adding energy from a fine-tuned head to 0.93.
DEFAULT_MEMBERS = ("knn", "knn_ratio")


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

    def __init__(self, members: Sequence[str] = DEFAULT_MEMBERS,
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

    @property
    def needs_background(self) -> bool:
        """True when a member compares with the unlabelled pool: pass ``background=`` to ``fit``."""
        return any(d.uses_background for d in self.members.values())

    def _inputs(self, name: str, embeddings: np.ndarray, logits: np.ndarray | None, where: str) -> np.ndarray:
        if not self.members[name].uses_logits:
            return embeddings
        if logits is None:
            raise ConfigError(f"ensemble member {name!r} scores grade logits: pass logits= to {where}")
        return logits

    def fit(self, embeddings: np.ndarray, labels: np.ndarray | None = None,
            logits: np.ndarray | None = None, *, background: np.ndarray | None = None) -> Ensemble:
        x = as_matrix(embeddings, "embeddings")
        if len(x) == 0:
            raise EmptyBankError("Ensemble: the labelled bank is empty; label some pairs first")
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(len(x), size=min(self.calibration_size, len(x)), replace=False))
        for name, det in self.members.items():
            det.fit(self._inputs(name, x, logits, "fit"), labels, background=background)
            cal = det.calibration_scores(idx)
            self.reference_[name] = (float(np.mean(cal)), float(np.std(cal)))
        self.dim_ = x.shape[1]
        return self

    def score_parts(self, embeddings: np.ndarray, logits: np.ndarray | None = None, *,
                    background_idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Raw score of each member, plus ``"ensemble"``: the combined score (higher = more OOD).
        ``background_idx``: see ``Detector.score``."""
        x = self._check(embeddings)
        parts: dict[str, np.ndarray] = {}
        for name, det in self.members.items():
            shared = self._shared_bank_distance(det, parts)
            if shared is not None:
                parts[name] = det.score_given_bank_distance(x, shared, background_idx=background_idx)
            else:
                parts[name] = det.score(self._inputs(name, x, logits, "score"), background_idx=background_idx)
        parts["ensemble"] = combine_scores(parts, self.weights, self.combine, self.reference_)
        return parts

    def _shared_bank_distance(self, det: Detector, parts: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The kNN member's scores when ``det`` is a knn_ratio with the same k and search method: its
        bank distance is exactly that score (both fitted on the same bank), so it is not searched twice."""
        knn = self.members.get("knn")
        if (isinstance(det, KnnRatio) and type(knn) is KNN and "knn" in parts and knn.k == det.k
                and knn.method == det.method):
            return parts["knn"]
        return None

    def score(self, embeddings: np.ndarray, logits: np.ndarray | None = None, *,
              background_idx: np.ndarray | None = None) -> np.ndarray:
        return self.score_parts(embeddings, logits, background_idx=background_idx)["ensemble"]

    def tune(self, embeddings: np.ndarray, is_ood: np.ndarray, logits: np.ndarray | None = None,
             grid: Sequence[float] = (0.0, 0.5, 1.0), *, background_idx: np.ndarray | None = None) -> Ensemble:
        """Set member weights on labelled validation rows (``is_ood`` 1 = OOD), see ``tune_weights``.

        The validation rows must be disjoint from any test set the ensemble is then judged on.
        """
        parts = self.score_parts(embeddings, logits, background_idx=background_idx)
        parts.pop("ensemble")
        self.weights, self.validation_auroc_ = tune_weights(parts, is_ood, method=self.combine,
                                                            reference=self.reference_, grid=grid)
        return self
