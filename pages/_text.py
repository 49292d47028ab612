"""Showing untrusted text (queries, titles, comments, segment and user names, guidelines) as text.

Item titles and descriptions come from catalogues that outsiders write, so every page shows them
through this module, never raw:

- ``plain``: for places that do not render Markdown (data frames, select boxes, JSON, code): drops
  Unicode bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C: they make "gnp.exe"
  read as "exe.png" and flip the layout) and other control characters except tab and newline.
- ``md``: for Markdown (``st.markdown``/``caption``/``info``/``toast``, titles, and the labels and
  options of buttons, radios, metrics and expanders, which render Markdown too, images and links
  included): ``plain``, then every character that could start markup is escaped, so no image, link,
  badge (``:red-badge[x]``), icon, LaTeX, HTML or heading. A bare URL (``https://…``, ``www.…``, an
  e-mail address) is put in a code span: Streamlit's Markdown (remark-gfm) links bare URLs even when
  their ``:`` and ``.`` are escaped, since escapes are resolved before it looks, but never inside code.
  The same goes for ``:smile:``-style codes, which become emoji, a logo or an icon when escaped.
- ``guidelines_md``: the project's guidelines keep safe Markdown (bold, lists, tables, code), lose
  remote images, links, HTML, directives and LaTeX.
- ``html_text`` and ``safe_figure``: Plotly renders a subset of HTML in its text (``<a href>`` becomes
  a live link, ``<span style>`` restyles); ``safe_figure`` escapes every label, legend, annotation and
  hover text of a figure just before it is drawn.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# Bidi embeddings/overrides/isolates and marks, then C0/C1 controls other than tab and newline: dropped
# with one str.translate (a map of 200k points has a million hover strings).
_INVISIBLE: dict[int, str | None] = {c: None for c in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
                                                       *range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]}
_HTML: dict[int, str | None] = {**_INVISIBLE, ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}
_NEEDS_PLAIN = re.compile("[" + re.escape("".join(map(chr, _INVISIBLE))) + "\r]")
_NEEDS_HTML = re.compile("[" + re.escape("".join(map(chr, _HTML))) + "]")  # translating is slow: look first
# Escaped anywhere: emphasis, code, links/images/directives, HTML/autolinks, LaTeX, Streamlit's
# :icons:/:colour[...]:, strikethrough, tables, entities (an entity could re-create a bidi control).
_MD_ANYWHERE = re.compile(r"([\\`*_\[\]<>$:~|&])")
# Escaped at the start of a line only: headings, list items, setext underlines, numbered lists.
_MD_LINE_START = re.compile(r"^([ \t]*\d*)((?<=\d)[.)]|(?<!\d)[#+\-=])", re.MULTILINE)
# Words that render as something else even when escaped, so they go in a code span: what remark-gfm links
# on its own (a scheme, www., an e-mail address), and :codes: (remark-emoji's :smile:, Streamlit's
# :streamlit: logo and :material_x: icons), which are replaced in the text after escapes are resolved.
_LIVE_WORD = re.compile(r"://|www\.|mailto:|xmpp:|@[\w-]+\.|:[\w+-]+:", re.IGNORECASE)
_SPACE = re.compile(r"(\s+)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*(\S*)")
# ':' only where a directive, icon or emoji code could start (a table's ":---:" row stays).
_GUIDE_ESCAPE = re.compile(r"([\\\[\]<$&]|:(?=[\w/:]))")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")


def plain(text: object) -> str:
    """The text without bidi controls or control characters (tab and newline stay); None is ''."""
    if text is None:
        return ""
    text = str(text)
    if not _NEEDS_PLAIN.search(text):
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE)


def _code(token: str) -> str:
    """``token`` as an inline code span, whatever backticks it holds."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", token)), default=0) + 1)
    pad = " " if token.startswith("`") or token.endswith("`") else ""
    return f"{fence}{pad}{token}{pad}{fence}"


def _escape_words(text: str, escape: re.Pattern[str]) -> str:
    """Escape with ``escape``; a whitespace-separated word that looks like a URL or icon becomes code.

    Streamlit rewrites ":material/" to ":material_" in the source before parsing (escaped or not), so its
    '/' is escaped too: "\\:material\\/home\\:" shows as typed, "\\:material/home\\:" as an icon."""
    return "".join(_code(part) if _LIVE_WORD.search(part)
                   else escape.sub(r"\\\1", part).replace(":material/", ":material\\/")
                   for part in _SPACE.split(text))


def md(text: object) -> str:
    """Untrusted text as Markdown that shows it literally: no markup, link, image, badge or LaTeX."""
    return _MD_LINE_START.sub(r"\1\\\2", _escape_words(plain(text), _MD_ANYWHERE))


