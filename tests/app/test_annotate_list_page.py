"""AppTest: Annotate in list mode shows one query with its leased results, submits a list as one, drops a
submit for a list that has left the screen, and lets the annotator choose where the project allows both.

The browser component records the submit in ``annotate_list_action`` (as the card buttons record theirs);
these tests set that action directly, as the card page's tests do, and the e2e test drives the keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from db.models import Item, LabelEvent, Lease, Project, Role
from db.services.projects import update_settings
from db.services.users import SYSTEM
from db.session import session_scope
from pages._list_ui import ACTION
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_project, seed_round, seed_user
from tests.untrusted import BIDI


@pytest.fixture
def listing(sqlite_database: str) -> dict[str, Any]:
    """15 pairs (3 queries of 5), all in a round, list mode with lists of 5; ann and bob annotate."""
    with session_scope(sqlite_database) as s:
        project = seed_project(s, n_pairs=15, guidelines="Perfect match: the product is what was searched.",
                               settings={"annotation_mode": "list", "list_size": 5})
        seed_round(s, project.id, pair_ids(s, project.id))
        users = {n: seed_user(s, n, Role.annotator).id for n in ("ann", "bob")}
        users["eve"] = seed_user(s, "eve", Role.engineer).id
    return users


def shown_list(at: AppTest) -> dict[str, Any]:
    """The data the list component was drawn with (the query, its items and the grade names)."""
    (element,) = [e for e in at.get("bidi_component") if e.proto.component_name == "darl_query_list"]
    return dict(json.loads(element.proto.json))


def _labels(url: str) -> list[tuple[int, int | None]]:
    with session_scope(url) as s:
        return [(int(p), g) for p, g in s.execute(select(LabelEvent.pair_id, LabelEvent.grade).order_by(LabelEvent.id))]


def _submit(at: AppTest, data: dict[str, Any], grades: list[int | None], seconds: float = 20.0) -> AppTest:
    at.session_state[ACTION] = {"list_id": data["list_id"], "seconds": seconds,
                                "decisions": [[it["lease"], g] for it, g in zip(data["items"], grades, strict=True)]}
    return at.run()


def test_list_shows_one_query_its_items_and_why(listing: dict[str, Any]) -> None:
    at = page("annotate", listing["ann"]).run()
    assert not at.exception and not at.error
    data = shown_list(at)
    assert data["query"] == "query 0 cordless drill"
    assert [it["title"] for it in data["items"]] == [f"Item {i} title" for i in range(5)]
    assert data["items"][0]["text"] == "Description of item 0."
    assert data["grades"] == ["irrelevant", "weak", "strong"]
    assert "Unusual compared with the labelled pairs" in " ".join(data["items"][0]["why"])
    assert "1–3 grade" in data["keys"] and "Enter submits" in data["keys"]
    assert not [b for b in at.button if b.key.startswith("annotate_grade_")]  # no card on this screen
    assert "0 of 15 pairs graded" in at.get("progress")[0].proto.text
    assert "Perfect match" in " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])  # the guidelines stay


def test_submit_writes_every_grade_at_once_and_the_next_query_comes(listing: dict[str, Any],
                                                                   sqlite_database: str) -> None:
    at = page("annotate", listing["ann"]).run()
    first = shown_list(at)
    _submit(at, first, [2, 0, None, 1, 2])
    assert not at.exception and not at.error
    with session_scope(sqlite_database) as s:
        ids = pair_ids(s, s.scalar(select(Project.id)))
        seconds = list(s.scalars(select(LabelEvent.seconds_on_card)))
    assert _labels(sqlite_database) == [(ids[0], 2), (ids[1], 0), (ids[3], 1), (ids[4], 2)]  # the skip: no label
    assert seconds == [pytest.approx(4.0)] * 4  # the list's 20 s shared among its 5 items
    assert "List submitted: 4 graded, 1 skipped." in at.toast[0].value
    second = shown_list(at)
    assert second["list_id"] != first["list_id"] and second["query"] == "query 1 cordless drill"
    assert "4 of 15 pairs graded" in at.get("progress")[0].proto.text


def test_a_submit_for_a_list_that_left_the_screen_is_dropped(listing: dict[str, Any], sqlite_database: str) -> None:
    at = page("annotate", listing["ann"]).run()
    first = shown_list(at)
    _submit(at, first, [1, 1, 1, 1, 1])
    before = _labels(sqlite_database)
    second = shown_list(at)
    _submit(at, first, [2, 2, 2, 2, 2])  # the first list's submit again: Enter pressed while it was saved
    assert not at.exception and not at.error
    assert _labels(sqlite_database) == before  # nothing written, none of the second list graded
    assert "Submit ignored" in at.toast[0].value
    assert shown_list(at)["list_id"] == second["list_id"]


def test_a_list_that_expired_on_screen_says_so_and_writes_nothing(listing: dict[str, Any],
                                                                 sqlite_database: str) -> None:
    at = page("annotate", listing["ann"]).run()
    first = shown_list(at)
    assert first["keepalive_s"] == 300  # half of the 10-minute lease: a slow annotator's list stays leased
    with session_scope(sqlite_database) as s:  # the lease ran out (the page was left alone) and was expired
        s.execute(update(Lease).where(Lease.list_id == first["list_id"]).values(status="expired"))
    _submit(at, first, [1, 1, 1, 1, 1])
    assert not at.exception and not at.error
    assert "expired" in at.warning[0].value and not at.toast
    assert _labels(sqlite_database) == []
    assert shown_list(at)["list_id"] != first["list_id"]


def test_an_incomplete_list_is_refused_and_nothing_is_written(listing: dict[str, Any], sqlite_database: str) -> None:
    at = page("annotate", listing["ann"]).run()
    first = shown_list(at)
    at.session_state[ACTION] = {"list_id": first["list_id"], "seconds": 3.0,
                                "decisions": [[it["lease"], 1] for it in first["items"][:4]]}
    at.run()
    assert not at.exception
    assert "needs a grade or a skip" in at.error[0].value
    assert _labels(sqlite_database) == []
    assert shown_list(at)["list_id"] == first["list_id"]  # the same list, to finish


def test_two_annotators_get_different_pairs(listing: dict[str, Any]) -> None:
    ann = shown_list(page("annotate", listing["ann"]).run())
    bob = shown_list(page("annotate", listing["bob"]).run())
    assert {it["title"] for it in ann["items"]}.isdisjoint({it["title"] for it in bob["items"]})


def test_where_both_modes_are_allowed_the_annotator_switches(listing: dict[str, Any], sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        update_settings(s, s.scalars(select(Project)).one(), actor=SYSTEM, annotation_mode="both")
    at = page("annotate", listing["ann"]).run()
    assert at.button(key=[b.key for b in at.button if b.key.startswith("annotate_grade_0_")][0])  # cards first
    at.get("button_group")[0].set_value("list").run()
    assert not at.exception and shown_list(at)["query"] == "query 0 cordless drill"
    again = page("annotate", listing["ann"]).run()  # a new session: the choice was kept
    assert shown_list(again)["query"] == "query 0 cordless drill"
    again.get("button_group")[0].set_value("card").run()  # back to cards: the list's pairs are released
    assert not again.exception and not again.get("bidi_component")
    with session_scope(sqlite_database) as s:
        active = s.scalars(select(Lease.list_id).where(Lease.status == "active", Lease.list_id.is_not(None))).all()
    assert active == []


def test_untrusted_text_reaches_the_list_as_plain_text(sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        project = seed_project(s, n_pairs=5, settings={"annotation_mode": "list"})
        s.execute(update(Item).where(Item.project_id == project.id).values(
            title="<img src=x onerror=alert(1)> \u202egnp.exe", text="[click](https://evil.example) \u2066x"))
        uid = seed_user(s, "ann", Role.annotator).id
    data = shown_list(page("annotate", uid).run())
    item = data["items"][0]
    assert item["title"] == "<img src=x onerror=alert(1)> gnp.exe"  # shown as typed (set as text), no bidi
    assert not any(ch in json.dumps(data, ensure_ascii=False) for ch in BIDI)


def test_engineer_sets_list_mode_and_size_on_review(listing: dict[str, Any], sqlite_database: str) -> None:
    at = page("review", listing["eve"]).run()
    at.segmented_control(key="review_view").set_value("Settings").run()
    at.selectbox(key="set_mode").set_value("both")
    at.number_input(key="set_list_size").set_value(7)
    [b for b in at.button if b.label == "Save"][0].click().run()
    assert not at.exception and not at.error
    with session_scope(sqlite_database) as s:
        settings = s.scalars(select(Project.settings)).one()
    assert settings["annotation_mode"] == "both" and settings["list_size"] == 7
    assert settings["overlap"] == 1  # the other settings kept
