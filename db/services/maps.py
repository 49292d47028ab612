"""Maps of a model version's pairs: computed by a worker job, stored, read back for the Maps page.

``compute_map_job`` embeds the project's pairs with the version (through the shared embedding
cache, so a later DASA round reuses them), fits UMAP, stores the map (``darl_core.maps``) and the
coordinates in ``pair_scores.map_x/map_y``. Run again, it places only the new pairs with
``transform`` unless asked to refit. A large project is embedded in shards: ``launch_map`` queues
one ``embed`` job per shard (any worker takes them) and the map job, which runs the shards that no
worker has started yet itself and waits for those in progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, JobStopped
from db.models import (
    Job,
    JobStatus,
    LabelEvent,
    LabelKind,
    ModelVersion,
    Pair,
    PairScore,
    Project,
    Role,
    RoundItem,
    SelectionRound,
)
from db.services import jobs, versions
from db.services.labels import standing_pair_ids
from db.services.rounds import BASE_KEY, embedding_key, resolve_version
from db.services.users import Actor, require_role
from db.session import is_sqlite, session_scope

SHARD_SIZE = 20_000
ROLE_OF_SPLIT = {"train": "train", "val": "train", "val_id": "train", "test_id": "ID test", "test": "ID test",
                 "test_ood": "OOD test", "pool": "pool"}
ROLES = ("train", "ID test", "pool", "OOD test", "selected", "labelled")
Progress = Callable[..., None]


def map_key(version: ModelVersion) -> str:
    """The map key: one map per version row. Not the cache key: every project's "base" version shares
    the backbone's embeddings (keyed by pair id), but each has its own pairs and so its own map."""
    return f"v{version.id}"


@dataclass
class PairTexts:
    ids: list[int]
    queries: list[str]
    items: list[str]
    splits: list[str]


def _pair_texts(session: Session, project_id: int, only: Sequence[int] | None = None) -> PairTexts:
    from darl_core.model import item_text

    stmt = select(Pair).where(Pair.project_id == project_id).order_by(Pair.id)
    if only is not None:
        stmt = stmt.where(Pair.id.in_(list(only)))
    out = PairTexts([], [], [], [])
    for p in session.scalars(stmt.execution_options(yield_per=5000)):
        out.ids.append(p.id)
        out.queries.append(p.query.text)
        out.items.append(item_text(p.item.title, p.item.text))
        out.splits.append(p.split or "pool")
    return out


def _embed(version: ModelVersion, texts: PairTexts, progress: Progress, should_stop: Callable[[], bool] | None,
           span: tuple[float, float]) -> np.ndarray:
    from darl_core.embeddings import EmbeddingCache, embed_cached, lazy_compute

    def tick(done: int, total: int) -> None:
        progress(span[0] + (span[1] - span[0]) * done / max(total, 1), None)
        if should_stop is not None and should_stop():

            raise JobStopped(f"stopped after embedding {done:,} of {total:,} pairs (saved parts are kept)")

    emb, _ = embed_cached(EmbeddingCache(embedding_key(version)), texts.ids, texts.queries, texts.items,
                          lazy_compute(version.artifact_path), chunk=2048, progress=tick)
    return emb


def embed_shard_job(version_id: int, pair_ids: list[int], progress: Progress | None = None,
                    should_stop: Callable[[], bool] | None = None, *, actor: Actor | None) -> dict[str, Any]:
    """Embed these pairs of a version into its embedding cache (the ``embed`` job; engineer role)."""
    require_role(actor, Role.engineer)
    say = progress or (lambda *_a, **_k: None)
    with session_scope() as session:
        mv = versions.get_version(session, version_id)
        texts = _pair_texts(session, mv.project_id, pair_ids)
    start = time.perf_counter()
    _embed(mv, texts, say, should_stop, (0.0, 1.0))
    return {"pairs": len(texts.ids), "seconds": round(time.perf_counter() - start, 2)}


