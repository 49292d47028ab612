"""In a real browser: fast key presses grade only the card that was on screen when each key went down.

A script injected before the app loads records, at every key-down (capture phase, before Streamlit sees
the key), which card the page showed, and with a MutationObserver every card that was ever shown. The
stored labels must then be a subsequence of those key-downs (same card, same grade): a press that lands
while the next card loads is dropped, never applied to a card that the annotator has not seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select, update

from db.models import Item, LabelEvent, LabelKind, Pair, RoundItem
from db.session import session_scope
from tests.e2e.conftest import ARTIFACTS, USERS, login, readme_shot
from tests.seed import PASSWORD, pair_ids, seed_project, seed_round, seed_user

pytestmark = pytest.mark.e2e

OBSERVER = r"""
(() => {
  window.__darlKeys = [];
  window.__darlSeen = [];
  const shown = () => {
    const card = document.querySelector('.st-key-annotate_card');
    const m = card ? card.innerText.match(/Item \d+ title/) : null;
    return m ? m[0] : null;
  };
  window.addEventListener('keydown', (e) => {
    window.__darlKeys.push({key: e.key, title: shown(), t: performance.now()});
  }, true);
  new MutationObserver(() => {
    const t = shown();
    if (t && window.__darlSeen[window.__darlSeen.length - 1] !== t) window.__darlSeen.push(t);
  }).observe(document, {subtree: true, childList: true, characterData: true});
})();
"""

# The Home Depot raters' manual, shortened: it lists the grades best first, the buttons go worst first.
GUIDELINES = """Rate The Relevance Of A Search Result.
In this task, we need your help determining to what extent a search result matches the search query.
Focus on the following attributes when comparing the product to the query - Brand, Material, and Functionality.

Decide how relevant each product is to the query using these ratings:
Irrelevant (1)
Partially or somewhat relevant (2)
Perfect match (3)

