"""In a real browser: list mode on Annotate, by keyboard only.

- ann grades two lists (undo and skip included) while ann2 grades lists in a second browser context at
  the same time; with overlap 1 they never see the same pair, and the database holds exactly the grades
  the keys gave;
- the list screen at 1400x1000 (tests/artifacts/annotate_list_1400x1000.png);
- keystrokes and browser-to-server WebSocket messages per label, list mode against card mode, for the
  same number of labels by the same kind of annotator, saved to bench/results/list_mode_keys.json.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db.models import Item, LabelEvent, LabelKind, Pair, User
from db.services.lists import set_list_preference
from db.session import session_scope
from tests.e2e.conftest import ARTIFACTS, ROOT, login
from tests.seed import PASSWORD, pair_ids, seed_project, seed_round, seed_user

pytestmark = pytest.mark.e2e

SIZE = 5
RESULTS = ROOT / "bench" / "results" / "list_mode_keys.json"


def _seed(url: str) -> None:
    """60 pairs, 12 queries of 5 results, the first 50 an open round, the last 10 graded by two annotators
    who disagree on some; the project lets each annotator choose; ann and ann2 chose lists, "meas" (the
    measurement) starts on cards; rita reviews."""
    with session_scope(url) as s:
        project = seed_project(s, "demo", n_pairs=60, settings={"annotation_mode": "both", "list_size": SIZE},
                               guidelines="Perfect match: the product is what was searched.\n"
                                          "Weak: the same kind of product, another brand or size.")
        ids = pair_ids(s, project.id)
        seed_round(s, project.id, ids[:50])
        for name in ("ann", "ann2", "meas"):
            user = seed_user(s, name, "annotator")
            if name != "meas":
                set_list_preference(s, user, project.id, "list")
        # The last two queries were graded by two earlier annotators, for Review's per-query view.
        x1, x2 = seed_user(s, "xavier", "annotator"), seed_user(s, "yara", "annotator")
        for i, pid in enumerate(ids[50:]):
            s.add_all([LabelEvent(pair_id=pid, user_id=x1.id, kind=LabelKind.label, grade=i % 3),
                       LabelEvent(pair_id=pid, user_id=x2.id, kind=LabelKind.label, grade=(i % 3) if i % 4 else 2)])
        seed_user(s, "rita", "reviewer")


@pytest.fixture(scope="module")
def seed() -> Callable[[str], None]:
    return _seed


def _settle(page) -> None:  # type: ignore[no-untyped-def]
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def _list_on_screen(page, not_id: str | None = None, size: int | None = SIZE) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """Wait for a list (other than ``not_id``; of ``size`` items unless None) to be drawn and settled; its id
    and item titles, in order. (While the next list loads, the one before stays on screen, locked.)"""
    new = page.locator(".darl-list[data-list-id]" + (f':not([data-list-id="{not_id}"])' if not_id else ""))
    expect(new.locator("li").first).to_be_visible()
    _settle(page)
    root = page.locator(".darl-list[data-list-id]")
    expect(root).to_have_count(1)  # the old one is gone once the run is over
    if size is not None:
        expect(root.locator("li")).to_have_count(size)
    titles = [t.strip() for t in root.locator(".dl-title").all_inner_texts()]
    return str(root.get_attribute("data-list-id")), titles


def _press(page, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    for key in keys:
        page.keyboard.press(key)
        page.wait_for_timeout(40)


def _focused(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator(".darl-list li.dl-focus .dl-title").inner_text().strip()


def _labels(url: str, name: str) -> list[tuple[str, int]]:
    with session_scope(url) as s:
        rows = s.execute(select(Item.title, LabelEvent.grade).join(Pair, Pair.id == LabelEvent.pair_id)
                         .join(Item, Item.id == Pair.item_id).join(User, User.id == LabelEvent.user_id)
                         .where(User.name == name, LabelEvent.kind == LabelKind.label).order_by(LabelEvent.id)).all()
    return [(str(t), int(g)) for t, g in rows]


# Before the app's own handler sees a key: which result the page showed focused (the marker) at that moment.
OBSERVER = r"""
window.__darlKeys = [];
window.addEventListener('keydown', (e) => {
  const focused = document.querySelector('.darl-list li.dl-focus .dl-title');
  window.__darlKeys.push({key: e.key, title: focused ? focused.innerText.trim() : null});
}, true);
"""


def _pressed_on_focus(stored: list[tuple[str, int]], keys: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Stored grades with no key-down of that grade while that result was focused (should be none). A list
    is saved in one statement, so the order within it is not the order of the keys."""
    pressed = {(k["title"], k["key"]) for k in keys}
    return [(t, g) for t, g in stored if (t, str(g + 1)) not in pressed]


