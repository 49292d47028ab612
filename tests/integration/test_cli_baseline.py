"""Issue 26 items 2 and 3 through the CLI on a tiny backbone: the ``ce`` baseline, ``evaluate``,
``version current``, the project's grade names in stored metrics, a validation set drawn by query when the
val split is small, few-query flags, and the reference a dpo without a dasa parent took."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import WORDS, make_tiny  # tests/integration is on sys.path (pytest prepend mode)

from db.services.users import SYSTEM

torch.set_num_threads(1)
GRADES = ["bad", "fair", "good", "perfect"]
FAST = ["--epochs", "1", "--batch-size", "16", "--max-length", "24"]


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny("bert", tmp_path_factory.mktemp("bert"))


def seed_project(session, model_dir: Path) -> None:  # noqa: ANN001
    """Project ``four`` (4 named grades): 160 training pairs of 40 queries, a val split of 2 queries, and
    test_id / test_ood pairs of 6 queries each."""
    from db.models import Item, LabelEvent, LabelKind, Pair, Query
    from db.services.projects import create_project

    project = create_project(session, "four", GRADES, settings={"model_dir": str(model_dir)}, actor=SYSTEM)
    rng = np.random.default_rng(3)
    rows = [(f"{WORDS[i % 10]} {i}", None) for i in range(40) for _ in range(4)]
    rows += [(f"val {i}", "val") for i in range(2) for _ in range(4)]
    rows += [(f"{WORDS[i]} test {i}", split) for split in ("test_id", "test_ood") for i in range(6) for _ in range(4)]
    for n, (text, split) in enumerate(rows):
        query = Query(project_id=project.id, key=f"q{n}", text=text)
        title = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {n}"
        item = Item(project_id=project.id, key=f"i{n}", title=title)
        session.add_all([query, item])
        session.flush()
        pair = Pair(project_id=project.id, query_id=query.id, item_id=item.id, split=split)
        session.add(pair)
        session.flush()
        grade = 3 if text.split()[0] in title else int(rng.integers(0, 3))
        session.add(LabelEvent(pair_id=pair.id, kind=LabelKind.imported, grade=grade))
    session.flush()


def test_ce_baseline_is_trained_evaluated_and_made_current_from_the_cli(sqlite_database, bert, capsys):
    from darl_app.cli import main
    from db.models import ModelVersion, PairScore, Project
    from db.services.versions import version_rows
    from db.session import session_scope

    with session_scope() as session:
        seed_project(session, bert)
    assert main(["train", "--project", "four", "--stage", "ce", *FAST]) == 0
    out, err = capsys.readouterr()
    # The val split (2 queries) is topped up by query from the training pairs, and the stage log says so.
    assert "2 queries" in err and "training queries" in err and "were drawn into it" in err
    assert "val macro-F1" in out and "(out of fold)" in out
    with session_scope() as session:
        ce = session.query(ModelVersion).filter_by(name="ce-1").one()
        assert (ce.stage, ce.parent_id) == ("ce", None)  # straight from the pretrained backbone
        cfg = ce.config
        assert cfg["tuning"] == "full" and cfg["head_lr"] == 1e-3 and cfg["lr"] == 1e-4
        assert cfg["loss"]["class_weights"] == "inverse" and cfg["loss"]["ordinal_weight"] == 0.0
        assert cfg["loss"]["occ_weight"] == 0.0 and not cfg["calibrate"] and not cfg["decision_offsets"]
        assert ce.label_snapshot["val"] > 8 and ce.metrics["val_queries"] >= 8
        # The project's grade names in every stored metric, never g0..g3.
        m = ce.metrics
        assert {"val_f1_perfect", "test_id_f1_bad", "test_ood_recall_fair"} <= set(m)
        assert not [k for k in m if "_g0" in k or k.endswith("_g3")]
        # Evaluated as the app's job does: stored evaluation and pair scores (the Gap page reads them).
        ev = m["evaluation"]
        assert set(ev["splits"]) == {"id", "ood"} and "f1_good" in ev["splits"]["id"]["metrics"]
        assert ev["splits"]["ood"]["interval"]["queries"] == 6
        assert session.query(PairScore).filter_by(model_version_id=ce.id).count() == 48
        # Figures on fewer than FEW_QUERIES queries are flagged with their interval.
        row = next(r for r in version_rows(session, ce.project_id) if r["name"] == "ce-1")
        assert "id: 6 queries < 300" in row["few_queries"] and "ood: 6 queries < 300" in row["few_queries"]
        assert row["id_interval"].startswith("[") and row["val_queries"] == m["val_queries"]
        vid = ce.id
    assert "ce-1 on test_id: 24 pairs of 6 queries" in out
    assert "F1 per grade: bad" in out and "perfect" in out and "gap (ID - OOD)" in out
    assert "warning: few queries: id: 6 queries < 300" in out

    assert main(["evaluate", "ce-1", "--project", "four", "--stored"]) == 0
    again = capsys.readouterr().out
    assert "ce-1 on test_ood: 24 pairs of 6 queries" in again and "QWK" in again and "ECE" in again
    assert main(["evaluate", "ce-1"]) == 2  # a name needs --project: a clear error, exit 2
    assert "needs --project" in capsys.readouterr().err

    assert main(["version", "current", "ce-1", "--project", "four"]) == 0
    assert "ce-1 is now the current version of project four" in capsys.readouterr().out
    with session_scope() as session:
        assert session.query(Project).filter_by(name="four").one().current_version_id == vid
    assert main(["train", "--project", "four", "--stage", "ce", "--from", "ce-1", *FAST]) == 2
    assert "drop --from" in capsys.readouterr().err


def test_dpo_without_a_dasa_parent_names_its_reference(sqlite_database, bert):
    from db.services.training import train_stage
    from db.session import session_scope

    fast = {"epochs": 1, "batch_size": 16, "max_length": 24}
    messages: list[str] = []
    with session_scope() as session:
        seed_project(session, bert)
        ce = train_stage(session, "four", "ce", overrides=fast, actor=SYSTEM)
        dpo = train_stage(session, "four", "dpo", from_version=ce.name, overrides={**fast, "tuning": "lora"},
                          progress=lambda f, m: messages.append(m), actor=SYSTEM)
        note = next(n for n in dpo.metrics["notes"] if n.startswith("reference:"))
        assert "reference: ce-1 (a ce version, not a dasa one" in note
        assert any(note in m for m in messages)  # in the stage log too
        assert "posthoc" in dpo.metrics and "dpo_strength" in dpo.metrics["posthoc"]


def test_a_small_val_split_is_topped_up_by_whole_training_queries():
    from darl_core.training import Examples
    from darl_core.validation import VAL_MIN_QUERIES, draw_validation

    queries = [f"q{i}" for i in range(100) for _ in range(3)]
    train = Examples(queries, [f"item {i}" for i in range(300)], np.arange(300) % 3)
    val = Examples(["v1", "v1", "v2"], ["a", "b", "c"], np.array([0, 1, 2]))
    new_train, new_val, note = draw_validation(train, val)
    drawn = set(new_val.queries) - {"v1", "v2"}
    assert len(drawn) == 10  # 10% of 100 training queries (more than the 6 the minimum of 8 needs)
    assert set(new_train.queries).isdisjoint(drawn) and len(new_train) + len(new_val) == 303  # by query
    assert new_val.queries[:3] == val.queries and "10 training queries (30 pairs" in note
    assert draw_validation(train, val)[1].queries == new_val.queries  # deterministic
    # No val split at all: at least VAL_MIN_QUERIES queries; a big enough one is left alone.
    few = train.subset(np.arange(60))  # 20 queries: 10% is 2, the minimum 8 wins
    assert len(set(draw_validation(few, Examples([], [], np.zeros(0, dtype=np.int64)))[1].queries)) == VAL_MIN_QUERIES
    big = Examples([f"v{i}" for i in range(60)], ["x"] * 60, np.arange(60) % 3)
    assert draw_validation(train, big) == (train, big, None)


def test_stored_metrics_use_the_projects_grade_names_for_four_grades(sqlite_database, bert):
    """Before, a 4-grade project's val_* and test_* metrics were stored as f1_g0..f1_g3."""
    from db.services.training import train_stage
    from db.session import session_scope

    with session_scope() as session:
        seed_project(session, bert)
        lp = train_stage(session, "four", "lp", overrides={"epochs": 1, "max_length": 24}, actor=SYSTEM)
        keys = set(lp.metrics)
        assert {f"{p}_f1_{g}" for p in ("val", "test_id", "test_ood") for g in GRADES} <= keys
        assert not any(k.endswith(("_g0", "_g1", "_g2", "_g3")) for k in keys)
        assert list(lp.config["grade_names"]) == GRADES


