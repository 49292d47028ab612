"""DASA selection rounds: the ranked annotation queue, its reasons, and the pool's OOD scores.

``run_selection`` is the whole job (CLI ``select`` and the background worker call it): embed the
project's labelled bank and unlabelled pool under a model version (cached on disk, so only new pairs
are embedded), select a batch (``darl_core.selection``), upsert every pool pair's scores into
``pair_scores`` and write the round. The bank is every labelled pair outside the test/validation
splits; the pool is every unlabelled pair outside those splits and not already queued in an open round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, NotFoundError, PoolError
from darl_core.metrics import softmax
from darl_core.query_selection import AGGREGATES, DEFAULT_AGGREGATE, select_by_query
from darl_core.selection import PoolScores, Selected, SelectionConfig, score_pool, select_batch
from db.models import ModelVersion, Pair, PairScore, Role, RoundItem, SelectionRound
from db.services.labels import final_labels, standing_pair_ids
from db.services.projects import get_project
from db.services.users import Actor, require_role
from db.session import is_sqlite

Progress = Callable[[float, str], None]
HELD_OUT = ("test", "test_id", "test_ood", "val", "val_id")  # never in the bank, never selected
BY = ("pair", "query")  # a round ranks pairs, or queries and then the top pairs of each
BASE_KEY = "base"


def create_round(session: Session, project_id: int, model_version_id: int | None, params: dict[str, Any],
                 selected: Sequence[Selected], *, name: str | None = None, created_by: int | None = None,
                 extra_reasons: dict[int, dict[str, Any]] | None = None, by: str = "pair",
                 actor: Actor | None) -> SelectionRound:
    """Write a round and its ranked items (rank 1 = first in the queue; engineer role); ``extra_reasons`` (by
    pair id) are merged into each item's reasons; ``by`` says whether DASA ranked pairs or queries."""
    require_role(actor, Role.engineer)
    if by not in BY:
        raise ConfigError(f"A round is selected by {' or '.join(BY)}, got {by!r}.")
    if not selected:
        raise PoolError("a round needs at least one selected pair; nothing was written")
    ids = [int(s.pair_id) for s in selected]
    if len(set(ids)) != len(ids):
        raise ConfigError("a round lists each pair once; the selection repeats a pair id")
    count = session.scalar(select(SelectionRound.id).where(SelectionRound.project_id == project_id)
                           .order_by(SelectionRound.id.desc()).limit(1))
    rnd = SelectionRound(project_id=project_id, model_version_id=model_version_id,
                         name=name or f"round {(count or 0) + 1}", params=params, created_by=created_by, by=by)
    session.add(rnd)
    session.flush()
    session.add_all(RoundItem(round_id=rnd.id, pair_id=int(s.pair_id), rank=int(s.rank), score=float(s.score),
                              is_control=bool(s.is_control),
                              reasons={**s.reasons(), **(extra_reasons or {}).get(int(s.pair_id), {})})
                    for s in selected)
    session.flush()
    return rnd


def get_round(session: Session, round_id: int) -> SelectionRound:
    rnd = session.get(SelectionRound, round_id)
    if rnd is None:
        raise NotFoundError(f"No selection round {round_id}; the Selection page lists the rounds.")
    return rnd


def round_queue(session: Session, round_id: int) -> list[int]:
    """The round's pair ids in queue (rank) order."""
    get_round(session, round_id)
    return list(session.scalars(select(RoundItem.pair_id).where(RoundItem.round_id == round_id)
                                .order_by(RoundItem.rank)))


def round_items(session: Session, round_id: int) -> list[RoundItem]:
    get_round(session, round_id)
    return list(session.scalars(select(RoundItem).where(RoundItem.round_id == round_id).order_by(RoundItem.rank)))


