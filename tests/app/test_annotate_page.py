"""AppTest: the grading screen renders a card, grades, flags, skips and undoes through the service."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import LabelEvent, Role
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_project, seed_round, seed_user


@pytest.fixture
def grading(sqlite_database: str):  # type: ignore[no-untyped-def]
    with session_scope(sqlite_database) as s:
        project = seed_project(s, n_pairs=6, guidelines="Perfect match: the product is what was searched.")
        seed_round(s, project.id, pair_ids(s, project.id)[:2])
        user = seed_user(s, "ann", Role.annotator)
    return page("annotate", user.id).run()


def _events(url: str) -> list[LabelEvent]:
    with session_scope(url) as s:
        return list(s.scalars(select(LabelEvent).order_by(LabelEvent.id)))


def test_card_guidelines_progress_and_no_reasons_by_default(grading: AppTest) -> None:
    at = grading
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "Perfect match" in text and "Item 0 title" in text
    assert [b.label for b in at.button if b.key.startswith("annotate_grade_")] == ["irrelevant", "weak", "strong"]
    assert {m.label: m.value for m in at.metric}["Left in round"] == "2"
    assert not at.expander  # why-picked stays hidden unless an engineer turns it on


def test_grade_flag_skip_undo(grading: AppTest, sqlite_database: str) -> None:
    at = grading
    at.button(key="annotate_grade_2").click().run()
    assert not at.exception
    assert "Item 1 title" in " ".join(m.value for m in at.markdown)
    at.toggle(key="annotate_flag").set_value(True).run()
    at.text_input(key="annotate_comment").input("brand differs").run()
    at.button(key="annotate_grade_0").click().run()
    at.button(key="annotate_skip").click().run()
    at.button(key="annotate_undo").click().run()
    assert not at.exception
    events = _events(sqlite_database)
    assert [(e.kind.value, e.grade) for e in events] == [("label", 2), ("label", 0), ("undo", None)]
    assert events[0].seconds_on_card is not None and events[1].flagged and events[1].comment == "brand differs"
    assert "Item 1 title" in " ".join(m.value for m in at.markdown)  # the undone card is back
    assert {m.label: m.value for m in at.metric}["Done today"] == "1"
    assert at.toggle(key="annotate_flag").value is False


def test_needs_login(sqlite_database: str) -> None:
    at = page("annotate", None).run()
    assert not at.exception
    assert "Log in first" in at.error[0].value