def test_a_baseline_that_learned_nothing_is_flagged_in_the_cli_and_the_versions_table(sqlite_database, bert, capsys):
    from darl_app.cli import main
    from db.models import ModelVersion
    from db.services.versions import version_rows
    from db.session import session_scope

    with session_scope() as session:
        seed_project(session, bert)
    assert main(["train", "--project", "four", "--stage", "ce", "--no-evaluate", *FAST, "--lr", "1e-12",
                 "--set", "head_lr=1e-12"]) == 0
    out, err = capsys.readouterr()
    assert "warning: training barely lowered its loss" in out and "try --lr 3e-5" in out
    assert "warning: training barely lowered its loss" in err  # the stage log (the job log in the app)
    with session_scope() as session:
        ce = session.query(ModelVersion).filter_by(name="ce-1").one()
        assert any(n.startswith("warning: training barely lowered") for n in ce.metrics["notes"])
        row = next(r for r in version_rows(session, ce.project_id) if r["name"] == "ce-1")
        assert row["warnings"].startswith("training barely lowered its loss")


def test_a_split_short_of_the_post_hoc_queries_is_topped_up_when_a_share_reaches_them():
    """bench/val_draw.py --given-queries 60: a 60-query split used as given skips every post-hoc step; topped up
    by 10% of the training queries it scored better on the unpicked pool. Where 10% cannot reach 128 queries
    the split stays as given (the training pairs would be spent for nothing the steps can use)."""
    from darl_core.training import Examples
    from darl_core.validation import POSTHOC_MIN_QUERIES, draw_validation

    def pairs(prefix: str, n_queries: int, per_query: int) -> Examples:
        q = [f"{prefix}{i}" for i in range(n_queries) for _ in range(per_query)]
        return Examples(q, [f"item {j}" for j in range(len(q))], np.arange(len(q)) % 3)

    val = pairs("v", 60, 2)  # 120 pairs of 60 queries: past MIN_VAL and VAL_MIN_QUERIES
    train = pairs("q", 2000, 1)
    new_train, new_val, note = draw_validation(train, val)
    assert len(set(new_val.queries)) == 60 + 200 >= POSTHOC_MIN_QUERIES  # 10% of 2,000 training queries
    assert len(new_train) == 1800 and "fewer than the 128 queries the post-hoc steps need" in note
    small = pairs("q", 500, 1)  # 10% is 50 queries: 110 in all, still short of 128, so nothing moves
    assert draw_validation(small, val) == (small, val, None)
    assert draw_validation(train, val, posthoc_min_queries=60) == (train, val, None)  # a stage's own threshold
