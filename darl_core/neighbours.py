"""Cosine nearest-neighbour search over a labelled bank: exact in blocks, or approximate at scale.

Exact search is a blocked matmul with ``argpartition`` (memory bounded by ``block`` x bank).
Approximate search uses faiss IVF-Flat when faiss-cpu is installed, else pynndescent. ``auto`` picks
approximate once queries x bank exceeds ``EXACT_MAX_WORK`` (measured: exact 1M x 50k would take
minutes on 2 cores) and the bank is larger than ``EXACT_MAX_BANK``.
"""

from __future__ import annotations

import numpy as np

from darl_core.errors import ConfigError, DarlError

EXACT_MAX_WORK = 2e9  # query x bank pairs below which exact search is cheap enough
EXACT_MAX_BANK = 4096  # banks this small are always searched exactly
METHODS = ("auto", "exact", "approximate")


def as_matrix(x: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """A C-contiguous float32 [N, D] array, or a clear error."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise DarlError(f"{what} must be a 2-d array [rows, width], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DarlError(f"{what} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def l2_normalise(x: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); a new float32 array."""
    out = np.empty(x.shape, dtype=np.float32)
    for s in range(0, len(x), block):
        b = np.asarray(x[s:s + block], dtype=np.float32)
        n = np.linalg.norm(b, axis=1, keepdims=True)
        out[s:s + block] = b / np.where(n > 0, n, 1.0)
    return out


def exact_search(queries: np.ndarray, bank: np.ndarray, k: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of ``queries`` against ``bank``: (similarities desc, indices), both [N, k].

    ``block`` query rows at a time (default: ~8M similarities per block, ~100 MB of temporaries)."""
    n = len(queries)
    block = block or max(1, 8_000_000 // max(len(bank), 1))
    sims = np.empty((n, k), dtype=np.float32)
    idx = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, block):
        full = queries[s:s + block] @ bank.T
        part = np.argpartition(-full, k - 1, axis=1)[:, :k] if k < bank.shape[0] else \
            np.broadcast_to(np.arange(bank.shape[0]), (len(full), bank.shape[0]))
        top = np.take_along_axis(full, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        sims[s:s + block] = np.take_along_axis(top, order, axis=1)
        idx[s:s + block] = np.take_along_axis(part, order, axis=1)
    return sims, idx


class NeighbourIndex:
    """Cosine search over unit-length bank rows; the approximate index is built on first need."""

    def __init__(self, bank: np.ndarray, method: str = "auto", nprobe: int = 8) -> None:
        if method not in METHODS:
            raise ConfigError(f"neighbour search `method` must be one of {METHODS}, got {method!r}")
        self.bank = bank
        self.method = method
        self.nprobe = nprobe
        self._approx = None
        self.backend_used: str | None = None

    def choose(self, n_queries: int) -> str:
        if self.method != "auto":
            return self.method
        if len(self.bank) <= EXACT_MAX_BANK or n_queries * len(self.bank) <= EXACT_MAX_WORK:
            return "exact"
        return "approximate"

    def search(self, queries: np.ndarray, k: int, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarities [N, k] descending, bank row indices [N, k]) for unit-length queries.

        ``method``: ``exact`` or ``approximate``; default ``choose(len(queries))``."""
        k = min(k, len(self.bank))
        if (method or self.choose(len(queries))) == "exact":
            self.backend_used = "exact"
            return exact_search(queries, self.bank, k)
        if self._approx is None:
            self._approx = self._build()
        return self._approx(queries, k)

    def _build(self):  # noqa: ANN202 - returns a search closure
        try:
            import faiss
        except ImportError:
            return self._build_pynndescent()
        # IVF-Flat: ~4 sqrt(n) lists, probe 8. Measured on 384-d, 50k bank: recall@10 0.90 and a
        # k-th similarity error of 0.001, at a third of the cost of HNSW (ef 32) for 1M queries.
        n, d = self.bank.shape
        nlist = int(min(max(4 * np.sqrt(n), 16), n // 8))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
        index.cp.seed = 0
        index.cp.min_points_per_centroid = 8  # 16 points per list train it well enough, 2.5x faster
        train = self.bank[np.random.default_rng(0).choice(n, min(n, nlist * 16), replace=False)]
        index.train(train)
        index.add(self.bank)
        index.nprobe = min(self.nprobe, nlist)
        self.backend_used = f"faiss-ivf{nlist}-probe{index.nprobe}"

        def run(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            sims, idx = index.search(np.ascontiguousarray(q, dtype=np.float32), k)
            missing = idx < 0  # a probe that found fewer than k rows: treat as infinitely far
            sims[missing], idx[missing] = -1.0, 0
            return sims, idx.astype(np.int64)
        return run

    def _build_pynndescent(self):  # noqa: ANN202
        from pynndescent import NNDescent

        index = NNDescent(self.bank, metric="dot", n_neighbors=30, random_state=0)
        index.prepare()
        self.backend_used = "pynndescent"

        def run(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
            idx, dist = index.query(q, k=k)
            return (1.0 - dist).astype(np.float32), idx.astype(np.int64)
        return run