def round_rows(session: Session, project_id: int) -> list[dict[str, Any]]:
    """One row per selection round of the project, newest first: the version that picked it, whether it
    ranked pairs or queries (``by``), its size in pairs and in queries, its control (random) pairs, and how
    many of its pairs have a standing grade so far."""
    graded = standing_pair_ids(session, project_id)
    names = dict(session.execute(select(ModelVersion.id, ModelVersion.name)
                                 .where(ModelVersion.project_id == project_id)).all())
    counts: dict[int, list[int]] = {}
    queries: dict[int, set[int]] = {}
    for rid, pair_id, control, query_id in session.execute(
            select(RoundItem.round_id, RoundItem.pair_id, RoundItem.is_control, Pair.query_id).join(SelectionRound)
            .join(Pair, Pair.id == RoundItem.pair_id).where(SelectionRound.project_id == project_id)):
        c = counts.setdefault(rid, [0, 0, 0])
        c[0], c[1], c[2] = c[0] + 1, c[1] + int(control), c[2] + int(pair_id in graded)
        queries.setdefault(rid, set()).add(query_id)
    rows = []
    for r in session.scalars(select(SelectionRound).where(SelectionRound.project_id == project_id)
                             .order_by(SelectionRound.id.desc())):
        pairs, controls, done = counts.get(r.id, [0, 0, 0])
        rows.append({"id": r.id, "name": r.name, "status": r.status, "version": names.get(r.model_version_id, ""),
                     "created_at": r.created_at, "by": r.by, "queries": len(queries.get(r.id, ())),
                     "pairs": pairs, "controls": controls, "graded": done,
                     "graded_share": done / pairs if pairs else 0.0,
                     "order": (r.params or {}).get("order", "")})
    return rows


def default_version(session: Session, project_name: str) -> int | None:
    """The version a selection uses when none is named: the project's current one (Training page, "Make
    current"); None, the pretrained backbone, before any is current."""
    return get_project(session, project_name).current_version_id


def resolve_version(session: Session, project_id: int, version: str | int | None, *,
                    actor: Actor | None) -> ModelVersion:
    """A project's model version by id or name; ``None``: the pretrained backbone (created once, so engineer role)."""
    require_role(actor, Role.engineer)
    if version is None or version == BASE_KEY:
        found = session.scalar(select(ModelVersion).where(ModelVersion.project_id == project_id,
                                                          ModelVersion.name == BASE_KEY))
        if found is None:
            found = ModelVersion(project_id=project_id, name=BASE_KEY, stage="base", artifact_path=None)
            session.add(found)
            session.flush()
        return found
    stmt = select(ModelVersion).where(ModelVersion.project_id == project_id)
    text = str(version)
    found = session.scalar(stmt.where(ModelVersion.id == int(text))) if text.isdigit() else None
    found = found or session.scalar(stmt.where(ModelVersion.name == text))
    if found is None:
        names = ", ".join(session.scalars(select(ModelVersion.name).where(ModelVersion.project_id == project_id)))
        raise NotFoundError(f"No model version {version!r} in this project (known: {names or 'none yet'}).")
    return found


@dataclass(frozen=True)
class PairTexts:
    ids: list[int]
    queries: list[str]
    items: list[str]
    query_ids: list[int] = field(default_factory=list)


def _pairs(session: Session, project_id: int, ids: Sequence[int] | None, exclude: set[int]) -> PairTexts:
    from darl_core.model import item_text

    stmt = select(Pair).where(Pair.project_id == project_id).order_by(Pair.id)
    out = PairTexts([], [], [], [])
    for pair in session.scalars(stmt.execution_options(yield_per=5000)):
        if (pair.split or "") in HELD_OUT or pair.id in exclude or (ids is not None and pair.id not in ids):
            continue
        out.ids.append(pair.id)
        out.queries.append(pair.query.text)
        out.query_ids.append(pair.query_id)
        out.items.append(item_text(pair.item.title, pair.item.text))
    return out


def embedding_key(version: ModelVersion) -> str:
    """A version's embedding cache key, shared with maps and its embedding shards: the pretrained backbone's
    embeddings (``base``) serve every project's base version; a trained version has its own."""
    return BASE_KEY if version.artifact_path is None else f"v{version.id}"