def _frames(page) -> list[int]:  # type: ignore[no-untyped-def]
    """A live count of the messages the page sends to the server over Streamlit's WebSocket."""
    sent = [0]
    page.on("websocket", lambda ws: ws.on("framesent", lambda _f: sent.__setitem__(0, sent[0] + 1)))
    return sent


def test_two_lists_by_keyboard_while_a_second_annotator_grades(browser, app_url: str, app_db_url: str) -> None:  # type: ignore[no-untyped-def]
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    ann, ann2 = (c.new_page() for c in contexts)
    ann.add_init_script(OBSERVER)
    try:
        for pg, name in ((ann, "ann"), (ann2, "ann2")):
            login(pg, app_url, name, PASSWORD)
            pg.get_by_role("link", name="Annotate").click()
        first, titles1 = _list_on_screen(ann)
        other1, others1 = _list_on_screen(ann2)
        assert first != other1 and not set(titles1) & set(others1)

        # List 1: strong, weak, U (the weak is withdrawn, focus goes back to it), irrelevant, S, weak, strong.
        _press(ann, ["3", "2", "u"])
        assert _focused(ann) == titles1[1]
        _press(ann, ["1", "s", "2", "3"])
        expect(ann.locator(".darl-list .dl-status")).to_contain_text(f"{SIZE} of {SIZE} decided")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        ann.screenshot(path=str(ARTIFACTS / "annotate_list_1400x1000.png"))
        keys = ann.evaluate("window.__darlKeys")
        ann.reload()  # the grades so far are kept in the tab, under the list id, until the submit
        assert _list_on_screen(ann) == (first, titles1)
        expect(ann.locator(".darl-list .dl-status")).to_contain_text(f"{SIZE} of {SIZE} decided")
        expect(ann.locator(".darl-list li").nth(2).locator(".dl-grade")).to_have_text("skipped")
        ann.keyboard.press("Enter")
        second, titles2 = _list_on_screen(ann, not_id=first)

        _press(ann2, ["2"] * SIZE + ["Enter"])  # meanwhile ann2 submits theirs and gets the next one
        other2, others2 = _list_on_screen(ann2, not_id=other1, size=None)  # may be a leftover

        # List 2: ↓ then irrelevant (focus moves on), weak x3, wrapping back to the first: strong; Enter.
        _press(ann, ["ArrowDown", "1", "2", "2", "2"])
        assert _focused(ann) == titles2[0]
        _press(ann, ["3", "Enter", "1"])  # the 1 lands while the list is saved, or on the next list: never sent
        third, titles3 = _list_on_screen(ann, not_id=second, size=None)
        ann.screenshot(path=str(ARTIFACTS / "annotate_list_next_1400x1000.png"))
        keys += ann.evaluate("window.__darlKeys")
    finally:
        for c in contexts:
            c.close()

    assert _labels(app_db_url, "ann") == [
        (titles1[0], 2), (titles1[1], 0), (titles1[3], 1), (titles1[4], 2),  # titles1[2] skipped: no label
        (titles2[0], 2), (titles2[1], 0), (titles2[2], 1), (titles2[3], 1), (titles2[4], 1)]
    assert _pressed_on_focus(_labels(app_db_url, "ann"), keys) == [], keys  # each grade: a key on the focused result
    assert _labels(app_db_url, "ann2") == [(t, 1) for t in others1]
    seen_ann, seen_ann2 = set(titles1 + titles2 + titles3), set(others1 + others2)
    # Only the pair ann skipped went back to the queue, so only it may reach ann2 afterwards.
    assert seen_ann & seen_ann2 <= {titles1[2]}, "two annotators were shown the same pair with overlap 1"
    with session_scope(app_db_url) as s:
        per_pair = s.execute(select(LabelEvent.pair_id).join(User, User.id == LabelEvent.user_id)
                             .where(LabelEvent.kind == LabelKind.label, User.name.in_(["ann", "ann2"]))).scalars().all()
    assert len(per_pair) == len(set(per_pair))  # one vote per pair


