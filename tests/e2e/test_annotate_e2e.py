"""In a real browser: log in, grade 5 cards by keyboard, undo one, check the database; an annotator
cannot reach the training or export pages even by URL; a screenshot of the grading screen is saved."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db.models import LabelEvent
from db.session import session_scope
from tests.e2e.conftest import ARTIFACTS, login
from tests.seed import PASSWORD

pytestmark = pytest.mark.e2e


def _card_title(page, n: int):  # type: ignore[no-untyped-def]
    return page.get_by_text(f"Item {n} title", exact=True)


def _grade_buttons(page):  # type: ignore[no-untyped-def]
    # The buttons own the key shortcuts and render after the card: a key pressed before they exist is lost.
    return page.locator(".st-key-annotate_grades button")


def _wait_until_rendered(page) -> None:  # type: ignore[no-untyped-def]
    # Buttons of the previous run can be on screen while the script still runs; their shortcuts are bound
    # once the run is done, so a key pressed earlier can be lost under load (seen in a CI-like run).
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def test_grade_five_cards_by_keyboard_and_undo(page, app_url: str, app_db_url: str) -> None:  # type: ignore[no-untyped-def]
    login(page, app_url, "ann", PASSWORD)
    page.get_by_role("link", name="Annotate").click()  # a page switch keeps the login
    expect(_card_title(page, 0)).to_be_visible()
    keys = ["3", "1", "2", "3", "2"]
    for n, key in enumerate(keys):
        expect(_grade_buttons(page)).to_have_count(3)
        _wait_until_rendered(page)
        page.keyboard.press(key)
        expect(_card_title(page, n + 1)).to_be_visible()
    _wait_until_rendered(page)
    page.keyboard.press("u")
    expect(_card_title(page, 4)).to_be_visible()  # the undone card is back
    expect(page.get_by_text("Guidelines", exact=True)).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "grading_screen.png"), full_page=True)
    with session_scope(app_db_url) as s:
        events = list(s.scalars(select(LabelEvent).order_by(LabelEvent.id)))
    assert [(e.kind.value, e.grade) for e in events] == [("label", int(k) - 1) for k in keys] + [("undo", None)]
    assert events[-1].supersedes_id == events[-2].id
    assert all(e.seconds_on_card is not None and e.seconds_on_card > 0 for e in events[:-1])


@pytest.mark.parametrize("path", ["export", "training", "users", "review"])
def test_annotator_cannot_reach_other_pages_by_url(page, app_url: str, path: str) -> None:  # type: ignore[no-untyped-def]
    login(page, app_url, "ann", PASSWORD, path=path)  # typed URL, then log in there
    page.wait_for_timeout(500)
    body = page.locator("body").inner_text()
    assert "Prepare export" not in body and "New account" not in body and "Disagreements" not in body
    assert page.get_by_role("link", name="Export").count() == 0
