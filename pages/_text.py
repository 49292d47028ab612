"""Showing user data (queries, titles, comments) literally inside Streamlit markdown."""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<$:])")


def md(text: str | None) -> str:
    """Escape markdown so that data never turns into bold, links, headings, badges or LaTeX."""
    return _MD_SPECIAL.sub(r"\\\1", text or "")


def md_lines(text: str | None) -> str:
    """Like ``md`` but keeps the line breaks of plain text (guidelines written as a text file)."""
    return "  \n".join(md(line) for line in (text or "").splitlines())