def _guideline_line(line: str) -> str:
    """One guidelines line: code spans kept, everything else escaped where it could load or link."""
    out, last = [], 0
    for m in _CODE_SPAN.finditer(line):
        out += [_escape_words(line[last:m.start()], _GUIDE_ESCAPE), m.group(0)]
        last = m.end()
    return "".join(out) + _escape_words(line[last:], _GUIDE_ESCAPE)


def guidelines_md(text: object) -> str:
    """Project guidelines as safe Markdown.

    Bold, italics, lists, tables and code render (the engineers write them); images, links, reference
    definitions, HTML, directives, emoji/icon codes and LaTeX do not (``[ ] < : $ &`` escaped, bare URLs
    in code), so the guidelines panel never requests anything from another host. Plain-text guidelines
    of short lines keep their line breaks, and headings become bold lines: the panel is a narrow column.
    """
    lines: list[tuple[str, bool]] = []  # (line, is prose)
    fence = ""
    for line in plain(text).splitlines():
        opening = _FENCE.match(line)
        if fence:  # inside a fenced block: shown as code, never rendered
            fence = "" if opening and opening.group(1).startswith(fence) and not opening.group(2) else fence
            lines.append((line, False))
        elif opening:
            fence = opening.group(1)
            # A ```math block would be typeset by KaTeX: show it as plain code instead.
            lines.append((line[:opening.start(2)] + ("text" if opening.group(2) else ""), False))
        else:
            lines.append((_HEADING.sub(r"**\1**", _guideline_line(line)),
                          bool(line.strip()) and not line.lstrip().startswith("|")))
    return "\n".join(line + "  " if prose and i + 1 < len(lines) and lines[i + 1][1] else line
                     for i, (line, prose) in enumerate(lines))


def html_text(text: object) -> str:
    """Text for Plotly, which renders ``<a>``, ``<span style>``, ``<b>``... in labels: escaped, no bidi."""
    text = "" if text is None else str(text)
    return text.translate(_HTML) if _NEEDS_HTML.search(text) else text


def frame(df: pd.DataFrame) -> pd.DataFrame:
    """A data frame for ``st.dataframe``: text cells and column names without bidi or control characters.

    Data frames draw cells as text (no Markdown or HTML), so only the invisible characters need to go."""
    out = df.rename(columns=lambda c: plain(c) if isinstance(c, str) else c)
    for col in out.columns:
        if pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: plain(v) if isinstance(v, str) else v)
    return out


# Tags our own hover templates use; anything else in a template (px copies category values into it) is escaped.
_OWN_TAG = re.compile(r"(%\{[^}]*\}|<br>|<b>|</b>|<extra>|</extra>)")


def _template(text: str) -> str:
    return "".join(part if _OWN_TAG.fullmatch(part) else html_text(part) for part in _OWN_TAG.split(text))


def _values(values: Any) -> Any:
    """Strings (alone, or in a list/array of any shape) escaped for Plotly; numbers and dates untouched."""
    if values is None or isinstance(values, (int, float, bool)):
        return values
    if isinstance(values, str):
        return html_text(values)
    arr = np.asarray(values, dtype=object) if isinstance(values, (list, tuple)) else np.asarray(values)
    if arr.dtype.kind not in "OUS":
        return values
    flat = arr.ravel().tolist()
    if not any(isinstance(v, str) for v in flat):
        return values
    out = np.empty(len(flat), dtype=object)
    flat = [html_text(v) if isinstance(v, str) else v for v in flat]
    out[:] = flat
    return out.reshape(arr.shape)


_TRACE_TEXT = ("x", "y", "text", "hovertext", "customdata", "labels", "name", "legendgroup")
_TITLED = ("title", "legendgrouptitle")


def safe_figure(fig: go.Figure) -> go.Figure:
    """Escape every text a user's data can reach in ``fig`` (apply once, just before drawing)."""
    for trace in fig.data:
        for prop in _TRACE_TEXT:
            if prop in trace and trace[prop] is not None:
                trace[prop] = _values(trace[prop])
        for prop in ("hovertemplate", "texttemplate"):
            if prop in trace and isinstance(trace[prop], str):
                trace[prop] = _template(trace[prop])
        for prop in _TITLED:
            if prop in trace and trace[prop].text:
                trace[prop].text = html_text(trace[prop].text)
    layout = fig.layout
    if layout.title.text:
        layout.title.text = html_text(layout.title.text)
    if layout.legend.title.text:
        layout.legend.title.text = html_text(layout.legend.title.text)
    for ann in layout.annotations:
        ann.text = html_text(ann.text)

    def axis(ax: Any) -> None:
        if ax.title.text:
            ax.title.text = html_text(ax.title.text)
        for prop in ("categoryarray", "ticktext"):
            if ax[prop] is not None:
                ax[prop] = _values(ax[prop])

    fig.for_each_xaxis(axis)
    fig.for_each_yaxis(axis)
    return fig