def _embed(version: ModelVersion, texts: PairTexts, progress: Progress | None, span: tuple[float, float]):  # noqa: ANN202
    from darl_core.embeddings import EmbeddingCache, embed_cached, lazy_compute

    cache = EmbeddingCache(embedding_key(version))

    def tick(done: int, total: int) -> None:
        if progress:
            progress(span[0] + (span[1] - span[0]) * done / max(total, 1), f"embedded {done:,}/{total:,} pairs")
    return embed_cached(cache, texts.ids, texts.queries, texts.items, lazy_compute(version.artifact_path),
                        progress=tick)


def upsert_scores(session: Session, version_id: int, rows: list[dict[str, Any]], *, actor: Actor | None) -> None:
    """Insert or update ``pair_scores`` rows (keeps map coordinates another job wrote; engineer role)."""
    require_role(actor, Role.engineer)
    if not rows:
        return
    if is_sqlite(session):
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    for s in range(0, len(rows), 5000):
        stmt = insert(PairScore).values([{**r, "model_version_id": version_id} for r in rows[s:s + 5000]])
        cols = ("ood_score", "ood_parts", "probs", "expected_grade", "predicted_grade", "cluster")
        session.execute(stmt.on_conflict_do_update(index_elements=["model_version_id", "pair_id"],
                                                   set_={c: stmt.excluded[c] for c in cols}))


def run_selection(session: Session, project_name: str, budget: int, version: str | int | None = None,
                  progress: Progress | None = None, *, config: SelectionConfig | None = None, seed: int = 0,
                  created_by: int | None = None, by: str = "pair", per_query: int = 10,
                  aggregate: str = DEFAULT_AGGREGATE, actor: Actor | None) -> SelectionRound:
    """Embed, select ``budget`` pairs, store pool scores and the round (engineer role); returns the new round.

    ``by="query"``: DASA ranks queries by the ``aggregate`` (mean or max) of their pool pairs' OOD scores and
    takes up to ``per_query`` pairs of each (``darl_core.query_selection``); the round is served query by query.
    """
    require_role(actor, Role.engineer)
    say = progress or (lambda _f, _m: None)
    config = config or SelectionConfig()
    if by not in BY:
        raise ConfigError(f"`by` must be one of {BY}, got {by!r}")
    if by == "query" and (aggregate not in AGGREGATES or isinstance(per_query, bool)
                          or not isinstance(per_query, int) or per_query < 1):
        raise ConfigError(f"by query needs `per_query` >= 1 (got {per_query!r}) and `aggregate` in {AGGREGATES} "
                          f"(got {aggregate!r})")
    project = get_project(session, project_name)
    mv = resolve_version(session, project.id, version, actor=actor)
    if config.order == "uncertainty" and mv.artifact_path is None:  # before any embedding; "auto" falls back
        raise ConfigError(f"order 'uncertainty' ranks pairs by the model's grade doubt, and {mv.name} has no "
                          "trained grade head: select with a trained version, or order 'ood'")
    labels = final_labels(session, project.id)
    queued = set(session.scalars(select(RoundItem.pair_id).join(SelectionRound)
                                 .where(SelectionRound.project_id == project.id, SelectionRound.status == "open")))
    bank = _pairs(session, project.id, set(labels), set())
    pool = _pairs(session, project.id, None, set(labels) | queued)
    if not pool.ids:
        raise PoolError(f"project '{project_name}' has no unlabelled pairs left to select from "
                        f"({len(labels):,} labelled, {len(queued):,} queued in open rounds)")
    if budget > len(pool.ids):
        raise PoolError(f"pool exhausted: {len(pool.ids)} left, {budget} asked; lower the budget")
    if not bank.ids:
        raise PoolError(f"project '{project_name}' has no labelled pairs yet: DASA compares the pool with "
                        "labelled pairs; label a first (random) batch, or import labelled pairs")
    say(0.0, f"embedding {len(bank.ids):,} labelled and {len(pool.ids):,} pool pairs ({mv.name})")
    bank_emb, bank_logits = _embed(mv, bank, progress, (0.0, 0.3))
    pool_emb, pool_logits = _embed(mv, pool, progress, (0.3, 0.8))
    trained = mv.artifact_path is not None  # the base backbone's head is untrained: no useful logits
    bank_labels = np.array([labels[i].grade for i in bank.ids])
    pool_logits, bank_logits = (pool_logits, bank_logits) if trained else (None, None)
    say(0.8, f"scoring {len(pool.ids):,} pool pairs")
    scores = score_pool(pool_emb, bank_emb, config=config, bank_labels=bank_labels, pool_logits=pool_logits,
                        bank_logits=bank_logits)
    say(0.85, "selecting a diverse batch")
    if by == "query":
        selected = select_by_query(pool_emb, bank_emb, budget=budget, query_ids=pool.query_ids, per_query=per_query,
                                   aggregate=aggregate, config=config, bank_labels=bank_labels, pool_ids=pool.ids,
                                   bank_ids=bank.ids, seed=seed, pool_scores=scores, pool_logits=pool_logits)
    else:
        selected = select_batch(pool_emb, bank_emb, budget=budget, config=config, bank_labels=bank_labels,
                                pool_ids=pool.ids, bank_ids=bank.ids, seed=seed, pool_scores=scores,
                                pool_logits=pool_logits)
    say(0.9, "writing scores and the round")
    _write_scores(session, mv.id, pool, scores, selected, pool_logits, actor)
    params = {**config.as_params(), "budget": budget, "seed": seed, "model_version": mv.name,
              "bank_size": len(bank.ids), "pool_size": len(pool.ids), "by": by}
    if by == "query":
        params.update(per_query=per_query, aggregate=aggregate, queries=len({s.query for s in selected}))
    rnd = create_round(session, project.id, mv.id, params, selected, created_by=created_by,
                       extra_reasons=_segment_reasons(session, project.id, set(labels), selected), by=by, actor=actor)
    say(1.0, f"round {rnd.id}: {len(selected)} pairs queued" + (f" from {params['queries']} queries" if by == "query"
                                                                 else ""))
    return rnd


