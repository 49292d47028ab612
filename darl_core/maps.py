"""2-D UMAP maps of pair embeddings: fit once, store, re-render from storage, place new pairs.

A map lives in ``DARL_HOME/maps/<key>/`` (key: the model version, as for the embedding cache):
- ``points.npz``: pair ids, x/y, cluster, plus the hover texts and split, so drawing a map needs
  no model, no UMAP and no join (re-render of 50k points well under a second);
- ``reducer.pkl``: the fitted UMAP, used only to ``transform`` new pairs onto the existing map
  (no refit: the map the annotators and engineers know stays put);
- ``meta.json``: parameters, sizes and timings.

Clusters are k-means on the 2-D coordinates, so they are the blobs one sees; a new point joins the
nearest centroid. UMAP's first call in a process compiles numba code (~45 s on 2 cores, see
METHOD.md); numba caches it on disk (``NUMBA_CACHE_DIR``), so later processes mostly skip it.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from darl_core.errors import ConfigError, NotFoundError
from darl_core.settings import darl_home

KNN_MIN_ROWS = 4096  # UMAP's own cut-off: below it, it computes every distance and needs no index


@dataclass
class StoredMap:
    pair_ids: np.ndarray  # int64 [N]
    xy: np.ndarray  # float32 [N, 2]
    cluster: np.ndarray  # int32 [N]
    centroids: np.ndarray  # float32 [K, 2]
    split: np.ndarray  # str [N]
    query: np.ndarray  # str [N]
    item: np.ndarray  # str [N]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.pair_ids)


def map_dir(key: str, root: Path | None = None) -> Path:
    if not key or "/" in key or key in (".", ".."):
        raise ConfigError(f"map key must be a plain name, got {key!r}")
    return (root or darl_home() / "maps") / key


def n_clusters_for(n: int) -> int:
    """sqrt(n / 2) clusters, between 2 and 40: 136 pairs -> 8, 1,000 -> 22, 3,200 and more -> 40.

    (One per 150 points gave 2 clusters to a 136-pair map that shows five blobs.)"""
    return int(min(40, max(2, round((n / 2) ** 0.5))))


def cluster_points(xy: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(xy)))
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(xy)
    return km.labels_.astype(np.int32), km.cluster_centers_.astype(np.float32)


def _import_umap():  # noqa: ANN202
    """Import umap with numba's on-disk cache switched on for its compiled functions.

    umap-learn compiles ~100 numba functions on first use in every process (~45 s on 2 cores) and
    marks almost none ``cache=True``; every map job runs in a fresh child process, so each would pay
    it again. Importing umap with ``cache=True`` as the default makes numba keep the machine code
    (next to the sources, or in ``NUMBA_CACHE_DIR``): only the first process on a machine compiles.
    """
    import sys

    if "umap" in sys.modules:
        return sys.modules["umap"]
    import numba

    original = numba.njit

    def njit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if len(args) == 1 and callable(args[0]) and not kwargs:  # bare @numba.njit
            return original(cache=True)(args[0])
        kwargs.setdefault("cache", True)
        return original(*args, **kwargs)

    numba.njit = njit
    try:
        import umap
    finally:
        numba.njit = original
    return umap


class CosineKnnIndex:
    """The k-nearest-neighbour graph UMAP fits on, and the search its ``transform`` calls, from faiss.

    UMAP would build both with pynndescent, whose numba code takes ~50 s to compile on 2 cores: over half
    of a first 50k map (bench/map_speed.py). Here the graph comes from ``neighbours.NeighbourIndex``
    (faiss: exact below 2e9 pair products, IVF above, as for DASA's bank) and ``query`` is an exact
    blocked search, cheap for the few pairs ``place_new`` adds. ``data`` is the very array UMAP keeps
    as ``_raw_data``, so pickling the reducer stores it once.
    """

    _angular_trees = True  # UMAP's transform reads it to choose the search epsilon (unused here)

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def neighbor_graph(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices int32 [N, k], cosine distances float32 [N, k]); each row starts with the point itself."""
        from darl_core.neighbours import NeighbourIndex, l2_normalise

        unit = l2_normalise(self.data)
        sims, idx = NeighbourIndex(unit).search(unit, k + 1)
        rows = np.arange(len(unit))
        sims[idx == rows[:, None]] = -np.inf  # the point itself goes first, whatever its rank (ties, IVF misses)
        sims = np.concatenate([np.full((len(unit), 1), np.inf, np.float32), sims], axis=1)
        idx = np.concatenate([rows[:, None], idx], axis=1)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        idx, sims = np.take_along_axis(idx, order, 1), np.take_along_axis(sims, order, 1)
        sims[:, 0] = 1.0
        return idx.astype(np.int32), np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32)

    def query(self, queries: np.ndarray, k: int, epsilon: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        from darl_core.neighbours import as_matrix, exact_search, l2_normalise

        sims, idx = exact_search(l2_normalise(as_matrix(queries)), l2_normalise(self.data), k)
        return idx.astype(np.int32), np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32)