Choose Perfect Match if:
The result matches the query intent perfectly.
The searched product is a part of a kit or included as a part or an item in the product shown.
The product is exactly what the customer was most likely trying to find.
The query was for a brand and the result is made by that brand.
Choose Partially or somewhat relevant if:
The result generally matches the query, but there is ambiguity in either search terms or product details.
Actual product is the same but differs in brand, dimensions, color or specifications.
Product specifications are not clear or product is a somewhat ambiguous synonym of the search term.
One of the many products searched in the query are shown. (example: washer &amp; dryer, only washer shown)
Choose Irrelevant: Paired with Search by Mistake if:
The result is not at all related to the intent of the search term.
The result is an item that is used with search term such as tool, accessory, extra part, cover or case.
The result has a completely different meaning, even if there are words in common with the search term.
The result is a collection of items and the search term does not appear in the set.
Do Not:
Use only the words in the query and result to determine relevancy. This task is about intent, not word matching.
"""


def _seed(url: str) -> None:
    """80 pairs; the first 40 are a DASA round whose reasons look like the selection job's; the real raters'
    guidelines; one user per role and a second annotator."""
    with session_scope(url) as s:
        project = seed_project(s, "demo", n_pairs=80, guidelines=GUIDELINES)
        ids = pair_ids(s, project.id)
        rnd = seed_round(s, project.id, ids[:40])
        for rank, pid in enumerate(ids[:40]):
            s.execute(update(RoundItem).where(RoundItem.round_id == rnd.id, RoundItem.pair_id == pid).values(
                reasons={"score": 0.9 - rank / 100, "parts": {"knn": 0.8}, "cluster": rank % 4,
                         "neighbours": [ids[60]], "neighbour_similarity": [0.41], "is_control": False,
                         "probs": [0.1, 0.46, 0.44], "segment": {"name": "appliances", "labelled": 3, "pairs": 100}}))
        for name, role in {**USERS, "ann2": "annotator"}.items():
            seed_user(s, name, role)


@pytest.fixture(scope="module")
def seed() -> Callable[[str], None]:
    return _seed


def _settle(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_timeout(600)
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")
    page.wait_for_timeout(600)
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def _stored(url: str) -> list[tuple[str, int]]:
    with session_scope(url) as s:
        rows = s.execute(select(Item.title, LabelEvent.grade).join(Pair, Pair.id == LabelEvent.pair_id)
                         .join(Item, Item.id == Pair.item_id).where(LabelEvent.kind == LabelKind.label)
                         .order_by(LabelEvent.id)).all()
    return [(str(t), int(g)) for t, g in rows]


def _matches_keydowns(stored: list[tuple[str, int]], keys: list[dict[str, Any]]) -> bool:
    """Each label pairs with a later key-down than the one before it, on the same card and grade key."""
    j = 0
    for title, grade in stored:
        while j < len(keys) and (keys[j]["title"], keys[j]["key"]) != (title, str(grade + 1)):
            j += 1
        if j == len(keys):
            return False
        j += 1
    return True


def test_fast_presses_grade_only_the_card_on_screen(page, app_url: str, app_db_url: str) -> None:  # type: ignore[no-untyped-def]
    page.add_init_script(OBSERVER)
    login(page, app_url, "ann", PASSWORD)
    page.get_by_role("link", name="Annotate").click()
    expect(page.get_by_text("Item 0 title", exact=True)).to_be_visible()
    _settle(page)
    for gap in (30, 100, 160):  # bursts of two presses of the same grade
        page.keyboard.press("2")
        page.wait_for_timeout(gap)
        page.keyboard.press("2")
        _settle(page)
    for n in range(20):  # a steady run, faster than the page reloads the card
        page.keyboard.press(str(n % 3 + 1))
        page.wait_for_timeout(150)
    _settle(page)

    keys: list[dict[str, Any]] = page.evaluate("window.__darlKeys")
    seen = set(page.evaluate("window.__darlSeen"))
    stored = _stored(app_db_url)
    assert len(keys) == 26, keys
    # Not vacuous: the first press of each burst (made on a settled card) is stored, and some of the run.
    assert stored[:3] == [("Item 0 title", 1), ("Item 1 title", 1), ("Item 2 title", 1)], stored
    assert len(stored) >= 4, stored
    never_shown = [t for t, _ in stored if t not in seen]
    assert not never_shown, f"graded cards that never appeared on screen: {never_shown}"
    assert _matches_keydowns(stored, keys), (
        f"a stored label does not match a key-down on that card: stored {stored}, "
        f"key-downs {[(k['title'], k['key']) for k in keys]}")
    assert len({t for t, _ in stored}) == len(stored)  # one vote per card per annotator


def _inside(inner, outer) -> bool:  # type: ignore[no-untyped-def]
    a, b = inner.bounding_box(), outer.bounding_box()
    return bool(a and b) and a["y"] >= b["y"] - 1 and a["y"] + a["height"] <= b["y"] + b["height"] + 1


def test_grading_screen_at_1400x1000(browser, app_url: str) -> None:  # type: ignore[no-untyped-def]
    """The screen an annotator works in: progress, why-picked in words, the previous card, the grade table."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        login(page, app_url, "ann2", PASSWORD)
        page.get_by_role("link", name="Annotate").click()
        card = page.locator(".st-key-annotate_card")
        expect(card).to_be_visible()
        _settle(page)
        first = card.inner_text()
        page.keyboard.press("3")
        expect(card).not_to_have_text(first)
        _settle(page)
        why = page.locator(".st-key-annotate_why")
        expect(why).to_contain_text("Few labelled pairs are like this one (closest labelled pair: 0.41 similar).")
        expect(why).to_contain_text("Segment appliances: 3% of pairs labelled.")
        expect(why).to_contain_text("The model is unsure between weak and strong.")
        expect(page.get_by_test_id("stProgress")).to_contain_text("pairs graded")
        expect(page.get_by_test_id("stProgress")).to_contain_text("yours in this round: 1")
        previous = page.locator(".st-key-annotate_previous")
        expect(previous).to_contain_text("you graded strong")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "annotate_1400x1000.png"))
        readme_shot(page, "annotate.png")
        # The grade table reads in button order, entirely inside its box, without scrolling.
        box = page.locator(".st-key-annotate_guidelines")
        rows = [box.get_by_text(f"{k} · {g}", exact=True) for k, g in (("1", "irrelevant"), ("2", "weak"), ("3", "strong"))]
        ys = [r.bounding_box()["y"] for r in rows]
        assert ys == sorted(ys)
        last_rule = box.locator("li").get_by_text("The query was for a brand and the result is made by that brand.")
        assert _inside(last_rule, box) and box.bounding_box()["y"] + box.bounding_box()["height"] <= 1000
        assert all(_inside(el, page.locator(".st-key-annotate_grades")) for el in [page.locator(
            ".st-key-annotate_grades button").first])
        page.get_by_text("Guidelines", exact=True).click()  # collapsible
        expect(last_rule).to_be_hidden()
        page.screenshot(path=str(ARTIFACTS / "annotate_1400x1000_guidelines_closed.png"))
    finally:
        context.close()