def _segment_reasons(session: Session, project_id: int, labelled: set[int],
                     selected: Sequence[Selected]) -> dict[int, dict[str, Any]]:
    """Per selected pair: its segment and how many of that segment's pairs were labelled when it was picked
    (outside the held-out splits; the grading screen says "Segment tools: 3% of pairs labelled")."""
    counts: dict[str, list[int]] = {}
    segment_of: dict[int, str] = {}
    wanted = {int(s.pair_id) for s in selected}
    rows = session.execute(select(Pair.id, Pair.segment, Pair.split).where(Pair.project_id == project_id,
                                                                            Pair.segment.is_not(None)))
    for pid, segment, split in rows:
        if (split or "") in HELD_OUT:  # like the bank: held-out pairs are neither labelled nor pool
            continue
        c = counts.setdefault(segment, [0, 0])
        c[0] += pid in labelled
        c[1] += 1
        if pid in wanted:
            segment_of[pid] = segment
    return {pid: {"segment": {"name": seg, "labelled": counts[seg][0], "pairs": counts[seg][1]}}
            for pid, seg in segment_of.items()}


def _write_scores(session: Session, version_id: int, pool: PairTexts, scores: PoolScores,
                  selected: Sequence[Selected], logits: np.ndarray | None, actor: Actor | None) -> None:
    cluster = {int(s.pair_id): s.cluster for s in selected}
    probs = softmax(logits) if logits is not None else None
    rows = []
    for i, pid in enumerate(pool.ids):
        row: dict[str, Any] = {"pair_id": pid, "cluster": cluster.get(pid), "ood_score": float(scores.scores[i]),
                               "ood_parts": {k: round(float(v[i]), 5) for k, v in scores.parts.items()},
                               "probs": None, "expected_grade": None, "predicted_grade": None}
        if probs is not None:
            row.update(probs=[round(float(p), 5) for p in probs[i]],
                       expected_grade=float((probs[i] * np.arange(probs.shape[1])).sum()),
                       predicted_grade=int(probs[i].argmax()))
        rows.append(row)
    upsert_scores(session, version_id, rows, actor=actor)