def fit_map(embeddings: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1, seed: int | None = None,
            n_clusters: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """UMAP to 2-D, then k-means clusters. Returns (xy, cluster, centroids, reducer).

    ``seed=None`` lets UMAP use every core (a seed makes it single-threaded but reproducible).
    """
    umap = _import_umap()
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) < 4:
        raise ConfigError(f"a map needs at least 4 embeddings of shape [N, D], got {x.shape}")
    k = min(n_neighbors, len(x) - 1)
    knn: dict[str, Any] = {}
    if len(x) >= KNN_MIN_ROWS:  # smaller maps: UMAP computes all distances itself, no search index
        index = CosineKnnIndex(x)
        knn["precomputed_knn"] = (*index.neighbor_graph(k), index)
    reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, metric="cosine", random_state=seed,
                        low_memory=True, **knn)
    with warnings.catch_warnings():  # "not an NNDescent object": transform works through CosineKnnIndex.query
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        xy = reducer.fit_transform(x).astype(np.float32)
    cluster, centroids = cluster_points(xy, n_clusters or n_clusters_for(len(x)), seed or 0)
    return xy, cluster, centroids, reducer


def save_map(directory: Path, m: StoredMap, reducer: Any | None = None) -> None:
    """Write atomically (temp names, then rename): a reader never sees a half-written map."""
    directory.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = directory / f".points-{tag}.npz"
    np.savez(tmp, pair_ids=m.pair_ids.astype(np.int64), xy=m.xy.astype(np.float32), cluster=m.cluster.astype(np.int32),
             centroids=m.centroids.astype(np.float32), split=m.split.astype(str), query=m.query.astype(str),
             item=m.item.astype(str))
    if reducer is not None:
        rtmp = directory / f".reducer-{tag}.pkl"
        with rtmp.open("wb") as fh:
            pickle.dump(reducer, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(rtmp, directory / "reducer.pkl")
    os.replace(tmp, directory / "points.npz")
    (directory / "meta.json").write_text(json.dumps(m.meta, indent=2, default=str))


def load_map(directory: Path) -> StoredMap:
    points = directory / "points.npz"
    if not points.is_file():
        raise NotFoundError(f"no map stored in {directory}; compute it first (Maps page, or a `map` job)")
    with np.load(points, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return StoredMap(meta=meta, **arrays)


def has_map(directory: Path) -> bool:
    return (directory / "points.npz").is_file()


def place_new(directory: Path, pair_ids: np.ndarray, embeddings: np.ndarray, split: np.ndarray,
              query: np.ndarray, item: np.ndarray) -> StoredMap:
    """Add pairs to a stored map with the fitted reducer's ``transform`` (no refit) and save it."""
    m = load_map(directory)
    with (directory / "reducer.pkl").open("rb") as fh:
        reducer = pickle.load(fh)  # our own file, written by save_map
    start = time.perf_counter()
    xy = reducer.transform(np.asarray(embeddings, dtype=np.float32)).astype(np.float32)
    d = ((xy[:, None, :] - m.centroids[None, :, :]) ** 2).sum(-1)
    cluster = d.argmin(1).astype(np.int32)
    meta = {**m.meta, "placed": int(m.meta.get("placed", 0)) + len(pair_ids),
            "transform_s": round(time.perf_counter() - start, 3)}
    out = StoredMap(np.concatenate([m.pair_ids, pair_ids]), np.concatenate([m.xy, xy]),
                    np.concatenate([m.cluster, cluster]), m.centroids, np.concatenate([m.split, split.astype(str)]),
                    np.concatenate([m.query, query.astype(str)]), np.concatenate([m.item, item.astype(str)]), meta)
    save_map(directory, out)
    return out
