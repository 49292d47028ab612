"""The display helper (pages/_text.py): untrusted text shows as text in Markdown and in Plotly."""

from __future__ import annotations

import json

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pytest

from pages._text import frame, guidelines_md, html_text, md, plain, safe_figure
from tests.untrusted import ATTACKS, BIDI, live_markup, shown_text


@pytest.mark.parametrize("ch", list(BIDI))
def test_every_bidi_control_is_dropped(ch: str) -> None:
    text = f"invoice {ch}gnp.exe"
    assert plain(text) == "invoice gnp.exe"
    assert ch not in md(text) and ch not in guidelines_md(text) and ch not in html_text(text)


@pytest.mark.parametrize("ch", [chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), *range(127, 160)]])
def test_control_characters_are_dropped_but_tab_and_newline_stay(ch: str) -> None:
    assert plain(f"a{ch}b\tc\nd") == "a" + "b\tc\nd"


def test_carriage_returns_become_newlines() -> None:
    assert plain("a\r\nb\rc") == "a\nb\nc"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_markdown_shows_each_attack_as_text(name: str) -> None:
    text = ATTACKS[name]
    out = md(text)
    assert live_markup(out) == [], out
    # What the reader sees is exactly the text (bidi controls aside), nothing more, nothing less.
    assert shown_text(out).split() == plain(text).split()


@pytest.mark.parametrize(("text", "escaped"), [
    ("![x](https://evil.example/a.png)", "`![x](https://evil.example/a.png)`"),
    ("[click me](https://evil.example/l)", "\\[click `me](https://evil.example/l)`"),
    (":red-badge[x]", "\\:red-badge\\[x\\]"),
    ("$x^2$", "\\$x^2\\$"),
    ('<img src="https://evil.example/i.png">', '\\<img `src="https://evil.example/i.png">`'),
    ("see https://evil.example/x now", "see `https://evil.example/x` now"),
    ("www.example.com", "`www.example.com`"),
    ("invoice \u202egnp.exe", "invoice gnp.exe"),
    (":material/home: icon", "\\:material\\/home\\: icon"),  # Streamlit rewrites ":material/" before parsing
    (":smile: :streamlit:", "`:smile:` `:streamlit:`"),  # codes turn into emoji/logo even when escaped
    ("a `tick` https://x.example/`y`", "a \\`tick\\` `` https://x.example/`y` ``"),
])
def test_markdown_escaped_forms(text: str, escaped: str) -> None:
    assert md(text) == escaped


def test_plain_text_stays_readable() -> None:
    """Only what could start markup is escaped: names and dates read as they are in the source."""
    assert md("demo-home-improvement 2024-01-01 (v1.2)") == "demo-home-improvement 2024-01-01 (v1.2)"
    assert md("- a\n1. b\n# c") == "\\- a\n1\\. b\n\\# c"


def test_guidelines_keep_safe_markdown_but_load_nothing() -> None:
    text = ("# Grades\n| grade | when |\n|:--|--:|\n| **strong** | exact |\n- see ![i](https://evil.example/i.png)\n"
            "- [docs](https://evil.example/d) or https://evil.example/x\n:red-badge[x] $5 <img src=x> &#x202E;\n"
            "![r][ref]\n\n[ref]: https://evil.example/r.png\n```math\n\\href{https://evil.example}{x}\n```")
    out = guidelines_md(text)
    assert live_markup(out, structure=False) == [], out
    assert "**Grades**" in out and "| **strong** | exact |" in out and "|:--|--:|" in out
    assert "- see `![i](https://evil.example/i.png)`" in out
    assert "```text" in out and "```math" not in out  # a math fence would be typeset by KaTeX


def test_plotly_labels_legends_annotations_and_hover_are_escaped() -> None:
    seg = ATTACKS["html link"]
    style = ATTACKS["style"]
    df = pd.DataFrame({"segment": [seg, style, "plain\u202e"], "pairs": [1, 2, 3]})
    fig = px.bar(df, x="segment", y="pairs", color="segment", category_orders={"segment": list(df["segment"])},
                 title=seg)
    fig.add_annotation(x=0, y=1, text=style)
    scatter = px.scatter(df.assign(x=[1, 2, 3]), x="x", y="pairs", color="segment")  # px copies names into hover
    heat = go.Figure(go.Heatmap(z=[[1, 2]], x=[seg, "b"], y=[style], hovertemplate="<b>%{x}</b><br>%{y}<extra></extra>"))
    custom = go.Figure(go.Scattergl(x=[1.0], y=[2.0], customdata=[[seg, 3]], hovertemplate="<b>%{customdata[0]}</b>"))
    for f in (fig, scatter, heat, custom):
        spec = json.dumps(safe_figure(f).to_plotly_json(), default=str)
        assert "<a" not in spec and "<span" not in spec and "\u202e" not in spec, spec
        assert "&lt;a href=" in spec
    assert safe_figure(go.Figure(go.Bar(x=[1, 2], y=[3, 4]))).data[0].x == (1, 2)  # numbers untouched
    assert heat.data[0].hovertemplate == "<b>%{x}</b><br>%{y}<extra></extra>"  # our own tags stay


def test_data_frames_lose_bidi_controls() -> None:
    out = frame(pd.DataFrame({"name\u202e": ["a\u2066b", None], "n": [1, 2]}))
    assert list(out.columns) == ["name", "n"] and out["name"][0] == "ab" and out["n"].tolist() == [1, 2]