def run_shards(shard_ids: Sequence[int], progress: Progress, should_stop: Callable[[], bool] | None, *,
               actor: Actor | None) -> None:
    """Run our shards nobody has started (claiming them like a worker would); wait for the others."""

    require_role(actor, Role.engineer)
    token = f"shards-inline/{time.monotonic_ns()}"
    for shard in shard_ids:
        with session_scope() as session:
            job = jobs.claim(session, shard, token, actor=actor)
        if job is not None:
            try:
                result = embed_shard_job(int(job.params["version_id"]), [int(i) for i in job.params["pair_ids"]],
                                         should_stop=should_stop, actor=actor)
            except Exception as exc:
                with session_scope() as session:
                    jobs.finish(session, shard, token, JobStatus.failed, error=str(exc))
                raise
            with session_scope() as session:
                jobs.finish(session, shard, token, JobStatus.succeeded, result=result, message="run by the job that needed it")
        else:
            while True:
                with session_scope() as session:
                    status = jobs.get_job(session, shard).status
                if status in jobs.FINISHED:
                    break  # a failed shard is simply embedded below, with the rest
                if should_stop is not None and should_stop():
                    raise JobStopped("stopped while waiting for embedding shards")
                time.sleep(1.0)
        progress(0.0, f"shard job {shard} done")


def compute_map_job(version_id: int, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                    *, n_neighbors: int = 15, refit: bool = False, shards: Sequence[int] = (),
                    seed: int | None = None, actor: Actor | None) -> dict[str, Any]:
    """Compute (or extend) the stored map of ``version_id`` (engineer role); returns sizes and timings."""
    from darl_core import maps

    require_role(actor, Role.engineer)
    say = progress or (lambda *_a, **_k: None)
    if shards:
        run_shards(shards, say, should_stop, actor=actor)
    with session_scope() as session:
        mv = versions.get_version(session, version_id)
        texts = _pair_texts(session, mv.project_id)
    directory = maps.map_dir(map_key(mv))
    if not texts.ids:
        raise ConfigError("This project has no pairs to map.")
    extend = maps.has_map(directory) and not refit
    if extend:
        known = set(maps.load_map(directory).pair_ids.tolist())
        keep = [i for i, pid in enumerate(texts.ids) if pid not in known]
        texts = PairTexts(*[[col[i] for i in keep] for col in (texts.ids, texts.queries, texts.items, texts.splits)])
        if not texts.ids:
            say(1.0, "the stored map already has every pair")
            return {"points": len(known), "placed": 0}
    say(0.0, f"embedding {len(texts.ids):,} pairs with {mv.name}")
    emb = _embed(mv, texts, say, should_stop, (0.0, 0.6))
    start = time.perf_counter()
    arr = {k: np.asarray(v) for k, v in (("ids", texts.ids), ("split", texts.splits), ("query", texts.queries),
                                         ("item", texts.items))}
    if extend:
        say(0.7, f"placing {len(texts.ids):,} new pairs on the stored map (transform, no refit)")
        stored = maps.place_new(directory, arr["ids"].astype(np.int64), emb, arr["split"], arr["query"], arr["item"])
    else:
        say(0.6, f"fitting UMAP on {len(texts.ids):,} pairs (the first fit in a process compiles numba code)")
        xy, cluster, centroids, reducer = maps.fit_map(emb, n_neighbors=n_neighbors, seed=seed)
        stored = maps.StoredMap(arr["ids"].astype(np.int64), xy, cluster, centroids, arr["split"], arr["query"],
                                arr["item"], {"version_id": version_id, "version": mv.name, "n_neighbors": n_neighbors,
                                              "fit_s": round(time.perf_counter() - start, 2), "points": len(xy)})
        maps.save_map(directory, stored, reducer)
    seconds = time.perf_counter() - start
    say(0.9, "storing coordinates")
    with session_scope() as session:
        _write_coordinates(session, version_id, stored, only=set(texts.ids))
    say(1.0, f"map of {len(stored):,} pairs stored ({seconds:.1f} s)")
    return {"points": len(stored), "placed": len(texts.ids) if extend else 0, "seconds": round(seconds, 2),
            "clusters": int(len(stored.centroids))}


