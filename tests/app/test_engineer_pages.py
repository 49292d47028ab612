"""AppTest: the Training page (launch with form values, versions table, make current, cancel from the job
panel) and the Gap page (from stored evaluations only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update

from db.models import (
    Job,
    JobStatus,
    LabelEvent,
    LabelKind,
    ModelVersion,
    Pair,
    Project,
    Role,
    SelectionRound,
    User,
)
from db.services import evaluation, jobs
from db.services.rounds import create_round, round_rows
from db.services.users import SYSTEM
from db.session import session_scope
from tests.app.pagetest import page
from tests.integration.engineer_seed import seed_project, store_predictions
from tests.integration.test_rounds import _sel
from tests.seed import seed_user

GRADES = ["irrelevant", "weak", "strong"]


def _evaluation(id_acc: float, ood_acc: float) -> dict[str, Any]:
    """A stored evaluation whose ID / OOD predictions are right with the given shares."""
    rng = np.random.default_rng(0)
    sets, probs = {}, {}
    for name, acc in (("id", id_acc), ("ood", ood_acc)):
        y = np.tile([0, 1, 2], 20)
        pred = np.where(rng.random(60) < acc, y, (y + 1) % 3)
        sets[name] = evaluation.TestSet(name, list(range(60)), [f"q{i % 7}" for i in range(60)], ["i"] * 60, y)
        probs[name] = np.full((60, 3), 0.1) + 0.7 * np.eye(3)[pred]
    return evaluation.summarise(sets, probs, GRADES)


@pytest.fixture
def people(sqlite_database: str) -> dict[str, int]:
    with session_scope(sqlite_database) as s:
        project = seed_project(s)
        eng = s.scalars(select(User).where(User.name == "eng")).one()
        ann = seed_user(s, "ann", Role.annotator)
        return {"eng": eng.id, "ann": ann.id, "project": project.id}


def _versions(url: str, project_id: int, evaluated: bool) -> list[int]:
    with session_scope(url) as s:
        lp = ModelVersion(project_id=project_id, name="lp-1", stage="lp", artifact_path="/ckpt/lp", metrics={})
        s.add(lp)
        s.flush()
        ft = ModelVersion(project_id=project_id, name="ft-1", stage="ft", artifact_path="/ckpt/ft", parent_id=lp.id,
                          metrics={}, label_snapshot={"last_event_id": 96, "train": 70, "val": 20, "new": 5})
        s.add(ft)
        s.flush()
        if evaluated:
            lp.metrics = {"evaluation": _evaluation(0.9, 0.5)}
            ft.metrics = {"evaluation": _evaluation(0.9, 0.8)}
        return [lp.id, ft.id]


def test_launch_uses_the_form_values(people: dict[str, int], sqlite_database: str) -> None:
    at = page("training", people["eng"]).run()
    assert not at.exception
    assert "No model version yet" in at.info[0].value
    _versions(sqlite_database, people["project"], evaluated=False)  # ft starts from lp: refused without one
    at.run()
    at.selectbox(key="train_stage").set_value("ft").run()
    assert at.selectbox(key="train_ft_tuning").value == "auto"  # the stage's own fields appear
    at.number_input(key="train_ft_epochs").set_value(1.0)
    at.selectbox(key="train_ft_tuning").set_value("head")
    at.checkbox(key="train_ft_calibrate").check()
    at.selectbox(key="train_ft_calibrate_by").set_value("ece")
    at.button[0].click().run()  # the form's Launch
    assert not at.exception and "queued: ft" in at.success[0].value
    with session_scope(sqlite_database) as s:
        job = s.scalars(select(Job)).one()
    assert (job.kind, job.status) == ("train", JobStatus.queued)
    assert job.params["stage"] == "ft" and job.params["overrides"] == {
        "epochs": 1.0, "tuning": "head", "calibrate": True, "calibrate_by": "ece"}


def test_dpo_form_starts_from_the_measured_recipe(people: dict[str, int], sqlite_database: str) -> None:
    _versions(sqlite_database, people["project"], evaluated=False)  # dpo continues from a fine-tuned version
    at = page("training", people["eng"]).run()
    at.selectbox(key="train_stage").set_value("dpo").run()
    assert at.selectbox(key="train_dpo_dpo_pairs").value == "wrong"
    assert at.number_input(key="train_dpo_dpo_holdout").value == pytest.approx(0.2)
    assert at.checkbox(key="train_dpo_calibrate").value is True
    assert at.checkbox(key="train_dpo_zero_shot_blend").value is True
    assert at.checkbox(key="train_dpo_decision_offsets").value is True
    assert at.selectbox(key="train_dpo_calibrate_by").value == "ece"
    at.button[0].click().run()  # untouched defaults: no overrides, train_stage applies the same recipe
    assert not at.exception and "queued: dpo" in at.success[0].value
    with session_scope(sqlite_database) as s:
        assert s.scalars(select(Job)).one().params["overrides"] == {}


def test_dasa_form_offers_a_holdout_off_by_default(people: dict[str, int], sqlite_database: str) -> None:
    _versions(sqlite_database, people["project"], evaluated=False)  # dasa needs a parent and new labels since it
    with session_scope(sqlite_database) as s:
        pool = s.scalars(select(Pair.id).where(Pair.split == "pool").limit(1)).one()
        s.add(LabelEvent(pair_id=pool, kind=LabelKind.label, grade=2, user_id=people["ann"]))
    at = page("training", people["eng"]).run()
    at.selectbox(key="train_stage").set_value("dasa").run()
    assert at.number_input(key="train_dasa_dasa_holdout").value == pytest.approx(0.0)  # all new labels train
    assert "shifted pairs" in at.number_input(key="train_dasa_dasa_holdout").help
    assert at.number_input(key="train_dasa_layer_lr_decay").value == pytest.approx(1.0)
    assert at.number_input(key="train_dasa_average_tail").value == pytest.approx(0.0)  # off: the last weights
    assert "weight averaging" in at.number_input(key="train_dasa_average_tail").help
    at.number_input(key="train_dasa_dasa_holdout").set_value(0.2)
    at.number_input(key="train_dasa_average_tail").set_value(0.5)
    at.button[0].click().run()
    assert not at.exception and "queued: dasa" in at.success[0].value
    with session_scope(sqlite_database) as s:
        assert s.scalars(select(Job)).one().params["overrides"] == {"dasa_holdout": 0.2, "average_tail": 0.5}


def test_versions_table_lineage_and_make_current(people: dict[str, int], sqlite_database: str) -> None:
    lp, ft = _versions(sqlite_database, people["project"], evaluated=False)
    at = page("training", people["eng"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["name"].tolist() == ["lp-1", "ft-1"] and table.loc[ft, "parent"] == "lp-1"
    assert table.loc[ft, "labels"] == "95" and table.loc[ft, "last_event"] == "96"  # labels: train + val + new
    assert "**ft-1** (labels up to event 96) ← **lp-1**" in at.caption[-1].value
    at.button(key="make_current").click().run()
    assert not at.exception
    with session_scope(sqlite_database) as s:
        assert s.get(Project, people["project"]).current_version_id == ft
    assert at.dataframe[0].value.loc[ft, "current"]


def test_running_job_is_cancelled_from_the_panel(people: dict[str, int], sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        job_id = jobs.enqueue(s, "train", {"project": "demo", "stage": "lp", "overrides": {}},
                              project_id=people["project"], actor=SYSTEM).id
        s.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.running, progress=0.4))
    at = page("training", people["eng"]).run()
    assert [p.proto.value for p in at.get("progress")] == [40] and "40%" in at.get("progress")[0].proto.text
    at.button(key=f"train_jobs_cancel_{job_id}").click().run()
    assert not at.exception
    with session_scope(sqlite_database) as s:
        job = s.get(Job, job_id)
        assert job.cancel_requested and job.status == JobStatus.running  # the runner stops at its next step


def test_gap_page_reads_stored_evaluations(people: dict[str, int], sqlite_database: str) -> None:
    _versions(sqlite_database, people["project"], evaluated=True)
    at = page("gap", people["eng"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["version"].tolist() == ["lp-1", "ft-1"]
    assert np.allclose(table["gap"], table["ID macro-F1"] - table["OOD macro-F1"])
    assert table["gap"].iloc[0] > table["gap"].iloc[1] > 0  # ft closed part of lp's gap
    assert len(at.get("plotly_chart")) == 1 + 2 * 2  # the gap over versions; reliability + confusion per split
    at.selectbox(key="gap_version").set_value("lp-1").run()
    assert not at.exception and "ECE" in at.markdown[0].value


def _scored(url: str, project_id: int, ids: list[int], ood_right: tuple[float, float]) -> None:
    """Both versions' stored predictions: all ID pairs right; the given shares of the OOD pairs."""
    with session_scope(url) as s:
        sets = evaluation.load_test_sets(s, project_id)
        for vid, share in zip(ids, ood_right, strict=True):
            store_predictions(s, vid, sets, share)


