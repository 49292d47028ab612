"""In a real browser: the reviewer filters 12 pending pairs to the flagged one (the 11th), selects it in
the list, adjudicates it with a key press, and the database holds that decision; a screenshot of the
Review screen at 1400x1000 is saved to tests/artifacts/."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db.models import Item, LabelEvent, LabelKind, Pair, User
from db.session import session_scope
from tests.e2e.conftest import ARTIFACTS, login
from tests.seed import PASSWORD, seed_review_queue

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def seed() -> Callable[[str], None]:
    def run(url: str) -> None:
        with session_scope(url) as s:
            seed_review_queue(s)  # 12 pending pairs, the 11th ("Item 10 title") flagged
    return run


def _idle(page) -> None:  # type: ignore[no-untyped-def]
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def test_filter_to_the_flagged_pair_select_it_and_adjudicate_by_key(page, app_url: str,  # type: ignore[no-untyped-def]
                                                                    app_db_url: str) -> None:
    with session_scope(app_db_url) as s:
        flagged = s.scalar(select(Pair.id).join(Item, Item.id == Pair.item_id).where(Item.title == "Item 10 title"))
    page.set_viewport_size({"width": 1400, "height": 1000})
    login(page, app_url, "rita", PASSWORD)
    page.get_by_role("link", name="Review").click()
    expect(page.get_by_text("12 pair(s) wait", exact=False)).to_be_visible()
    _idle(page)
    page.wait_for_timeout(1000)  # the grids draw on a canvas after the run
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review_screen.png"))
    page.get_by_text("Flagged only (1)").click()
    expect(page.get_by_text("1 match the filters", exact=False)).to_be_visible()
    _idle(page)
    listing = page.locator("[class*='st-key-review_table_'] [data-testid='stDataFrame']").first
    box = listing.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the first row's selection marker (under the header)
    expect(page.get_by_text(f"Pair {flagged} · segment", exact=False)).to_be_visible()
    expect(page.locator(f".st-key-review_item_{flagged}")).to_contain_text("Item 10 title")
    _idle(page)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "review_flagged.png"))
    page.get_by_role("textbox", name="Comment (optional)").click()
    page.keyboard.type("brand 3 of 2 jk")  # digits and J/K typed in the comment are text, not shortcuts
    page.keyboard.press("Enter")
    _idle(page)
    page.get_by_text("Decide with a click or a key", exact=False).click()  # leave the text box
    page.keyboard.press("2")  # "weak"
    expect(page.get_by_text("11 pair(s) wait", exact=False)).to_be_visible()
    with session_scope(app_db_url) as s:
        adj = s.execute(select(LabelEvent.pair_id, LabelEvent.grade, User.name, LabelEvent.comment)
                        .join(User, User.id == LabelEvent.user_id)
                        .where(LabelEvent.kind == LabelKind.adjudication)).all()
    assert [tuple(r) for r in adj] == [(flagged, 1, "rita", "brand 3 of 2 jk")]