def _write_coordinates(session: Session, version_id: int, m: Any, only: set[int]) -> None:
    if is_sqlite(session):
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    rows = [{"pair_id": int(pid), "model_version_id": version_id, "map_x": float(x), "map_y": float(y)}
            for pid, (x, y) in zip(m.pair_ids, m.xy, strict=True) if int(pid) in only]
    for s in range(0, len(rows), 5000):
        stmt = insert(PairScore).values(rows[s:s + 5000])
        session.execute(stmt.on_conflict_do_update(index_elements=["model_version_id", "pair_id"],
                                                   set_={"map_x": stmt.excluded.map_x, "map_y": stmt.excluded.map_y}))


# --- the page side -----------------------------------------------------------------------------------


def map_choices(session: Session, project_id: int) -> list[dict[str, Any]]:
    """The versions a map can be drawn for, oldest first, each with ``has_map`` and ``current``.

    The pretrained backbone is always offered first; its version row (``id`` None here) is created
    when its first map is launched, as a DASA round would.
    """
    from darl_core import maps

    project = session.get(Project, project_id)
    rows = [{"id": v.id, "name": v.name, "stage": v.stage, "has_map": maps.has_map(maps.map_dir(map_key(v))),
             "current": project is not None and project.current_version_id == v.id}
            for v in versions.list_versions(session, project_id)]
    if not any(r["stage"] == "base" for r in rows):
        rows.insert(0, {"id": None, "name": BASE_KEY, "stage": "base", "has_map": False, "current": False})
    return rows


def launch_map(session: Session, project: Project, version_id: int | None, *, actor: Actor | None,
               refit: bool = False, shard_size: int = SHARD_SIZE) -> Job:
    """Queue the map job of a version (None: the pretrained backbone) and, for a large project,
    embedding shards first that any worker can take."""
    require_role(actor, Role.engineer)
    mv = resolve_version(session, project.id, None, actor=actor) if version_id is None else versions.get_version(session, version_id)
    if mv.project_id != project.id:
        raise ConfigError("That version belongs to another project.")
    ids = list(session.scalars(select(Pair.id).where(Pair.project_id == project.id).order_by(Pair.id)))
    if not ids:
        raise ConfigError("This project has no pairs to map: import some first.")
    shard_ids = queue_embedding_shards(session, project, mv, ids, actor=actor, shard_size=shard_size)
    return jobs.enqueue(session, "map", {"version_id": mv.id, "refit": refit, "shards": shard_ids},
                        project_id=project.id, actor=actor)


def queue_embedding_shards(session: Session, project: Project, mv: ModelVersion, pair_ids: Sequence[int], *,
                           actor: Actor | None, shard_size: int = SHARD_SIZE) -> list[int]:
    """``embed`` jobs for the pairs not yet in the version's embedding cache, ``shard_size`` each, when
    there are more than one shard's worth; any worker takes them. The map and DASA selection jobs share
    the cache, and run (or wait for) their shards before they start: ``run_shards``."""
    from darl_core.embeddings import EmbeddingCache

    require_role(actor, Role.engineer)
    if len(pair_ids) <= shard_size:
        return []
    cached = set(EmbeddingCache(embedding_key(mv)).load()[0])
    missing = [int(i) for i in pair_ids if str(i) not in cached]
    if len(missing) <= shard_size:
        return []
    return [jobs.enqueue(session, "embed", {"version_id": mv.id, "pair_ids": missing[s:s + shard_size]},
                         project_id=project.id, actor=actor).id for s in range(0, len(missing), shard_size)]