def test_gap_page_compares_two_versions(people: dict[str, int], sqlite_database: str) -> None:
    ids = _versions(sqlite_database, people["project"], evaluated=True)
    _scored(sqlite_database, people["project"], ids, (0.25, 1.0))
    at = page("gap", people["eng"]).run()
    assert not at.exception
    assert (at.selectbox(key="gap_compare_a").value, at.selectbox(key="gap_compare_b").value) == ("lp-1", "ft-1")
    text = " ".join(m.value for m in at.markdown)
    assert "**OOD** · macro-F1 +" in text and "**B is better**" in text and "**no clear difference**" in text
    assert len(at.get("plotly_chart")) == 1 + 1 + 2 * 2  # gap over versions, the comparison, then per split
    at.selectbox(key="gap_compare_b").set_value("lp-1").run()
    assert not at.exception and "Pick two different versions." in [i.value for i in at.info]


def test_gap_page_without_evaluations_explains(people: dict[str, int], sqlite_database: str) -> None:
    _versions(sqlite_database, people["project"], evaluated=False)
    at = page("gap", people["eng"]).run()
    assert not at.exception and "No evaluated version yet" in at.info[0].value


@pytest.mark.parametrize("name", ["training", "gap", "maps"])
def test_annotator_is_refused(people: dict[str, int], name: str) -> None:
    at = page(name, people["ann"]).run()
    assert "needs the engineer role" in at.error[0].value


