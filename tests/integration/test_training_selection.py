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
