"""DASA by query: rank queries, not pairs, so that a round is graded as query lists (issue 24).

Given a pair budget B and at most ``per_query`` pairs per query:
1. every pool pair is scored as in ``darl_core.selection`` (the configured detector, higher = more OOD);
2. a query's score is an aggregate of its pool pairs' scores: ``mean`` (default) or ``max``;
3. a random control slice (``control_fraction`` of B) is drawn as whole random queries, their pairs in
   random order, so the labelled set keeps an honest sample of the pool in the same list shape;
4. the top queries by aggregate (enough for c x the rest of the budget) are the candidates; queries whose
   centroid (mean unit embedding of their pool pairs) is a near-duplicate of a better one are dropped,
   the survivors are clustered by centroid with k-means and taken round-robin across clusters, best
   aggregate first: the diversity step of pair selection, applied across queries;
5. each chosen query contributes its top pairs (by OOD score, or by the model's grade doubt when logits
   are given, as ``order`` says), near-duplicate pairs dropped, up to ``per_query``, until B is filled.
Ranks keep each query's pairs together, so list mode serves a round query by query.

Why ``mean`` is the default: ``max`` lets one outlier item carry its query, and the query's other
``per_query - 1`` picks are then ordinary in-distribution pairs; ``mean`` asks that the query as a whole
be unlike the labelled bank. bench/select_by_query.py measures both against pair selection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from darl_core.errors import ConfigError, PoolError
from darl_core.neighbours import as_matrix, exact_search, l2_normalise
from darl_core.ood import DimensionMismatchError, EmptyBankError
from darl_core.selection import (
    PoolScores,
    Progress,
    Selected,
    SelectionConfig,
    control_size,
    grade_entropy,
    greedy_dedup,
    interleave,
    round_robin,
    score_pool,
)

AGGREGATES = ("mean", "max")
DEFAULT_AGGREGATE = "mean"


def query_groups(query_ids: Sequence[Any]) -> dict[Any, np.ndarray]:
    """Pool rows per query, in first-seen query order."""
    groups: dict[Any, list[int]] = {}
    for row, q in enumerate(query_ids):
        groups.setdefault(q, []).append(row)
    return {q: np.asarray(rows, dtype=np.int64) for q, rows in groups.items()}


def aggregate_scores(scores: np.ndarray, groups: dict[Any, np.ndarray], aggregate: str = DEFAULT_AGGREGATE
                     ) -> dict[Any, float]:
    """Each query's score: the mean or the max of its pool pairs' OOD scores."""
    if aggregate not in AGGREGATES:
        raise ConfigError(f"`aggregate` must be one of {AGGREGATES}, got {aggregate!r}")
    fn = np.mean if aggregate == "mean" else np.max
    return {q: float(fn(scores[rows])) for q, rows in groups.items()}


def _check(n: int, bank: np.ndarray, pool: np.ndarray, budget: Any, per_query: Any, query_ids: Sequence[Any]) -> None:
    if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget < 1:
        raise ConfigError(f"`budget` must be a positive integer, got {budget!r}")
    if not isinstance(per_query, (int, np.integer)) or isinstance(per_query, bool) or per_query < 1:
        raise ConfigError(f"`per_query` must be a positive integer, got {per_query!r}")
    if n == 0:
        raise PoolError("the unlabelled pool is empty: import pairs or release labelled ones first")
    if len(query_ids) != n:
        raise DimensionMismatchError(f"{len(query_ids)} query ids for {n} pool rows")
    if len(bank) == 0:
        raise EmptyBankError("the labelled bank is empty: label a first random batch before DASA selection")
    if bank.shape[1] != pool.shape[1]:
        raise DimensionMismatchError(f"pool width {pool.shape[1]} != bank width {bank.shape[1]}; "
                                     "embed both with the same model version")


def _top_pairs(rows: np.ndarray, rank_by: np.ndarray, unit: np.ndarray, threshold: float, limit: int) -> list[int]:
    """A query's best rows by ``rank_by``, near-duplicates dropped, at most ``limit``."""
    order = rows[np.argsort(-rank_by[rows], kind="stable")]
    local = greedy_dedup(unit[order], np.arange(len(order)), threshold, limit)
    return [int(order[i]) for i in local]


