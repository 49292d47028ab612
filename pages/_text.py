"""Showing user data (queries, titles, comments) literally inside Streamlit markdown."""

from __future__ import annotations

import re

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<$:])")


def md(text: str | None) -> str:
    """Escape markdown so that data never turns into bold, links, headings, badges or LaTeX."""
    return _MD_SPECIAL.sub(r"\\\1", text or "")


def guidelines_md(text: str | None) -> str:
    """Project guidelines as Markdown: they are written by the project's engineers (headings, bold and
    tables should render), but plain-text guidelines of short lines keep their line breaks, and a price
    such as "$5" never turns into LaTeX. Headings become bold lines: the panel is a narrow side column."""
    lines = [_HEADING.sub(r"**\1**", line) for line in (text or "").replace("$", "\\$").splitlines()]

    def prose(line: str) -> bool:
        return bool(line.strip()) and not line.lstrip().startswith("|")

    return "\n".join(line + "  " if prose(line) and i + 1 < len(lines) and prose(lines[i + 1]) else line
                     for i, line in enumerate(lines))
