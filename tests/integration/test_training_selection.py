"""A stage's ``data_selection`` on a tiny backbone: it trains on the kept pairs only, and its metrics say which."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_models import make_examples, make_tiny  # tests/integration is on sys.path (pytest prepend mode)

from darl_core.config import StageConfig
from darl_core.training import Examples, run_stage

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny("bert", tmp_path_factory.mktemp("bert"))


def cfg(model_dir: Path, **kw) -> StageConfig:
    return StageConfig("ft", model_dir=str(model_dir), epochs=1, batch_size=8, max_length=24, lr=5e-3, head_lr=1e-2,
                       seed=0, tuning="full", posthoc_min_queries=2, posthoc_min_per_grade=1,
                       grade_names=("bad", "ok", "good"), **kw)


@pytest.mark.parametrize("method", ["drop_suspects", "hard_learnable"])
def test_stage_trains_on_the_kept_pairs_and_records_them(bert, tmp_path, method, monkeypatch):
    train, val = make_examples(60, 3, 0), make_examples(24, 3, 1)
    seen: list[Examples] = []
    import darl_core.training as training

    real_loop = training._train_loop

    def spy(config, data, *args, **kw):  # noqa: ANN001, ANN202 - records what the loop was given
        seen.append(data)
        return real_loop(config, data, *args, **kw)

    monkeypatch.setattr(training, "_train_loop", spy)
    res = run_stage(cfg(bert, data_selection=method, drop_share=0.25, rest_share=0.3), train, val, tmp_path / "s")
    m = res.metrics
    kept = json.loads((tmp_path / "s" / "selection.json").read_text())["rows"]
    assert m["data_selection"] == method and m["selection_pairs"] == 60
    assert m["selection_kept"] == len(kept) == m["train_pairs"] < 60
    assert m["selection_kept"] + m["selection_dropped"] == 60
    if method == "drop_suspects":
        assert m["selection_kept"] == 45 and m["data_selection_share"] == 0.25
    else:
        assert m["selection_kept"] == m["selection_hard_learnable"] + round(0.3 * (60 - m["selection_hard_learnable"]))
    per = m["selection_kept_per_grade"]
    assert set(per) == {"bad", "ok", "good"} and sum(per.values()) == len(kept)
    assert sum(m["selection_dropped_per_grade"].values()) == m["selection_dropped"]
    # The loop saw exactly the kept pairs, and took one epoch of steps over them only.
    assert seen[0].queries == [train.queries[i] for i in kept]
    assert seen[0].grades.tolist() == train.grades[kept].tolist()
    assert m["steps"] == math.ceil(len(kept) / 8)


def test_all_is_the_old_behaviour(bert, tmp_path):
    train, val = make_examples(40, 3, 0), make_examples(24, 3, 1)
    m = run_stage(cfg(bert), train, val, tmp_path / "all").metrics
    assert m["train_pairs"] == 40 and "data_selection" not in m
    assert not (tmp_path / "all" / "selection.json").exists()


def test_cli_trains_with_data_selection_and_the_version_records_what_was_kept(sqlite_database, bert, capsys):
    from tiny_models import seed_tiny_project

    from darl_app.cli import main
    from db.models import ModelVersion
    from db.session import session_scope

    with session_scope() as session:
        seed_tiny_project(session, bert, n=80)
    fast = ["--epochs", "1", "--batch-size", "8", "--max-length", "24", "--no-evaluate"]
    assert main(["train", "--project", "tiny", "--stage", "ce", "--data-selection", "drop_suspects",
                 "--drop-share", "0.2", *fast]) == 0
    with session_scope() as session:
        ce = session.query(ModelVersion).filter_by(name="ce-1").one()
        m, train = ce.metrics, ce.label_snapshot["train"]
        assert ce.config["data_selection"] == "drop_suspects" and ce.config["drop_share"] == 0.2
    assert m["data_selection"] == "drop_suspects" and m["selection_pairs"] == train
    assert m["selection_dropped"] == round(0.2 * train) and m["train_pairs"] == m["selection_kept"]
    assert sum(m["selection_kept_per_grade"].values()) == m["selection_kept"]
    assert set(m["selection_kept_per_grade"]) == {"irrelevant", "weak", "strong"}  # the project's grade names
    capsys.readouterr()
    # Bad values: a message that says what is allowed, and nothing trained.
    assert main(["train", "--project", "tiny", "--stage", "ce", "--data-selection", "drop_some", *fast]) == 2
    assert "`data_selection` must be one of all, drop_suspects, hard_learnable, got 'drop_some'" in capsys.readouterr().err
    assert main(["train", "--project", "tiny", "--stage", "ce", "--data-selection", "drop_suspects",
                 "--drop-share", "1.5", *fast]) == 2
    assert "`drop_share` must be a share in (0, 1), got 1.5" in capsys.readouterr().err
    with session_scope() as session:
        assert session.query(ModelVersion).count() == 1


def test_drop_suspects_follows_the_latest_label_check_and_keeps_reviewed_pairs(database, bert, monkeypatch):
    """With a label check stored, drop_suspects drops that check's most suspect training pairs, never one a
    reviewer has looked at since (here its top suspect, confirmed); without a check it ranks the pairs itself."""
    from tiny_models import seed_tiny_project

    from db.models import LabelCheckItem, Pair, Project, Role
    from db.services import label_check, review, training
    from db.services.users import SYSTEM
    from db.session import session_scope
    from tests.seed import seed_user

    monkeypatch.setenv("DARL_MODEL", str(bert))
    fast = {"epochs": 1, "batch_size": 8, "max_length": 24, "data_selection": "drop_suspects", "drop_share": 0.2}
    with session_scope(database) as s:
        seed_tiny_project(s, bert, n=80)
        pid = s.query(Project).filter_by(name="tiny").one().id
        assert label_check.training_suspicion(s, pid, training.collect_examples(s, pid)["train"]) is None
        check = label_check.run_label_check(s, "tiny", folds=3, actor=SYSTEM)
        train = training.collect_examples(s, pid)["train"]
        in_train = set(zip(train.queries, train.items, strict=True))
        top = next(i for i in s.query(LabelCheckItem).filter_by(check_id=check.id).order_by(LabelCheckItem.rank)
                   if (s.get(Pair, i.pair_id).query.text, s.get(Pair, i.pair_id).item.title) in in_train)
        top_pair = s.get(Pair, top.pair_id)
        rita = seed_user(s, "rita-sel", Role.reviewer)
        review.adjudicate(s, rita, top.pair_id, top.label)  # confirmed: the label stands
        assert training.collect_examples(s, pid)["train"].queries == train.queries  # the same training pairs
        ranks = {(p.query.text, p.item.title): i.rank for i, p in
                 s.query(LabelCheckItem, Pair).join(Pair, Pair.id == LabelCheckItem.pair_id)
                 .filter(LabelCheckItem.check_id == check.id)}
        version = training.train_stage(s, "tiny", "ce", overrides=fast, actor=SYSTEM)
        m = version.metrics
        rows = json.loads((Path(version.artifact_path) / "selection.json").read_text())["rows"]
        check_id = check.id
    assert m["selection_source"] == f"label check {check_id}" and m["selection_pairs"] == len(train)
    n_drop = round(0.2 * len(train))
    assert m["selection_dropped"] == n_drop and len(rows) == len(train) - n_drop
    dropped = sorted(set(range(len(train))) - set(rows))
    pairs = list(zip(train.queries, train.items, strict=True))
    expected = sorted((i for i in range(len(train)) if pairs[i] != (top_pair.query.text, top_pair.item.title)),
                      key=lambda i: ranks[pairs[i]])[:n_drop]
    assert dropped == sorted(expected)  # the check's most suspect training pairs, the confirmed one kept
    assert pairs.index((top_pair.query.text, top_pair.item.title)) in rows
    assert any("drop_suspects: the ranking of label check" in n for n in m["notes"])
