"""DASA by query (darl_core.query_selection): the mean/max aggregate, queries ranked and diversified as
units, each query's pairs kept together, the budget and per-query cap respected."""

from __future__ import annotations

import numpy as np
import pytest

from darl_core.errors import ConfigError, PoolError
from darl_core.ood import DimensionMismatchError
from darl_core.query_selection import aggregate_scores, query_groups, select_by_query
from darl_core.selection import PoolScores, SelectionConfig

D = 8


def test_aggregate_is_the_mean_or_the_max_of_a_querys_pair_scores() -> None:
    scores = np.array([1.0, 2.0, 3.0, 10.0, 0.5])
    groups = query_groups(["a", "a", "b", "b", "c"])
    assert list(groups) == ["a", "b", "c"] and groups["b"].tolist() == [2, 3]
    assert aggregate_scores(scores, groups, "mean") == {"a": 1.5, "b": 6.5, "c": 0.5}
    assert aggregate_scores(scores, groups, "max") == {"a": 2.0, "b": 10.0, "c": 0.5}
    with pytest.raises(ConfigError, match="`aggregate` must be one of"):
        aggregate_scores(scores, groups, "median")


def _pool(rng: np.random.Generator) -> tuple[np.ndarray, list[str], np.ndarray]:
    """30 queries of 10 pairs. Query 'spike': one very unusual pair, nine ordinary ones. Query 'broad': all
    ten fairly unusual. The rest: ordinary. Scores are given, so the test is about the aggregate."""
    pool = rng.normal(size=(300, D))
    queries = [f"q{i // 10}" for i in range(300)]
    scores = rng.uniform(0.0, 1.0, size=300)
    queries[0:10] = ["spike"] * 10
    scores[0], scores[1:10] = 9.0, 0.2
    queries[10:20] = ["broad"] * 10
    scores[10:20] = 3.0
    pool[10:20, 0] += 5.0  # broad's pairs are alike, unlike the others
    return pool, queries, scores


def _run(aggregate: str, budget: int = 10, per_query: int = 10, control: float = 0.0, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    pool, queries, scores = _pool(rng)
    bank = rng.normal(size=(50, D))
    return select_by_query(pool, bank, budget=budget, query_ids=queries, per_query=per_query, aggregate=aggregate,
                           config=SelectionConfig(control_fraction=control, duplicate_threshold=0.999),
                           pool_ids=[f"p{i}" for i in range(300)], seed=seed,
                           pool_scores=PoolScores(scores, {"knn": scores}))


def test_mean_picks_the_query_unusual_as_a_whole_and_max_the_one_with_an_outlier() -> None:
    mean, top = _run("mean"), _run("max")
    assert {s.query for s in mean} == {"broad"} and {s.query for s in top} == {"spike"}
    assert mean[0].query_score == pytest.approx(3.0) and top[0].query_score == pytest.approx(9.0)
    assert top[0].pair_id == "p0"  # within a query, most unusual first
    assert sum(s.score > 1.0 for s in mean) == 10 and sum(s.score > 1.0 for s in top) == 1
    assert mean[0].reasons()["query_score"] == pytest.approx(3.0)


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_queries_stay_together_the_budget_and_the_cap_hold(aggregate: str) -> None:
    sel = _run(aggregate, budget=47, per_query=4, control=0.1)
    assert len(sel) == 47 and len({s.pair_id for s in sel}) == 47
    assert [s.rank for s in sel] == list(range(1, 48))
    runs = [sel[0].query] + [b.query for a, b in zip(sel, sel[1:], strict=False) if b.query != a.query]
    assert len(runs) == len(set(runs))  # each query's pairs are contiguous in rank order
    per = {q: sum(s.query == q for s in sel) for q in runs}
    assert max(per.values()) <= 4 and len(runs) >= 12
    control = [s for s in sel if s.is_control]
    assert len(control) == 5 and all(s.cluster == -1 for s in control)
    assert {s.query for s in control}.isdisjoint({s.query for s in sel if not s.is_control})
    again = _run(aggregate, budget=47, per_query=4, control=0.1)
    assert [s.pair_id for s in again] == [s.pair_id for s in sel]  # deterministic for a seed


def test_diversity_spreads_the_picks_across_clusters_of_queries() -> None:
    rng = np.random.default_rng(1)
    # 3 alike queries ('a*', 5 pairs each, all in one direction) score a little higher than 20 varied ones
    # ('b*'): the top 4 queries by aggregate would be a0, a1, a2 and one b; round-robin over centroid
    # clusters takes one query per cluster first, so the alike queries count once.
    pool = np.vstack([rng.normal(size=(15, D)) * 0.05 + np.eye(D)[0] * 5,
                      rng.normal(size=(100, D)) + np.eye(D)[1] * 2])
    queries = [f"a{i // 5}" for i in range(15)] + [f"b{i // 5}" for i in range(100)]
    scores = np.r_[np.full(15, 2.0), np.full(100, 1.9)] + rng.uniform(0, 0.01, 115)
    sel = select_by_query(pool, rng.normal(size=(20, D)), budget=20, query_ids=queries, per_query=5,
                          config=SelectionConfig(control_fraction=0.0, duplicate_threshold=1.0),
                          pool_scores=PoolScores(scores, {"knn": scores}))
    picked = {s.query for s in sel}
    assert len(picked) == 4 and sum(q.startswith("a") for q in picked) == 1


def test_errors_name_the_problem() -> None:
    rng = np.random.default_rng(0)
    pool, queries, scores = _pool(rng)
    bank = rng.normal(size=(5, D))
    given = PoolScores(scores, {"knn": scores})
    with pytest.raises(ConfigError, match="`per_query` must be a positive integer"):
        select_by_query(pool, bank, budget=5, query_ids=queries, per_query=0, pool_scores=given)
    with pytest.raises(PoolError, match="pool exhausted: 60 pairs at 2 per query across 30 queries, 61 asked"):
        select_by_query(pool, bank, budget=61, query_ids=queries, per_query=2, pool_scores=given)
    with pytest.raises(DimensionMismatchError, match="299 query ids for 300 pool rows"):
        select_by_query(pool, bank, budget=5, query_ids=queries[:-1], pool_scores=given)
    with pytest.raises(ConfigError, match="`aggregate`"):
        select_by_query(pool, bank, budget=5, query_ids=queries, aggregate="sum", pool_scores=given)
