"""AppTest: review page — adjudicate from the queue, agreement charts, engineer-only settings."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import LabelEvent, LabelKind, Project, Role
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_project, seed_user


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
