"""AppTest: the Review page's label-check and gold parts (issue 23 §2-3): a suspect's nearest labelled
neighbours in the detail pane, the engineer's "Run a label check" beside a stored check, marking gold
(from a decision and from the Gold view), the gold share setting, and the agreement dashboard's
per-annotator gold accuracy, kappa and suspected share with their weekly charts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from darl_core.embeddings import EmbeddingCache
from db.models import GoldPair, Job, LabelCheck, LabelEvent, LabelKind, ModelVersion, Project, Role
from db.services import label_neighbours
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import seed_label_check, seed_review_queue, seed_user


@pytest.fixture
def checked(sqlite_database: str) -> dict[str, Any]:
    """seed_review_queue's 14 pairs, a label check (base version) suspecting ids[4] then ids[0], and the
    check's embeddings in the cache: pairs on a curve, so ids[4]'s nearest are ids[3], ids[5], ids[2], ..."""
    label_neighbours._BANKS.clear()
    with session_scope(sqlite_database) as s:
        seeded = seed_review_queue(s)
        ids, pid = seeded["ids"], seeded["project"].id
        cid = seed_label_check(s, pid, [(ids[4], 0, 2), (ids[0], 0, 2)], clean=[p for p in ids if p not in (ids[0], ids[4])])
        mv = ModelVersion(project_id=pid, name="base", stage="base", artifact_path=None)
        s.add(mv)
        s.flush()
        s.get(LabelCheck, cid).model_version_id = mv.id
        angle = np.array([0.2 * i + 0.01 * i * i for i in range(len(ids))])
        EmbeddingCache("base").add(ids, np.stack([np.cos(angle), np.sin(angle)], axis=1))
        eve = seed_user(s, "eve2", Role.engineer)
        return {"ids": ids, "pid": pid, "rita": seeded["users"]["rita"].id, "eve": eve.id}


def test_a_suspects_pane_shows_its_nearest_labelled_neighbours_and_the_confirm_key(checked: dict[str, Any]) -> None:
    ids = checked["ids"]
    at = page("review", checked["rita"]).run()
    at.toggle(key="review_f_suspected").set_value(True).run()
    assert not at.exception
    (near,) = [d.value for d in at.dataframe if "similar" in d.value.columns]  # (a dataframe's key is not exposed)
    assert near["pair"].tolist() == [ids[3], ids[5], ids[2], ids[6], ids[1]]
    assert near["grade"].tolist() == ["irrelevant"] * 5 and near["suspect"].tolist() == [False] * 5
    assert any("Confirm the label with **1** (“irrelevant”)" in c.value for c in at.caption)
    assert any(m.value.startswith("**Nearest labelled pairs** (model base") for m in at.markdown)
    at.button(key=f"review_grade_{ids[4]}_0").click().run()  # "1": confirm; the next suspect is ids[0]
    (near,) = [d.value for d in at.dataframe if "similar" in d.value.columns]
    assert near["pair"].tolist()[:2] == [ids[1], ids[2]]


def test_an_engineer_runs_a_label_check_beside_a_stored_one_and_sees_its_job(checked: dict[str, Any],
                                                                           sqlite_database: str) -> None:
    at = page("review", checked["rita"]).run()
    at.toggle(key="review_f_suspected").set_value(True).run()
    assert not [b for b in at.button if b.key == "review_run_check"]  # a reviewer does not run checks
    at = page("review", checked["eve"]).run()
    at.toggle(key="review_f_suspected").set_value(True).run()
    at.button(key="review_run_check").click().run()
    assert not at.exception and "Label check queued" in at.success[0].value
    with session_scope(sqlite_database) as s:
        job = s.scalars(select(Job)).one()
        assert job.kind == "check_labels" and job.created_by == checked["eve"] and job.params["version"] is None
    assert any("label check with the pretrained backbone" in m.value for m in at.markdown)  # its progress panel
    (jobs,) = [e for e in at.expander if e.label == "Label check jobs"]
    assert jobs.proto.expanded  # open once a check was queued
    # The refit option: the same button with "Refit per fold" ticked queues a refit check, named as one.
    at.checkbox(key="review_check_refit").check().run()
    at.button(key="review_run_check").click().run()
    assert not at.exception
    with session_scope(sqlite_database) as s:
        refit = s.scalars(select(Job).order_by(Job.id.desc())).first()
        assert refit.kind == "check_labels" and refit.params["refit"] is True and refit.params["refit_overrides"] == {}
    assert any("label check, ce refit per fold" in m.value for m in at.markdown)


def test_a_decision_marked_gold_and_the_gold_view(checked: dict[str, Any], sqlite_database: str) -> None:
    ids = checked["ids"]
    at = page("review", checked["rita"]).run()
    at.toggle(key="review_as_gold").set_value(True).run()
    at.button(key=f"review_grade_{ids[0]}_1").click().run()
    assert not at.exception
    at.segmented_control(key="review_view").set_value("Gold").run()
    assert not at.exception and "**1** gold pair(s) among 1 adjudicated" in at.caption[0].value
    (table,) = [d.value for d in at.dataframe if "adjudicated_by" in d.value.columns]
    assert table[["pair", "grade", "gold"]].values.tolist() == [[ids[0], "weak", True]]
    at.segmented_control(key="review_view").set_value("Disagreements").run()
    assert at.toggle(key="review_as_gold").value is False  # off again after leaving the view
    at.button(key=f"review_grade_{ids[1]}_2").click().run()  # decided, not gold
    at.segmented_control(key="review_view").set_value("Gold").run()
    (table,) = [d.value for d in at.dataframe if "adjudicated_by" in d.value.columns]
    assert table[["pair", "gold"]].values.tolist() == [[ids[1], False], [ids[0], True]]
    at.multiselect(key="review_gold_pick").set_value([ids[1]]).run()
    at.button(key="review_gold_mark").click().run()
    assert not at.exception and "**2** gold pair(s)" in at.caption[0].value
    at.multiselect(key="review_gold_pick").set_value([ids[0]]).run()
    at.button(key="review_gold_unmark").click().run()
    with session_scope(sqlite_database) as s:
        assert list(s.scalars(select(GoldPair.pair_id))) == [ids[1]]


def test_the_gold_share_setting(checked: dict[str, Any], sqlite_database: str) -> None:
    at = page("review", checked["eve"]).run()
    at.segmented_control(key="review_view").set_value("Settings").run()
    at.number_input(key="set_gold_share").set_value(0.2)
    at.button[-1].click().run()
    assert not at.exception and at.success
    with session_scope(sqlite_database) as s:
        assert s.scalars(select(Project.settings)).one()["gold_share"] == 0.2


def test_the_dashboard_shows_each_annotator_against_gold_and_the_label_check(checked: dict[str, Any],
                                                                            sqlite_database: str) -> None:
    from db.models import User
    from db.services import gold, review

    ids = checked["ids"]
    with session_scope(sqlite_database) as s:
        rita, ann = s.get(User, checked["rita"]), s.scalar(select(User).where(User.name == "ann"))
        for pid, grade in zip(ids[12:14], [2, 0], strict=True):  # the two pairs whose votes agreed (2, 2)
            review.adjudicate(s, rita, pid, grade)
        gold.mark_gold(s, rita, checked["pid"], ids[12:14])
        for pid, at_ in [(ids[12], datetime(2026, 11, 3)), (ids[13], datetime(2026, 11, 10))]:
            s.add(LabelEvent(pair_id=pid, user_id=ann.id, kind=LabelKind.label, grade=2, created_at=at_))
    at = page("review", checked["rita"]).run()
    at.segmented_control(key="review_view").set_value("Agreement").run()
    assert not at.exception
    (people,) = [d.value.set_index("annotator") for d in at.dataframe
                if "suspected_share" in d.value.columns]
    assert people.loc["ann", ["gold_answers", "gold_correct", "gold_accuracy"]].tolist() == [2, 1, 0.5]
    # ann voted 0 on ids[0..11] (save the flagged ids[10]); the check suspects label 0 on ids[0] and ids[4]
    assert people.loc["ann", ["checked_votes", "suspected_votes"]].tolist() == [14, 2]
    assert people.loc["bob", "suspected_votes"] == 0
    assert len(at.get("plotly_chart")) == 6  # the four agreement charts, gold accuracy and suspected share per week
    assert any("2 gold pair(s), 5% of each annotator's cards" in c.value for c in at.caption)