def test_keystrokes_and_round_trips_per_label_list_against_card(page, app_url: str, app_db_url: str) -> None:  # type: ignore[no-untyped-def]
    """The same annotator grades two lists by keyboard, then as many pairs as cards; every message the browser
    sends to the server is counted (a rerun is one such message; so is anything else it sends)."""
    sent = _frames(page)
    login(page, app_url, "meas", PASSWORD)
    page.get_by_role("link", name="Annotate").click()
    page.get_by_text("A query's results as a list").click()  # the switch (not counted)
    list_id, titles = _list_on_screen(page, size=None)  # lists may be short: other tests took some pairs
    start, list_keys, labels = sent[0], 0, 0
    for _ in range(2):
        keys = [str(i % 3 + 1) for i in range(len(titles))] + ["Enter"]
        _press(page, keys)
        list_keys, labels = list_keys + len(keys), labels + len(titles)
        list_id, titles = _list_on_screen(page, not_id=list_id, size=None)
    list_frames = sent[0] - start

    page.get_by_text("One card at a time").click()  # back to cards: the third list is released (not counted)
    card = page.locator(".st-key-annotate_card")
    expect(card).to_be_visible()
    _settle(page)
    start, card_keys = sent[0], 0
    for n in range(labels):
        before = card.inner_text()
        page.keyboard.press(str(n % 3 + 1))
        card_keys += 1
        if n + 1 < labels:
            expect(card).not_to_have_text(before)
        _settle(page)
    card_frames = sent[0] - start

    assert len(_labels(app_db_url, "meas")) == 2 * labels  # every grade key counted was stored
    result = {
        "what": "keystrokes and browser-to-server WebSocket messages per label on Annotate, list mode vs card mode",
        "baseline": "card mode, same annotator, same number of labels, same run",
        "labels_each": labels, "lists": 2, "list_size": SIZE,
        "card": {"keystrokes": card_keys, "messages": card_frames,
                 "keystrokes_per_label": card_keys / labels, "messages_per_label": card_frames / labels},
        "list": {"keystrokes": list_keys, "messages": list_frames,
                 "keystrokes_per_label": list_keys / labels, "messages_per_label": list_frames / labels},
        "messages_ratio_list_over_card": list_frames / card_frames if card_frames else None,
        "keystrokes_ratio_list_over_card": list_keys / card_keys,
        "method": "Playwright + Debian Chromium, headless; frames counted with page.on('websocket') framesent; "
                  "keys pressed one by one (grades in list order, no moves), the card screen settled after each key",
        "machine": platform.platform(), "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    assert list_frames < card_frames, result  # one submit per list against one rerun per card


def test_review_shows_a_query_graded_side_by_side(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    login(page, app_url, "rita", PASSWORD)
    page.get_by_role("link", name="Review").click()
    page.get_by_test_id("stButtonGroup").get_by_text("Queries", exact=True).click()
    grid = page.locator(".st-key-review_query_list")
    expect(grid).to_contain_text("query 10 cordless drill")  # the least consistent of the two graded queries
    expect(grid).to_contain_text("Krippendorff")
    expect(page.get_by_text("Agreement per query")).to_be_visible()
    _settle(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review_queries_1400x1000.png"))
