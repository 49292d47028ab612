"""DASA selection: budget/pool errors, determinism, no near-duplicates, control slice, reasons."""

from __future__ import annotations

import numpy as np
import pytest

from darl_core.errors import ConfigError, PoolError
from darl_core.ood import DimensionMismatchError, EmptyBankError
from darl_core.selection import SelectionConfig, greedy_dedup, interleave, round_robin, select_batch

D = 12


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(400, D))
    bank[:, 0] += 6.0
    pool_id = rng.normal(size=(300, D))
    pool_id[:, 0] += 6.0
    pool_ood = rng.normal(size=(300, D))
    pool_ood[:, 1] += 6.0
    pool = np.vstack([pool_id, pool_ood])
    # Ten exact copies of one OOD pair: top-k would take them all; dedup must keep one.
    pool[300:310] = pool[300]
    return {"bank": bank, "labels": rng.integers(0, 3, 400), "pool": pool,
            "is_ood": np.r_[np.zeros(300, bool), np.ones(300, bool)]}


def _select(d: dict[str, np.ndarray], budget: int = 40, seed: int = 0, **cfg: object) -> list:
    return select_batch(d["pool"], d["bank"], budget=budget, config=SelectionConfig(**cfg),
                        bank_labels=d["labels"], pool_ids=[f"p{i}" for i in range(len(d["pool"]))],
                        bank_ids=[f"b{i}" for i in range(len(d["bank"]))], seed=seed)


def test_selects_budget_ranked_and_mostly_ood(data: dict[str, np.ndarray]) -> None:
    sel = _select(data)
    assert [s.rank for s in sel] == list(range(1, 41))
    assert len({s.pair_id for s in sel}) == 40
    main = [s for s in sel if not s.is_control]
    assert np.mean([data["is_ood"][s.index] for s in main]) > 0.9


def test_deterministic_for_a_seed(data: dict[str, np.ndarray]) -> None:
    a, b, c = _select(data, seed=7), _select(data, seed=7), _select(data, seed=8)
    assert [s.pair_id for s in a] == [s.pair_id for s in b]
    assert [s.pair_id for s in a] != [s.pair_id for s in c]


def test_no_two_selected_exceed_the_duplicate_threshold(data: dict[str, np.ndarray]) -> None:
    threshold = 0.9
    sel = _select(data, budget=60, duplicate_threshold=threshold)
    x = data["pool"][[s.index for s in sel]]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= threshold + 1e-6
    assert sum(300 <= s.index < 310 for s in sel) <= 1


@pytest.mark.parametrize(("budget", "fraction", "expected"), [(40, 0.05, 2), (100, 0.1, 10), (40, 0.0, 0)])
def test_control_slice_has_the_configured_size(data: dict[str, np.ndarray], budget: int, fraction: float,
                                               expected: int) -> None:
    sel = _select(data, budget=budget, control_fraction=fraction)
    control = [s for s in sel if s.is_control]
    assert len(control) == expected
    assert all(s.cluster == -1 for s in control) and all(s.cluster >= 0 for s in sel if not s.is_control)
    if expected:  # spread through the queue, not bunched at the end
        assert min(s.rank for s in control) <= budget // 2


