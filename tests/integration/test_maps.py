"""Maps: a version's pairs embedded (in shards), mapped with UMAP, stored, read back with roles,
extended with ``transform`` (no refit), clusters sent to the annotation queue.

The only test of the suite that runs UMAP (its first call compiles numba code; numba caches it on
disk, so later runs are faster).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from engineer_seed import seed_project
from sqlalchemy import select
from tiny_models import make_tiny

from darl_core import maps as core_maps
from db.models import Item, JobStatus, Pair, PairScore, Query
from db.services import jobs, maps
from db.services.rounds import resolve_version
from db.services.users import SYSTEM
from db.session import session_scope


def _add_pool_pairs(url: str, project_id: int, n: int) -> list[int]:
    ids = []
    with session_scope(url) as s:
        for i in range(n):
            key = hashlib.sha1(f"new{i}".encode()).hexdigest()
            q, it = Query(project_id=project_id, key=key, text=f"kettle {i}"), Item(project_id=project_id, key=key,
                                                                                     title=f"violin case {i}")
            s.add_all([q, it])
            s.flush()
            pair = Pair(project_id=project_id, query_id=q.id, item_id=it.id, split="pool")
            s.add(pair)
            s.flush()
            ids.append(pair.id)
    return ids


def test_map_is_computed_in_shards_stored_read_back_and_extended(sqlite_database: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DARL_MODEL", str(make_tiny("bert", tmp_path / "bert")))
    with session_scope(sqlite_database) as s:
        project = seed_project(s)
        base = resolve_version(s, project.id, None, actor=SYSTEM)
        job = maps.launch_map(s, project, base.id, actor=SYSTEM, shard_size=50)
        n_pairs = s.query(Pair).count()
    assert len(job.params["shards"]) == 3  # 136 pairs in shards of 50
    # The map job runs the shards no worker took (here: all of them) itself, then fits.
    out = maps.compute_map_job(base.id, shards=job.params["shards"], seed=0, n_neighbors=10, actor=SYSTEM)
    assert out["points"] == n_pairs and out["placed"] == 0
    with session_scope(sqlite_database) as s:
        assert {jobs.get_job(s, i).status for i in job.params["shards"]} == {JobStatus.succeeded}
        coords = dict(s.execute(select(PairScore.pair_id, PairScore.map_x).where(PairScore.model_version_id == base.id)).all())
        view = maps.map_view(s, project.id, base.id)
    assert len(coords) == n_pairs and all(v is not None for v in coords.values())
    assert set(view["role"]) == {"train", "ID test", "OOD test", "pool"}
    assert np.isfinite(view[["x", "y"]].to_numpy()).all()
    before = view.set_index("pair_id")[["x", "y"]]

    new_ids = _add_pool_pairs(sqlite_database, project.id, 5)
    out = maps.compute_map_job(base.id, seed=0, actor=SYSTEM)  # no refit: the new pairs are placed with transform
    assert (out["points"], out["placed"]) == (n_pairs + 5, 5)
    with session_scope(sqlite_database) as s:
        view = maps.map_view(s, project.id, base.id)
    after = view.set_index("pair_id")[["x", "y"]]
    assert np.allclose(after.loc[before.index].to_numpy(), before.to_numpy())  # old points did not move
    assert set(new_ids) <= set(view["pair_id"])

    summary = maps.cluster_summary(view)
    assert summary["size"].sum() == n_pairs + 5
    cluster = int(view.loc[view["pair_id"] == new_ids[0], "cluster"].iloc[0])
    members = view.loc[view["cluster"] == cluster, "pair_id"].tolist()
    with session_scope(sqlite_database) as s:
        sent = maps.queue_pairs(s, project.id, members, priority=7, actor=SYSTEM)
        labelled_in_cluster = view.loc[view["cluster"] == cluster, "labelled"].sum()
        assert sent.queued == len(members) - labelled_in_cluster and sent.already == 0
        assert sent.not_eligible == labelled_in_cluster
        assert s.get(Pair, new_ids[0]).priority == 7
    stored = core_maps.load_map(core_maps.map_dir(f"v{base.id}"))
    assert stored.meta["points"] == n_pairs and stored.meta["placed"] == 5


def test_map_service_sql_on_both_backends(database: str) -> None:
    """Coordinates upserted, roles read back, a cluster queued: the SQL parts, on SQLite and PostgreSQL
    (a stored map written directly, so no UMAP here)."""
    with session_scope(database) as s:
        project = seed_project(s)
        base = resolve_version(s, project.id, None, actor=SYSTEM)
        pairs = list(s.scalars(select(Pair).where(Pair.project_id == project.id).order_by(Pair.id)))
        s.add(PairScore(pair_id=pairs[0].id, model_version_id=base.id, ood_score=0.9))  # a DASA score is kept
        s.flush()
        n = len(pairs)
        ids = np.array([p.id for p in pairs], dtype=np.int64)
        split = np.array([p.split for p in pairs])
        texts = np.array([f"t{i}" for i in range(n)])
        stored = core_maps.StoredMap(ids, np.stack([np.arange(n), -np.arange(n)], 1).astype(np.float32),
                                     (np.arange(n) % 2).astype(np.int32), np.zeros((2, 2), np.float32), split, texts,
                                     texts, {"points": n})
        core_maps.save_map(core_maps.map_dir(maps.map_key(base)), stored)
        maps._write_coordinates(s, base.id, stored, only=set(ids.tolist()))
        maps._write_coordinates(s, base.id, stored, only=set(ids.tolist()))  # idempotent upsert
        base_id, project_id = base.id, project.id
    with session_scope(database) as s:
        rows = {r.pair_id: r for r in s.scalars(select(PairScore).where(PairScore.model_version_id == base_id))}
        assert len(rows) == n and rows[int(ids[3])].map_y == -3.0
        assert rows[int(ids[0])].ood_score == 0.9  # the upsert only touched the coordinates
        view = maps.map_view(s, project_id, base_id)
        assert view["role"].value_counts().to_dict() == {"train": 64, "pool": 40, "ID test": 16, "OOD test": 16}
        cluster_ids = view.loc[view["cluster"] == 1, "pair_id"].tolist()
        sent = maps.queue_pairs(s, project_id, cluster_ids, 9, actor=SYSTEM)
        in_pool = int(((view["cluster"] == 1) & (view["role"] == "pool")).sum())
        assert (sent.queued, sent.already) == (in_pool, 0) and in_pool > 0
        again = maps.queue_pairs(s, project_id, cluster_ids, 9, actor=SYSTEM)  # the same cluster sent twice
        assert (again.queued, again.already, again.not_eligible) == (0, in_pool, len(cluster_ids) - in_pool)
        priorities = dict(s.execute(select(Pair.id, Pair.priority)).all())
    odd_pool = {int(i) for i, c, r in zip(view["pair_id"], view["cluster"], view["role"], strict=True)
                if c == 1 and r == "pool"}
    assert {i for i, p in priorities.items() if p == 9} == odd_pool


def test_large_maps_fit_on_the_faiss_graph_and_place_new_pairs_by_their_neighbours(tmp_path: Path) -> None:
    """From KNN_MIN_ROWS points UMAP gets our neighbour graph (not pynndescent's); the map still separates
    the blobs, and ``transform`` (through CosineKnnIndex.query) puts new points into their blob."""
    import pickle

    from darl_core.neighbours import exact_search, l2_normalise

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64)) * 3
    blob = rng.integers(0, 3, core_maps.KNN_MIN_ROWS + 400)
    x = l2_normalise((centres[blob] + rng.normal(size=(len(blob), 64))).astype(np.float32))

    index = core_maps.CosineKnnIndex(x)
    idx, dist = index.neighbor_graph(15)
    assert idx.shape == (len(x), 15) and (idx[:, 0] == np.arange(len(x))).all() and (dist[:, 0] == 0).all()
    _, exact = exact_search(x, x, 16)
    recall = np.mean([len(set(a[1:]) & set(b[1:])) / 15 for a, b in zip(idx, exact, strict=True)])
    assert recall > 0.85, recall

    xy, _cluster, _centroids, reducer = core_maps.fit_map(x, seed=0)
    assert isinstance(reducer._knn_search_index, core_maps.CosineKnnIndex)
    again = pickle.loads(pickle.dumps(reducer))
    assert again._raw_data is again._knn_search_index.data  # the embeddings are stored once
    from sklearn.neighbors import KNeighborsClassifier

    half = len(x) // 2
    knn2d = KNeighborsClassifier(5).fit(xy[:half], blob[:half])
    assert knn2d.score(xy[half:], blob[half:]) > 0.99  # the blobs stay apart on the map

    new = l2_normalise((centres[1] + rng.normal(size=(30, 64))).astype(np.float32))
    placed = again.transform(new)
    assert (knn2d.predict(placed) == 1).mean() > 0.9


def test_a_dasa_round_embeds_in_shards_that_any_worker_can_take(sqlite_database: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from darl_app.worker import execute
    from darl_core.embeddings import EmbeddingCache
    from db.models import Job
    from db.services.launch import launch_selection

    monkeypatch.setenv("DARL_MODEL", str(make_tiny("bert", tmp_path / "bert")))
    with session_scope(sqlite_database) as s:
        project = seed_project(s)
        job = launch_selection(s, project, 3, version=None, actor=SYSTEM, shard_size=50)
        n_pairs = s.query(Pair).count()
        shard_ids, select_id = [int(i) for i in job.params["shards"]], job.id
    assert len(shard_ids) == 3  # 136 pairs in shards of 50
    def run(job_id: int) -> str:
        status = execute(job_id)
        with session_scope(sqlite_database) as s:
            return f"{status}: {jobs.get_job(s, job_id).error}" if status != "succeeded" else status

    assert run(shard_ids[0]) == "succeeded"  # a second worker took the first shard
    assert len(EmbeddingCache("base").load()[0]) == 50
    assert run(select_id) == "succeeded"  # the select job runs the shards nobody took, then the round
    with session_scope(sqlite_database) as s:
        assert {jobs.get_job(s, i).status for i in shard_ids} == {JobStatus.succeeded}
        assert s.get(Job, select_id).result["size"] == 3
        again = launch_selection(s, project, 3, version=None, actor=SYSTEM, shard_size=50)
        assert again.params["shards"] == []  # every pair is in the version's cache now
    assert len(EmbeddingCache("base").load()[0]) == n_pairs
