"""Guidelines panel text: Markdown renders, plain-text line breaks survive, no accidental LaTeX."""

from __future__ import annotations

from pages._text import guidelines_md, md


def test_markdown_guidelines_render_and_headings_shrink_to_bold() -> None:
    out = guidelines_md("# Rate the result\n\nGrade the **title**.\n\n| grade | when |\n|---|---|\n| weak | close |")
    lines = out.splitlines()
    assert lines[0] == "**Rate the result**"
    assert "**title**" in out and "\\*" not in out  # not escaped: the project's own Markdown
    assert lines[-3:] == ["| grade | when |", "|---|---|", "| weak | close |"]  # table rows untouched


def test_plain_text_guidelines_keep_their_line_breaks() -> None:
    out = guidelines_md("Overview\nIn this task, judge the match.\n\nIrrelevant (1)\nPerfect match (3)")
    assert out == "Overview  \nIn this task, judge the match.\n\nIrrelevant (1)  \nPerfect match (3)"


def test_dollars_do_not_become_latex_while_card_data_stays_literal() -> None:
    assert guidelines_md("Under $5 and over $10 is fine") == "Under \\$5 and over \\$10 is fine"
    assert md("**bold** $x$") == "\\*\\*bold\\*\\* \\$x\\$"