def test_uncertainty_order_picks_the_doubtful_candidates_first(data: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=4.0, size=(len(data["pool"]), 3))
    confident = np.zeros_like(logits)
    confident[:, 0] = 20.0
    logits[data["is_ood"] & (np.arange(len(logits)) % 2 == 0)] = confident[0]  # half the OOD rows: sure
    kw = dict(bank_labels=data["labels"], pool_logits=logits, seed=0)
    by_ood = select_batch(data["pool"], data["bank"], budget=40,
                          config=SelectionConfig(control_fraction=0, order="ood"), **kw)
    by_doubt = select_batch(data["pool"], data["bank"], budget=40,
                            config=SelectionConfig(control_fraction=0, order="uncertainty"), **kw)

    def rows(logits: np.ndarray | None, **cfg: object) -> list[int]:
        config = SelectionConfig(control_fraction=0, **cfg)
        return [s.index for s in select_batch(data["pool"], data["bank"], budget=40, config=config,
                                              **{**kw, "pool_logits": logits})]
    # The default ("auto"): the model's doubt when logits are given, the OOD score without them.
    assert rows(logits) == [s.index for s in by_doubt]
    assert rows(None) == rows(None, order="ood") == [s.index for s in by_ood]
    sure = lambda sel: np.mean([np.allclose(logits[s.index], confident[0]) for s in sel])  # noqa: E731
    assert np.mean([data["is_ood"][s.index] for s in by_doubt]) > 0.9  # still OOD candidates
    # Half the OOD candidates are sure; by OOD score they fill 62% of the batch, by doubt a quarter
    # (round-robin still takes a few from clusters with few doubtful pairs).
    assert sure(by_doubt) <= 0.3 and sure(by_ood) >= 0.5
    with pytest.raises(ConfigError, match="pass pool_logits"):
        _select(data, order="uncertainty")
    with pytest.raises(ConfigError, match="`order` must be one of"):
        SelectionConfig(order="random")


def test_every_pair_carries_its_reasons(data: dict[str, np.ndarray]) -> None:
    sel = _select(data)
    s = sel[0]
    assert set(s.parts) == {"knn", "knn_ratio"}
    assert len(s.neighbours) == 3 and all(n.startswith("b") for n in s.neighbours)
    assert list(s.neighbour_similarity) == sorted(s.neighbour_similarity, reverse=True)
    assert s.reasons()["cluster"] == s.cluster
    # Several clusters are visited before any is visited twice.
    first = [x.cluster for x in sel if not x.is_control][:3]
    assert len(set(first)) == 3


def test_budget_and_pool_errors(data: dict[str, np.ndarray]) -> None:
    small = {**data, "pool": data["pool"][:12]}
    with pytest.raises(PoolError, match="pool exhausted: 12 left, 50 asked"):
        _select(small, budget=50)
    with pytest.raises(PoolError, match="pool is empty"):
        select_batch(np.zeros((0, D)), data["bank"], budget=1)
    with pytest.raises(EmptyBankError, match="bank is empty"):
        select_batch(data["pool"], np.zeros((0, D)), budget=1)
    with pytest.raises(DimensionMismatchError, match="width"):
        select_batch(data["pool"], data["bank"][:, :5], budget=1)
    with pytest.raises(ConfigError, match="got 0"):
        select_batch(data["pool"], data["bank"], budget=0)
    copies = np.repeat(data["pool"][:1], 30, axis=0)
    with pytest.raises(PoolError, match="near-duplicates"):
        select_batch(copies, data["bank"], budget=5)


@pytest.mark.parametrize(("field", "value"), [("candidate_factor", 0.5), ("duplicate_threshold", 1.5),
                                              ("control_fraction", 1.0), ("detector", "nope"),
                                              ("n_clusters", 0)])
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=repr(value) if isinstance(value, str) else str(value)):
        SelectionConfig(**{field: value})


def test_helpers() -> None:
    unit = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    assert greedy_dedup(unit, np.arange(4), 0.9, limit=10) == [0, 2, 3]
    assert greedy_dedup(unit, np.arange(4), 0.9, limit=10, block=1) == greedy_dedup(unit, np.arange(4), 0.9, 10)
    assert greedy_dedup(unit, np.arange(4), 0.5, limit=10) == [0, 2]
    scores = np.array([9.0, 8.0, 7.0, 1.0])
    assert round_robin(scores, np.array([0, 0, 0, 1]), 4) == [0, 3, 1, 2]
    assert [c for _, c in interleave([1, 2, 3, 4], [9, 8])] == [False, True, False, False, True, False]
