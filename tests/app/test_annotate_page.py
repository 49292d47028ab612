"""AppTest: the grading screen renders a card, grades, flags, skips and undoes through the service."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import LabelEvent, Role, User
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


def _button(at: AppTest, prefix: str):  # type: ignore[no-untyped-def]
    """The button whose key starts with ``prefix`` (keys end with the lease of the card they were drawn with)."""
    (found,) = [b for b in at.button if b.key.startswith(prefix)]
    return found


def _text(at: AppTest) -> str:
    """Markdown and captions as read on screen (data is shown escaped)."""
    return (" ".join(m.value for m in at.markdown) + " " + " ".join(c.value for c in at.caption)).replace("\\", "")


def test_card_guidelines_progress_and_reasons_by_default(grading: AppTest) -> None:
    at = grading
    assert not at.exception
    text = _text(at)
    assert "Perfect match" in text and "Item 0 title" in text
    assert [b.label for b in at.button if b.key.startswith("annotate_grade_")] == ["irrelevant", "weak", "strong"]
    assert "0 of 2 pairs graded" in at.get("progress")[0].proto.text
    # Why-picked is on by default, in words (the seeded round has a novelty score only), not JSON.
    assert "Why this pair was picked:** Unusual compared with the labelled pairs (novelty score 1.00)" in text
    assert not at.json


def test_grade_flag_skip_undo(grading: AppTest, sqlite_database: str) -> None:
    at = grading
    _button(at, "annotate_grade_2_").click().run()
    assert not at.exception
    assert "Item 1 title" in _text(at)
    assert "you graded **strong**" in _text(at) and "Item 0 title" in _text(at)  # the previous card
    at.toggle(key="annotate_flag").set_value(True).run()
    at.text_input(key="annotate_comment").input("brand differs").run()
    _button(at, "annotate_grade_0_").click().run()
    _button(at, "annotate_skip_").click().run()
    _button(at, "annotate_undo_").click().run()
    assert not at.exception
    events = _events(sqlite_database)
    assert [(e.kind.value, e.grade) for e in events] == [("label", 2), ("label", 0), ("undo", None)]
    assert events[0].seconds_on_card is not None and events[1].flagged and events[1].comment == "brand differs"
    assert "Item 1 title" in _text(at)  # the undone card is back
    assert "today: 1" in at.get("progress")[0].proto.text
    assert at.toggle(key="annotate_flag").value is False


def test_a_press_for_a_card_that_left_the_screen_is_dropped(grading: AppTest, sqlite_database: str) -> None:
    at = grading
    first = _button(at, "annotate_grade_1_")
    first_lease = first.key.rsplit("_", 1)[1]
    first.click().run()
    assert "Item 1 title" in _text(at)
    # The same key again, still naming the first card (as a press that lands while the next card loads).
    at.session_state["annotate_action"] = ("grade", int(first_lease), 2)
    at.run()
    assert not at.exception and not at.error
    assert [(e.kind.value, e.grade) for e in _events(sqlite_database)] == [("label", 1)]
    assert "Key press ignored" in at.toast[0].value and "Item 1 title" in _text(at)


def test_engineer_switches_reasons_off_on_the_selection_page(grading: AppTest, sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        eve = seed_user(s, "eve", Role.engineer)
        ann_id = s.scalar(select(User.id).where(User.name == "ann"))
    sel = page("selection", eve.id).run()
    assert sel.toggle(key="select_show_reasons").value is True
    sel.toggle(key="select_show_reasons").set_value(False).run()
    assert not sel.exception
    at = page("annotate", ann_id).run()
    assert "Why this pair was picked" not in _text(at) and "Item 0 title" in _text(at)


def test_needs_login(sqlite_database: str) -> None:
    at = page("annotate", None).run()
    assert not at.exception
    assert "Log in first" in at.error[0].value
