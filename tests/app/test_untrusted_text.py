"""AppTest: imported text that tries to be markup (images, links, badges, LaTeX, HTML, bidi controls, bare
URLs) reaches Review, Annotate and Overview only in its escaped form, charts included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db.models import LabelEvent, Role
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import seed_project, seed_user
from tests.untrusted import ATTACKS, BIDI, live_markup, seed_untrusted

OWN_BADGE = ":red-badge[flagged]"  # the review card's own flag badge, not data


@pytest.fixture
def people(sqlite_database: str) -> dict[str, int]:
    with session_scope(sqlite_database) as s:
        return {n: u.id for n, u in seed_untrusted(s, n_pairs=6).items()}


def shown_markdown(at: AppTest) -> list[str]:
    """Every string the page hands Streamlit's Markdown renderer (bodies, and labels that render Markdown)."""
    bodies = [e.value for kind in ("markdown", "caption", "title", "subheader", "info", "success", "warning",
                                   "error", "toast") for e in getattr(at, kind)]
    labels = [e.label for kind in ("button", "metric", "expander") for e in getattr(at, kind)]
    return [str(text).replace(OWN_BADGE, "") for text in bodies + labels]


def assert_all_text(at: AppTest) -> None:
    assert not at.exception
    for text in shown_markdown(at):
        assert live_markup(text, structure=False) == [], text


def strings(spec: Any) -> list[str]:
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, dict):
        return [s for v in spec.values() for s in strings(v)]
    if isinstance(spec, list):
        return [s for v in spec for s in strings(v)]
    return []


def chart_strings(at: AppTest) -> list[str]:
    return [s for chart in at.get("plotly_chart") for s in strings(json.loads(chart.proto.spec))]


def test_review_shows_titles_texts_and_comments_as_text(people: dict[str, int]) -> None:
    at = page("review", people["rita"]).run()
    assert_all_text(at)
    shown = "\n".join(shown_markdown(at))
    assert "`![x](https://evil.example/a.png)`" in shown  # the description's image, escaped
    assert "see `https://evil.example/x` now" in shown and "\\:red-badge\\[x\\]" in shown and "\\$x^2\\$" in shown
    votes = next(d.value for d in at.dataframe if "comment" in d.value.columns)  # the selected pair's votes
    assert "invoice gnp.exe" in votes["comment"].iloc[0] and not any(c in votes.to_string() for c in BIDI)


def test_review_agreement_charts_escape_segment_names(people: dict[str, int]) -> None:
    at = page("review", people["rita"]).run()
    at.segmented_control(key="review_view").set_value("Agreement").run()
    assert not at.exception and at.get("plotly_chart")
    texts = chart_strings(at)
    assert not [t for t in texts if "<a " in t or "<span" in t or any(c in t for c in BIDI)]


def test_overview_escapes_names_charts_tables_and_guidelines(people: dict[str, int]) -> None:
    at = page("overview", people["ann"]).run()
    assert_all_text(at)
    texts = chart_strings(at)
    assert any("&lt;a href=" in t for t in texts) and any("&lt;span style=" in t for t in texts)
    assert not [t for t in texts if "<a " in t or "<span" in t or any(c in t for c in BIDI)]
    segments = at.dataframe[0].value["segment"].tolist()
    assert "tools loot" in segments and ATTACKS["html link"] in segments  # a table cell is text: shown as is
    guidelines = at.expander[0].markdown[0].value
    assert "**Grade**" in guidelines and "- `![x](https://evil.example/a.png)`" in guidelines


def test_annotate_card_and_guidelines_show_text(people: dict[str, int]) -> None:
    at = page("annotate", people["ann"]).run()
    assert_all_text(at)
    shown = "\n".join(shown_markdown(at))
    assert "invoice gnp.exe" in shown and "`www.example.com.`" in shown and "\u202e" not in shown


def test_overview_shares_are_not_deltas_and_days_are_whole(people: dict[str, int], sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        assert s.scalars(select(LabelEvent)).first() is not None  # all votes fall on today
    at = page("overview", people["ann"]).run()
    assert not at.exception
    labelled = next(m for m in at.metric if m.label == "Labelled")
    assert not labelled.proto.delta  # "50% of pairs" is a share, not a green increase
    assert any("of pairs" in c.value for c in at.caption)
    activity = json.loads(at.get("plotly_chart")[-1].proto.spec)["layout"]["xaxis"]
    assert activity["type"] == "date" and activity["dtick"] == 86_400_000 and activity["tickformat"] == "%Y-%m-%d"


@pytest.mark.parametrize("name", ["review", "export", "users"])
def test_pages_have_a_title(name: str, sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        seed_project(s, n_pairs=2)
        admin = seed_user(s, "root", Role.admin)
    at = page(name, admin.id).run()
    assert not at.exception
    assert at.title and at.title[0].value == name.capitalize()
