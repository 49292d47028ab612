"""The label check in the database (issue 23): stored per pair with the check's id, suspects for review,
a confirmed label not suspected again, the job handler and the CLI; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from darl_core.errors import ConfigError
from db.models import Item, Job, LabelCheck, LabelCheckItem, LabelEvent, LabelKind, Pair, Project, Query, Role
from db.services import label_check, review
from db.services.users import SYSTEM
from db.session import session_scope
from tests.integration.tiny_models import make_tiny
from tests.seed import seed_user

WORDS = ["drill", "paint", "hose", "lamp", "saw", "sink", "fan", "door", "tile", "rake"]


@pytest.fixture
def tiny_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_tiny("bert", tmp_path / "tiny-bert")
    monkeypatch.setenv("DARL_MODEL", str(path))
    return path


def _project(session, n: int = 90) -> Project:  # type: ignore[no-untyped-def]
    """``n`` imported pairs over 30 queries: strong when the query word is in the title, else irrelevant;
    every 9th label moved to the other end of the scale."""
    project = Project(name="demo", grades=["irrelevant", "weak", "strong"], settings={})
    session.add(project)
    session.flush()
    rng = np.random.default_rng(0)
    queries = []
    for j in range(30):
        q = Query(project_id=project.id, key=f"q{j}", text=WORDS[j % 10])
        session.add(q)
        queries.append(q)
    session.flush()
    for i in range(n):
        q = queries[i % 30]
        word = q.text if i % 2 == 0 else WORDS[(WORDS.index(q.text) + 1 + int(rng.integers(0, 9))) % 10]
        it = Item(project_id=project.id, key=f"i{i}", title=f"{word} {word} pro")
        session.add(it)
        session.flush()
        pair = Pair(project_id=project.id, query_id=q.id, item_id=it.id, split="train")
        session.add(pair)
        session.flush()
        grade = 2 if word == q.text else 0
        session.add(LabelEvent(pair_id=pair.id, kind=LabelKind.imported, grade=2 - grade if i % 9 == 4 else grade))
    session.flush()
    return project


def test_check_stores_every_labelled_pair_and_a_confirmed_label_is_not_suspected_again(
        database: str, tiny_backbone: Path) -> None:
    with session_scope(database) as s:
        project = _project(s)
        pid = project.id
        rita = seed_user(s, "rita", Role.reviewer)
        steps: list[float] = []
        check = label_check.run_label_check(s, "demo", progress=lambda f, _m: steps.append(f), actor=SYSTEM)
        assert steps[-1] == 1.0 and check.method == "ordinal" and check.params["model_version"] == "base"
        items = s.scalars(select(LabelCheckItem).where(LabelCheckItem.check_id == check.id)).all()
        assert len(items) == check.pairs == 90
        assert sorted(i.rank for i in items) == list(range(1, 91))
        suspects = label_check.check_suspects(s, check.id, limit=None)
        assert len(suspects) == check.suspects == check.params["n_issues"] > 0
        assert [x.rank for x in suspects] == sorted(x.rank for x in suspects) == list(range(1, len(suspects) + 1))
        first = suspects[0]
        assert first.reason.startswith("labelled ") and 0 <= first.model_prob <= 1
        # The flipped labels are the ones the check suspects most.
        flipped = {p for p, in s.execute(select(Pair.id).where(Pair.project_id == pid).order_by(Pair.id))}
        flipped = {p for k, p in enumerate(sorted(flipped)) if k % 9 == 4}
        assert len(flipped & {x.pair_id for x in suspects}) >= len(flipped) / 2
        # The reviewer confirms the first suspect's label and corrects the second.
        review.adjudicate(s, rita, first.pair_id, first.label)
        second = suspects[1]
        review.adjudicate(s, rita, second.pair_id, (second.label + 1) % 3)
        s.flush()
        again = label_check.run_label_check(s, "demo", actor=SYSTEM)
        row = s.scalars(select(LabelCheckItem).where(LabelCheckItem.check_id == again.id,
                                                     LabelCheckItem.pair_id == first.pair_id)).one()
        assert row.suspect is False and f"confirmed by a reviewer after check {check.id}" in row.reason
        assert row.rank <= again.params["n_issues"]  # still ranked, just not sent to review again
        corrected = s.scalars(select(LabelCheckItem).where(LabelCheckItem.check_id == again.id,
                                                           LabelCheckItem.pair_id == second.pair_id)).one()
        assert corrected.label == (second.label + 1) % 3 and "confirmed" not in corrected.reason  # a new label
        assert label_check.latest_check(s, pid).id == again.id


def test_bad_parameters_name_the_field_and_write_nothing(database: str, tiny_backbone: Path) -> None:
    with session_scope(database) as s:
        _project(s, n=6)
        with pytest.raises(ConfigError, match="`method` must be one of ordinal, cleanlab"):
            label_check.run_label_check(s, "demo", method="loss", actor=SYSTEM)
        with pytest.raises(ConfigError, match="`folds` must be 2..20, got 1"):
            label_check.run_label_check(s, "demo", folds=1, actor=SYSTEM)
        with pytest.raises(ConfigError, match="has 6 labelled pair.*needs at least 10"):
            label_check.run_label_check(s, "demo", actor=SYSTEM)
        assert s.scalar(select(func.count(LabelCheck.id))) == 0


def test_job_and_cli(sqlite_database: str, tiny_backbone: Path, tmp_path: Path,
                     capsys: pytest.CaptureFixture) -> None:
    from darl_app.cli import main
    from darl_app.job_kinds import JobContext, get_handler

    with session_scope(sqlite_database) as s:
        project = _project(s)
        eve = seed_user(s, "eve", Role.engineer)
        job = label_check.launch_label_check(s, project, version=None, method="cleanlab", actor=eve)
        assert job.kind == "check_labels" and job.params["method"] == "cleanlab"
        job_id = job.id
    reports: list[dict] = []
    ctx = JobContext(job_id=job_id, kind="check_labels", params=job.params, project_id=project.id, attempt=1,
                     workdir=tmp_path / "job", report=lambda **kw: reports.append(kw) or "ok", min_interval_s=0.0)
    out = get_handler("check_labels")(ctx)
    assert out["pairs"] == 90 and out["suspects"] > 0
    # the job panel shows a phase, and so the time left, for a kind whose service reports no phase of its own
    assert {r.get("phase") for r in reports if r.get("progress") is not None} == {"checking labels"}
    with session_scope(sqlite_database) as s:
        stored = s.get(LabelCheck, out["check_id"])
        assert stored.job_id == job_id and stored.method == "cleanlab" and s.get(Job, job_id) is not None
    assert main(["check-labels", "--project", "demo", "--top", "3"]) == 0
    printed = capsys.readouterr().out
    assert "suspect(s) among 90 labelled pairs" in printed and printed.count("  #") == 3
    assert main(["check-labels", "--project", "demo", "--folds", "1"]) == 2
    assert "`folds` must be 2..20" in capsys.readouterr().err


def test_review_filter_lists_the_latest_checks_open_suspects(database: str) -> None:
    from tests.seed import seed_label_check, seed_review_queue

    with session_scope(database) as s:
        seeded = seed_review_queue(s)
        ids, rita, pid = seeded["ids"], seeded["users"]["rita"], seeded["project"].id
        only = review.ReviewFilters(suspected=True)
        before = review.review_queue(s, rita, pid, only)
        assert (before.check, before.suspected, before.matching, before.items) == (None, 0, 0, [])
        old = seed_label_check(s, pid, [(ids[0], 0, 2)])
        # The latest check wins: ids[13] (votes agree: not in the disagreement queue) first, then ids[4].
        seed_label_check(s, pid, [(ids[13], 2, 0), (ids[4], 0, 2)], clean=[ids[5]])
        q = review.review_queue(s, rita, pid, only)
        assert [it.pair_id for it in q.items] == [ids[13], ids[4]] and q.matching == q.suspected == 2
        assert q.check is not None and q.check.id == old + 1 and q.pending == 12
        sus = q.items[0].suspicion
        assert (sus.rank, sus.label, sus.model_grade, sus.model_prob) == (1, 2, 0, 0.9)
        assert [it.pair_id for it in review.review_queue(s, rita, pid, review.ReviewFilters(
            suspected=True, disagreements_only=True)).items] == [ids[4]]
        assert [it.pair_id for it in review.review_queue(s, rita, pid, review.ReviewFilters(
            suspected=True, segment="garden")).items] == [ids[13]]  # segments alternate tools, garden
        # Adjudicating (confirming here) takes the pair off the list; the disagreement queue is unchanged.
        after = review.adjudicate_and_list(s, rita, pid, (ids[13], 2, "checked: strong"), only)
        assert [it.pair_id for it in after.items] == [ids[4]] and after.suspected == 1 and after.pending == 12


REFIT = {"epochs": 1, "batch_size": 8, "max_length": 16}


def test_refit_scores_every_fold_with_a_model_that_never_saw_its_queries(
        tiny_backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The refit option fine-tunes per fold: no held-out query is in that fold's training or validation
    pairs, every pair gets probabilities, and a rerun resumes the finished folds instead of training again."""
    from darl_core import label_issues, training
    from darl_core.config import stage_config

    rows = [(WORDS[j % 10], f"{WORDS[(j + (i % 2)) % 10]} pro", 2 if i % 2 == 0 else 0)
            for j in range(24) for i in range(3)]
    data = training.Examples([r[0] + str(j // 3) for j, r in enumerate(rows)], [r[1] for r in rows],
                             np.array([r[2] for r in rows]))
    groups = np.unique(data.queries, return_inverse=True)[1]
    config = stage_config("ce", {"model_dir": str(tiny_backbone), "num_grades": 3, **REFIT})
    seen: list[tuple[set, set]] = []
    real_run, real_loop = training.run_stage, training._train_loop
    loops: list[int] = []
    monkeypatch.setattr(training, "run_stage", lambda cfg, tr, va, out, **kw: (
        seen.append((set(tr.queries), set(va.queries))), real_run(cfg, tr, va, out, **kw))[1])
    monkeypatch.setattr(training, "_train_loop", lambda *a, **kw: (loops.append(1), real_loop(*a, **kw))[1])
    said: list[float] = []
    probs = label_issues.refit_probs(data, groups, 3, config, tmp_path / "refit", folds=3, seed=0,
                                     progress=lambda f, _m: said.append(f))
    assert probs.shape == (len(data), 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert len(seen) == 3 and len(loops) == 3 and said[-1] == pytest.approx(1.0)
    for (fit, val), (_train, held) in zip(seen, label_issues.fold_splits(data.grades, groups, 3, 0), strict=True):
        held_queries = {data.queries[i] for i in held}
        assert val and not (fit & val) and not (held_queries & (fit | val))
    again = label_issues.refit_probs(data, groups, 3, config, tmp_path / "refit", folds=3, seed=0)
    assert len(loops) == 3 and np.allclose(again, probs, atol=1e-5)  # resumed: no fold trained twice
    with pytest.raises(ConfigError, match="the refit config has 3 grades, the labels 4"):
        label_issues.refit_probs(data, groups, 4, config, tmp_path / "refit4", folds=3)


def test_refit_check_is_stored_with_its_settings_and_leaves_no_checkpoints(database: str, tiny_backbone: Path,
                                                                           tmp_path: Path) -> None:
    from darl_core.settings import darl_home

    with session_scope(database) as s:
        _project(s, n=60)
        check = label_check.run_label_check(s, "demo", folds=3, refit=True, refit_overrides=REFIT, actor=SYSTEM)
        assert check.pairs == 60 and check.params["refit"]["stage"] == "ce"
        assert check.params["refit"]["overrides"] == REFIT and "ce refit per fold" in check.params["model_version"]
        items = s.scalars(select(LabelCheckItem).where(LabelCheckItem.check_id == check.id)).all()
        assert len(items) == 60 and all(0.0 <= i.model_prob <= 1.0 for i in items)
        assert sorted(i.rank for i in items) == list(range(1, 61))
    assert not list((darl_home() / "label_checks").glob("project*/refit-*"))


def test_refit_settings_are_checked_before_anything_runs(sqlite_database: str, tiny_backbone: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from darl_app.cli import main

    with session_scope(sqlite_database) as s:
        project = _project(s)
        eve = seed_user(s, "eve", Role.engineer)
        with pytest.raises(ConfigError, match="epochs"):
            label_check.launch_label_check(s, project, version=None, refit=True, refit_overrides={"epochs": -1},
                                           actor=eve)
        with pytest.raises(ConfigError, match="epochs"):
            label_check.run_label_check(s, "demo", refit=True, refit_overrides={"epochs": -1}, actor=SYSTEM)
        assert s.scalar(select(func.count(Job.id))) == 0 and s.scalar(select(func.count(LabelCheck.id))) == 0
        job = label_check.launch_label_check(s, project, version=None, refit=True, refit_overrides={"epochs": 1},
                                             actor=eve)
        assert job.params["refit"] is True and job.params["refit_overrides"] == {"epochs": 1}
    assert main(["check-labels", "--project", "demo", "--set", "epochs=1"]) == 2
    assert "add --refit" in capsys.readouterr().err