def select_by_query(pool_embeddings: np.ndarray, bank_embeddings: np.ndarray, *, budget: int,
                    query_ids: Sequence[Any], per_query: int = 10, aggregate: str = DEFAULT_AGGREGATE,
                    config: SelectionConfig | None = None, bank_labels: np.ndarray | None = None,
                    pool_logits: np.ndarray | None = None, pool_ids: Sequence[Any] | None = None,
                    bank_ids: Sequence[Any] | None = None, seed: int = 0, bank_logits: np.ndarray | None = None,
                    pool_scores: PoolScores | None = None, progress: Progress | None = None) -> list[Selected]:
    """Pick up to ``budget`` pool rows, query by query (see the module docstring); ranks keep a query's
    pairs together. ``query_ids[i]`` is pool row i's query. Deterministic for a given ``seed``."""
    config = config or SelectionConfig()
    say = progress or (lambda _msg: None)
    pool = as_matrix(pool_embeddings, "pool embeddings")
    bank = as_matrix(bank_embeddings, "bank embeddings")
    n = len(pool)
    _check(n, bank, pool, budget, per_query, query_ids)
    if aggregate not in AGGREGATES:
        raise ConfigError(f"`aggregate` must be one of {AGGREGATES}, got {aggregate!r}")
    groups = query_groups(query_ids)
    capacity = sum(min(per_query, len(rows)) for rows in groups.values())
    if budget > capacity:
        raise PoolError(f"pool exhausted: {capacity} pairs at {per_query} per query across {len(groups)} queries, "
                        f"{budget} asked; lower the budget or raise `per_query`")
    order = config.order if config.order != "auto" else ("uncertainty" if pool_logits is not None else "ood")
    if order == "uncertainty" and pool_logits is None:
        raise ConfigError("order='uncertainty' ranks candidates by the model's grade entropy: pass pool_logits")
    if pool_scores is None:
        say(f"scoring {n:,} pool pairs against {len(bank):,} labelled")
        pool_scores = score_pool(pool, bank, config=config, bank_labels=bank_labels, pool_logits=pool_logits,
                                 bank_logits=bank_logits)
    scores = pool_scores.scores
    if len(scores) != n:
        raise DimensionMismatchError(f"{len(scores)} pool scores for {n} pool rows")
    rank_by = scores if order == "ood" else grade_entropy(as_matrix(pool_logits, "pool logits"))
    rng = np.random.default_rng(seed)
    unit = l2_normalise(pool)
    qscore = aggregate_scores(scores, groups, aggregate)
    names = list(groups)

    say("drawing the control queries")
    n_control = control_size(budget, config.control_fraction)
    control_q: list[tuple[Any, list[int]]] = []
    got = 0
    for qi in rng.permutation(len(names)):
        if got >= n_control:
            break
        q = names[qi]
        rows = [int(r) for r in rng.permutation(groups[q])[:min(per_query, n_control - got)]]
        control_q.append((q, rows))
        got += len(rows)
    taken = {q for q, _ in control_q}

    say("ranking queries and clustering their centroids")
    n_main = budget - got
    by_score = sorted((q for q in names if q not in taken), key=lambda q: -qscore[q])
    want, m = config.candidate_factor * n_main, 0
    cand: list[Any] = []
    for q in by_score:
        if m >= want:
            break
        cand.append(q)
        m += min(per_query, len(groups[q]))
    centroids = l2_normalise(np.stack([unit[groups[q]].mean(0) for q in cand])) if cand else np.zeros((0, pool.shape[1]))
    kept = greedy_dedup(centroids, np.arange(len(cand)), config.duplicate_threshold, len(cand)) if cand else []
    k = min(len(kept), config.n_clusters or math.ceil(math.sqrt(len(kept)))) if kept else 0
    if k > 1:
        clusters = KMeans(n_clusters=k, n_init=1, max_iter=config.kmeans_iter, random_state=seed).fit_predict(
            centroids[kept])
    else:
        clusters = np.zeros(len(kept), dtype=np.int64)
    cand_scores = np.array([qscore[cand[i]] for i in kept])
    ordered = [cand[kept[i]] for i in round_robin(cand_scores, clusters, len(kept))] if kept else []
    cluster_of = {cand[kept[i]]: int(c) for i, c in enumerate(clusters)}
    # If the candidates run short (duplicates, small queries), the rest of the queries follow by score.
    ordered += [q for q in by_score if q not in set(ordered)]

    main_q: list[tuple[Any, list[int]]] = []
    filled = 0
    for q in ordered:
        if filled >= n_main:
            break
        rows = _top_pairs(groups[q], rank_by, unit, config.duplicate_threshold, min(per_query, n_main - filled))
        if rows:
            main_q.append((q, rows))
            filled += len(rows)
    if filled + got < budget:
        raise PoolError(f"pool exhausted after dropping near-duplicates: {filled + got} pairs, {budget} asked; "
                        "lower the budget or raise `duplicate_threshold`")

    say("finding nearest labelled pairs")
    groups_in_order = interleave(list(range(len(main_q))), list(range(len(control_q))))
    flat = [(row, is_control, q) for gi, is_control in groups_in_order
            for q, rows in [(control_q if is_control else main_q)[gi]] for row in rows]
    chosen = [row for row, _, _ in flat]
    if config.n_neighbours:
        nn_sims, nn_idx = exact_search(unit[chosen], l2_normalise(bank), config.n_neighbours)
    else:
        nn_sims, nn_idx = np.zeros((len(chosen), 0)), np.zeros((len(chosen), 0), dtype=np.int64)
    parts = pool_scores.parts
    return [Selected(index=row, pair_id=pool_ids[row] if pool_ids is not None else row, rank=i + 1,
                     score=float(scores[row]), parts={name: float(p[row]) for name, p in parts.items()},
                     cluster=-1 if is_control else cluster_of.get(q, k),
                     neighbours=tuple(bank_ids[j] if bank_ids is not None else int(j) for j in nn_idx[i]),
                     neighbour_similarity=tuple(round(float(s), 4) for s in nn_sims[i]), is_control=is_control,
                     query=q, query_score=qscore[q])
            for i, (row, is_control, q) in enumerate(flat)]