def map_view(session: Session, project_id: int, version_id: int) -> pd.DataFrame | None:
    """The stored map with each pair's role, OOD score and predicted grade; None when not computed.

    Roles: the split's (train, ID test, OOD test, pool); a pool pair in an open selection round is
    "selected", one with a standing grade "labelled".
    """
    from darl_core import maps

    mv = versions.get_version(session, version_id)
    if mv.project_id != project_id:
        raise ConfigError("That version belongs to another project.")
    directory = maps.map_dir(map_key(mv))
    if not maps.has_map(directory):
        return None
    m = maps.load_map(directory)
    df = pd.DataFrame({"pair_id": m.pair_ids, "x": m.xy[:, 0], "y": m.xy[:, 1], "cluster": m.cluster,
                       "split": m.split, "query": m.query, "item": m.item})
    labelled = standing_pair_ids(session, project_id)
    selected = set(session.scalars(select(RoundItem.pair_id).join(SelectionRound)
                                   .where(SelectionRound.project_id == project_id, SelectionRound.status == "open")))
    scores = pd.DataFrame(session.execute(select(PairScore.pair_id, PairScore.ood_score, PairScore.predicted_grade)
                                          .where(PairScore.model_version_id == version_id)).all(),
                          columns=["pair_id", "ood_score", "predicted_grade"])
    df = df.merge(scores, on="pair_id", how="left")
    df["ood_score"] = df["ood_score"].astype(float)
    df["labelled"] = df["pair_id"].isin(labelled)
    df["selected"] = df["pair_id"].isin(selected)
    role = df["split"].map(ROLE_OF_SPLIT).fillna("pool")
    is_pool = role == "pool"
    role = role.mask(is_pool & df["labelled"], "labelled").mask(is_pool & df["selected"] & ~df["labelled"], "selected")
    df["role"] = role
    df.attrs["meta"] = m.meta
    return df


def cluster_summary(view: pd.DataFrame) -> pd.DataFrame:
    """Per cluster: size, mean OOD score, labelled share, pool share; the least covered first."""
    g = view.groupby("cluster")
    out = pd.DataFrame({"size": g.size(), "mean_ood": g["ood_score"].mean(), "labelled_share": g["labelled"].mean(),
                        "pool_share": (view["role"] == "pool").groupby(view["cluster"]).mean()})
    return out.sort_values(["mean_ood", "labelled_share"], ascending=[False, True], na_position="last").reset_index()


@dataclass(frozen=True)
class Queued:
    """What ``queue_pairs`` did with the pairs it was given."""

    queued: int  # now offered at the asked priority
    already: int  # were offered at that priority before (sent earlier): left as they were
    not_eligible: int  # in a test split or with an imported or adjudicated grade: never offered


def queue_pairs(session: Session, project_id: int, pair_ids: Sequence[int], priority: int,
                actor: Actor | None) -> Queued:
    """Give the pairs among ``pair_ids`` that the annotation queue can offer ``priority``.

    The queue serves open pairs by priority (highest first) after the open round's pairs. Pairs in a
    test split or with an imported or adjudicated grade are never offered outside a round, so they
    are left alone; pairs already at ``priority`` (the same cluster sent twice) are counted apart, so the
    page can say how many were queued before.
    """
    require_role(actor, Role.engineer)
    if not -1_000_000 <= int(priority) <= 1_000_000:
        raise ConfigError(f"`priority` must be between -1,000,000 and 1,000,000, got {priority}.")
    wanted = sorted({int(i) for i in pair_ids})
    graded = exists().where(LabelEvent.pair_id == Pair.id,
                            LabelEvent.kind.in_((LabelKind.imported, LabelKind.adjudication)))
    queued = already = 0
    for s in range(0, len(wanted), 5000):
        eligible = (Pair.project_id == project_id, Pair.id.in_(wanted[s:s + 5000]),
                    or_(Pair.split.is_(None), ~Pair.split.like("test%")), ~graded)
        already += int(session.scalar(select(func.count(Pair.id)).where(*eligible, Pair.priority == int(priority)))
                       or 0)
        result = session.execute(
            update(Pair).where(*eligible, Pair.priority != int(priority))
            .values(priority=int(priority)).execution_options(synchronize_session=False))
        queued += int(result.rowcount or 0)
    return Queued(queued=queued, already=already, not_eligible=len(wanted) - queued - already)
