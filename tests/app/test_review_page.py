"""AppTest: review page — adjudicate from the queue, filters and the detail pane, neutral grade buttons,
agreement charts with the flag rate, engineer-only settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import LabelEvent, LabelKind, ModelVersion, PairScore, Project, Role
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_label_check, seed_project, seed_review_queue, seed_user


@pytest.fixture
def people(sqlite_database: str) -> dict[str, int]:
    with session_scope(sqlite_database) as s:
        project = seed_project(s, n_pairs=4)
        ids = pair_ids(s, project.id)
        users = {n: seed_user(s, n, r) for n, r in
                 [("ann", Role.annotator), ("bob", Role.annotator), ("rita", Role.reviewer), ("eve", Role.engineer)]}
        for pid, (a, b) in zip(ids, [(0, 2), (1, 1), (2, 2), (0, 1)], strict=True):
            s.add_all([LabelEvent(pair_id=pid, user_id=users["ann"].id, kind=LabelKind.label, grade=a, seconds_on_card=3),
                       LabelEvent(pair_id=pid, user_id=users["bob"].id, kind=LabelKind.label, grade=b, seconds_on_card=5)])
    return {n: u.id for n, u in users.items()}


def test_reviewer_adjudicates_from_the_queue(people: dict[str, int], sqlite_database: str) -> None:
    at = page("review", people["rita"]).run()
    assert not at.exception
    assert "2 pair(s) wait" in at.caption[0].value
    first = next(b for b in at.button if b.key.startswith("review_grade_") and b.key.endswith("_2"))
    first.click().run()
    assert not at.exception and "1 pair(s) wait" in at.caption[0].value
    with session_scope(sqlite_database) as s:
        adj = s.scalars(select(LabelEvent).where(LabelEvent.kind == LabelKind.adjudication)).one()
    assert adj.grade == 2 and adj.user_id == people["rita"]
    assert "Settings" not in at.segmented_control(key="review_view").options


def test_agreement_dashboard_renders_charts(people: dict[str, int]) -> None:
    at = page("review", people["rita"]).run()
    at.segmented_control(key="review_view").set_value("Agreement").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 4
    assert {m.label for m in at.metric} >= {"Krippendorff's α (ordinal)"}


def test_annotator_is_refused(people: dict[str, int]) -> None:
    at = page("review", people["ann"]).run()
    assert "needs the reviewer role" in at.error[0].value


def test_engineer_turns_on_reasons(people: dict[str, int], sqlite_database: str) -> None:
    at = page("review", people["eve"]).run()
    at.segmented_control(key="review_view").set_value("Settings").run()
    at.toggle(key="set_reasons").set_value(True)
    at.number_input(key="set_minutes").set_value(15)
    at.button[-1].click().run()
    assert not at.exception and at.success
    with session_scope(sqlite_database) as s:
        settings = s.scalars(select(Project.settings)).one()
    assert settings["show_reasons"] is True and settings["lease_minutes"] == 15


@pytest.fixture
def twelve(sqlite_database: str) -> dict[str, Any]:
    """12 pending pairs; the 11th is flagged (both voted 1) and every other one is a 0-vs-2 disagreement."""
    with session_scope(sqlite_database) as s:
        seeded = seed_review_queue(s)
        return {"ids": seeded["ids"], "rita": seeded["users"]["rita"].id}


def _grade_buttons(at: AppTest) -> list[Any]:
    return [b for b in at.button if b.key.startswith("review_grade_")]


def _shown_pair(at: AppTest) -> int:
    """The pair in the detail pane (its caption reads "Pair <id> · segment ...")."""
    (shown,) = [int(m.group(1)) for c in at.caption if (m := re.match(r"Pair (\d+) ·", c.value))]
    return shown


def test_the_list_reaches_every_pair_and_the_flagged_filter_finds_the_eleventh(twelve: dict[str, Any]) -> None:
    at = page("review", twelve["rita"]).run()
    assert not at.exception
    assert "12 pair(s) wait" in at.caption[0].value and "1 flagged" in at.caption[0].value
    (listing,) = [d for d in at.dataframe if d.key and d.key.startswith("review_table_")]
    assert listing.value["pair"].tolist() == twelve["ids"][:12]  # not the first 5 only
    assert _shown_pair(at) == twelve["ids"][0]
    at.toggle(key="review_f_flagged").set_value(True).run()
    assert not at.exception and "**1** match" in at.caption[0].value
    (listing,) = [d for d in at.dataframe if d.key and d.key.startswith("review_table_")]
    assert listing.value["pair"].tolist() == [twelve["ids"][10]]
    assert _shown_pair(at) == twelve["ids"][10]
    (votes,) = [d.value for d in at.dataframe if "comment" in d.value.columns]  # the detail pane's votes
    assert votes[["annotator", "comment", "flag"]].values.tolist() == [["ann", "too vague", True],
                                                                         ["bob", "brand differs", False]]
    assert any("Item 10 title" in m.value for m in at.markdown)


def test_grade_buttons_stay_neutral_and_show_vote_counts(twelve: dict[str, Any]) -> None:
    at = page("review", twelve["rita"]).run()
    buttons = _grade_buttons(at)
    assert [b.label for b in buttons] == ["irrelevant", "weak", "strong"]
    assert [b.proto.type for b in buttons] == ["secondary"] * 3  # the majority is no pre-selected default
    assert [b.proto.shortcut for b in buttons] == ["1", "2", "3"]
    assert any("Votes: 1×strong, 1×irrelevant" in m.value for m in at.markdown)


def test_next_reaches_the_eleventh_pair_and_a_decision_moves_on(twelve: dict[str, Any],
                                                                 sqlite_database: str) -> None:
    at = page("review", twelve["rita"]).run()
    for _ in range(10):
        at.button(key="review_next").click().run()
    assert _shown_pair(at) == twelve["ids"][10]
    at.text_input(key=f"review_comment_{twelve['ids'][10]}").set_value("vague query, weak")
    at.button(key=f"review_grade_{twelve['ids'][10]}_1").click().run()
    assert not at.exception and "11 pair(s) wait" in at.caption[0].value
    assert _shown_pair(at) == twelve["ids"][11]  # the next pair, not back to the top
    with session_scope(sqlite_database) as s:
        adj = s.scalars(select(LabelEvent).where(LabelEvent.kind == LabelKind.adjudication)).one()
    assert (adj.pair_id, adj.grade, adj.comment, adj.user_id) == (twelve["ids"][10], 1, "vague query, weak",
                                                                  twelve["rita"])


def test_agreement_view_shows_the_flag_rate(twelve: dict[str, Any]) -> None:
    at = page("review", twelve["rita"]).run()
    at.segmented_control(key="review_view").set_value("Agreement").run()
    assert not at.exception
    (people,) = [d.value.set_index("annotator") for d in at.dataframe if "flag_rate" in d.value.columns]
    assert people.loc["ann", "flag_rate"] == pytest.approx(1 / 14) and people.loc["bob", "flag_rate"] == 0


def test_paging_and_stepping_back_across_a_page(sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        seeded = seed_review_queue(s, n_pending=27, flagged_at=26)
        ids, rita = seeded["ids"], seeded["users"]["rita"].id
    at = page("review", rita).run()
    assert "Rows 1–25 of 27" in [c.value for c in at.caption]
    at.button(key="review_next_page").click().run()
    (listing,) = [d for d in at.dataframe if d.key and d.key.startswith("review_table_")]
    assert listing.value["pair"].tolist() == ids[25:27] and _shown_pair(at) == ids[25]
    at.button(key="review_prev").click().run()  # K at the top of page 2: the last pair of page 1
    assert _shown_pair(at) == ids[24] and "Rows 1–25 of 27" in [c.value for c in at.caption]
    at.button(key="review_next").click().run()  # J at the bottom of page 1: the first pair of page 2
    assert _shown_pair(at) == ids[25]


def test_detail_shows_the_current_versions_prediction(twelve: dict[str, Any], sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        mv = ModelVersion(project_id=s.scalars(select(Project.id)).one(), name="ft", stage="ft")
        s.add(mv)
        s.flush()
        s.add(PairScore(pair_id=twelve["ids"][0], model_version_id=mv.id, predicted_grade=2, expected_grade=1.8))
        s.scalars(select(Project)).one().current_version_id = mv.id
    at = page("review", twelve["rita"]).run()
    assert any(m.value == "Model ft predicts **strong**, expected grade 1.80 on 0–2." for m in at.markdown)
    at.button(key="review_next").click().run()  # a pair the version did not score
    assert any(c.value.startswith("No prediction") for c in at.caption)


def test_suspected_filter_lists_the_label_checks_suspects_with_the_models_grade(twelve: dict[str, Any],
                                                                              sqlite_database: str) -> None:
    ids = twelve["ids"]
    at = page("review", twelve["rita"]).run()
    at.toggle(key="review_f_suspected").set_value(True).run()
    assert not at.exception and any(c.value.startswith("No label check yet") for c in at.caption)
    with session_scope(sqlite_database) as s:
        seed_label_check(s, s.scalars(select(Project.id)).one(), [(ids[13], 2, 0), (ids[4], 0, 2)], clean=[ids[5]])
    at.run()
    assert not at.exception
    assert at.toggle(key="review_f_suspected").label == "Suspected by the label check (2)"
    (listing,) = [d for d in at.dataframe if d.key and d.key.startswith("review_table_")]
    assert listing.value["pair"].tolist() == [ids[13], ids[4]]  # most suspect first; ids[13]'s votes agree
    assert _shown_pair(at) == ids[13]
    assert any("says **irrelevant** (90% sure) and gives the label “strong” 5%" in m.value for m in at.markdown)
    at.button(key=f"review_grade_{ids[13]}_2").click().run()  # confirm the label
    assert not at.exception
    assert at.toggle(key="review_f_suspected").label == "Suspected by the label check (1)"
    assert _shown_pair(at) == ids[4]
    with session_scope(sqlite_database) as s:
        adj = s.scalars(select(LabelEvent).where(LabelEvent.kind == LabelKind.adjudication)).one()
    assert (adj.pair_id, adj.grade, adj.user_id) == (ids[13], 2, twelve["rita"])


def test_with_no_label_check_an_engineer_runs_one_from_review_and_a_reviewer_is_told_whom_to_ask(
        twelve: dict[str, Any], sqlite_database: str) -> None:
    from db.models import Job
    from tests.seed import seed_user

    at = page("review", twelve["rita"]).run()
    at.toggle(key="review_f_suspected").set_value(True).run()
    assert not [b for b in at.button if b.key == "review_run_check"]
    assert any("ask an engineer" in c.value for c in at.caption)
    with session_scope(sqlite_database) as s:
        eng = seed_user(s, "eng-rev", Role.engineer).id
    at = page("review", eng).run()
    at.toggle(key="review_f_suspected").set_value(True).run()
    at.button(key="review_run_check").click().run()
    assert not at.exception and "Label check queued" in at.success[0].value
    with session_scope(sqlite_database) as s:
        job = s.scalars(select(Job)).one()
        assert job.kind == "check_labels" and job.created_by == eng
