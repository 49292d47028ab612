"""In a real browser: catalogue text that tries to be markup (Markdown images and links, badges, LaTeX,
HTML, bare URLs, bidi controls; HTML in segment names for Plotly) is shown as text on Review (reviewer),
Annotate and Overview (annotator): no remote image, no link out of the app, no injected style, no bidi
control on screen, and not one request to another host."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from db.session import session_scope
from tests.e2e.conftest import login
from tests.seed import PASSWORD
from tests.untrusted import ATTACKS, BIDI, TEXTS, seed_untrusted

pytestmark = pytest.mark.e2e

INJECTED_STYLE = re.compile(r"(color|fill)\s*:\s*red", re.IGNORECASE)


@pytest.fixture(scope="module")
def seed() -> Callable[[str], None]:
    def run(url: str) -> None:
        with session_scope(url) as s:
            seed_untrusted(s, n_pairs=9)
    return run


def _check_page(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    """Nothing on the page loads, links or styles from the data, and no bidi control is displayed."""
    origin = urlsplit(app_url).netloc
    images = page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src') || '')")
    links = page.eval_on_selector_all(  # HTML and SVG (Plotly) links alike
        "a", "els => els.map(e => e.getAttribute('href') || e.getAttribute('xlink:href') || '#')")
    styles = page.eval_on_selector_all("[style]", "els => els.map(e => e.getAttribute('style'))")
    text = page.evaluate("document.body.textContent")
    problems = {
        "remote images": [s for s in images if urlsplit(s).netloc not in ("", origin)],
        "links out of the app": [h for h in links if urlsplit(h).netloc not in ("", origin)],
        "injected styles": [s for s in styles if INJECTED_STYLE.search(s)],
        "bidi controls": [hex(ord(c)) for c in BIDI if c in text],
    }
    assert not any(problems.values()), f"{page.url}: {problems}"
    assert "invoice gnp.exe" in page.evaluate("document.body.innerText")


def test_untrusted_text_is_shown_as_text(page, app_url: str) -> None:  # type: ignore[no-untyped-def]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))

    login(page, app_url, "rita", PASSWORD)
    page.get_by_role("link", name="Review").click()
    expect(page.get_by_text("wait for adjudication")).to_be_visible()
    expect(page.locator("[class*='st-key-review_item_'] [data-testid=stDataFrame]").first).to_be_visible()
    page.wait_for_timeout(1000)  # an image the page asked for would have been requested by now
    _check_page(page, app_url)
    expect(page.get_by_text("https://evil.example/a.png").first).to_be_visible()  # shown, as text

    login(page, app_url, "ann", PASSWORD)  # lands on Overview
    expect(page.locator(".js-plotly-plot .xtick text").first).to_be_attached()
    page.get_by_text("Guidelines", exact=True).click()
    expect(page.get_by_text("Grade", exact=True).first).to_be_visible()
    page.wait_for_timeout(1000)
    _check_page(page, app_url)
    expect(page.locator(".js-plotly-plot").get_by_text(ATTACKS["html link"]).first).to_be_attached()  # as text

    page.get_by_role("link", name="Annotate").click()
    expect(page.locator(".st-key-annotate_grades button")).to_have_count(3)
    expect(page.locator(".st-key-annotate_card")).to_contain_text("item 3")
    page.wait_for_timeout(1000)
    _check_page(page, app_url)
    # The description is every attack string, and it reads exactly so: no icon, emoji, badge or LaTeX.
    card = " ".join(page.locator(".st-key-annotate_card").inner_text().split())
    written = "".join(c for c in " ".join(TEXTS) if c not in BIDI)
    assert " ".join(written.split()) in card, card

    outside = sorted({u for u in requests if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                      and urlsplit(u).netloc != urlsplit(app_url).netloc})
    assert outside == [], outside