def test_selection_page_launches_a_round_and_lists_rounds(people: dict[str, int], sqlite_database: str) -> None:
    lp, ft = _versions(sqlite_database, people["project"], evaluated=False)
    at = page("selection", people["eng"]).run()
    assert not at.exception
    assert "No round yet" in at.info[0].value
    assert at.selectbox(key="select_version").value == "pretrained backbone (base)"  # no current version yet
    assert at.selectbox(key="select_version").options == ["pretrained backbone (base)", "ft-1 (ft)", "lp-1 (lp)"]
    assert at.number_input(key="select_budget").value == 200
    at.selectbox(key="select_version").set_value("ft-1 (ft)")
    at.number_input(key="select_budget").set_value(50)
    at.button[0].click().run()
    assert not at.exception and "select 50 pairs" in at.success[0].value
    with session_scope(sqlite_database) as s:
        job = s.scalars(select(Job)).one()
        assert (job.kind, job.params["budget"], job.params["version"]) == ("select", 50, ft)
        pool = list(s.scalars(select(Pair.id).where(Pair.split == "pool").order_by(Pair.id)))[:4]
        create_round(s, people["project"], ft, {"order": "auto"}, [_sel(p, i + 1) for i, p in enumerate(pool)], actor=SYSTEM)
        s.add(LabelEvent(pair_id=pool[0], kind=LabelKind.label, grade=2, user_id=people["ann"]))
    at = page("selection", people["eng"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table[["name", "version", "pairs", "graded"]].values.tolist() == [["round 1", "ft-1", 4, 1]]
    with session_scope(sqlite_database) as s:
        assert len(round_rows(s, people["project"])) == 1 and s.scalars(select(SelectionRound)).one().status == "open"

    with session_scope(sqlite_database) as s:
        s.get(Project, people["project"]).current_version_id = ft
    at = page("selection", people["eng"]).run()
    assert at.selectbox(key="select_version").value == "ft-1 (ft) · current"  # the form starts at the current one

    denied = page("selection", people["ann"]).run()  # annotators cannot start rounds
    assert not denied.button and denied.error
