"""Attack strings for untrusted text, and a check of what Markdown would make of a string.

``live_markup`` parses Markdown with markdown-it (CommonMark + GFM tables and strikethrough, the
dialect Streamlit's remark-gfm speaks) and adds what remark-gfm, remark-math and remark-directive do
on top: a bare URL or e-mail address in text is a link, ``$..$`` is LaTeX, ``:name[..]`` a directive.
Streamlit adds two quirks, also checked: ":material/" is rewritten to ":material_" in the source before
parsing (escaped or not), and ``:code:`` words in the text become emoji, logo or icon after escapes are
resolved. The browser test (tests/e2e/test_untrusted_text_e2e.py) checks the real renderer.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import Item, LabelEvent, LabelKind, Pair, Query, Role, User
from tests.seed import pair_ids, seed_project, seed_round, seed_user

ATTACKS: dict[str, str] = {
    "bidi": "invoice \u202egnp.exe",
    "image": "![x](https://evil.example/a.png)",
    "link": "[click me](https://evil.example/l)",
    "reference image": "![x][r]\n\n[r]: https://evil.example/r.png",
    "badge": ":red-badge[x]",
    "icon": ":material/home:",
    "icon code": ":material_home:",
    "logo": ":streamlit:",
    "emoji": ":smile:",
    "latex": "$x^2$",
    "html image": '<img src="https://evil.example/i.png">',
    "html link": '<a href="https://evil.example/h">here</a>',
    "style": '<span style="color:red">styled</span>',
    "autolink": "<https://evil.example/auto>",
    "bare url": "see https://evil.example/x now",
    "bare www": "or www.example.com.",
    "email": "mail bob@evil.example",
    "heading": "# big\n===",
    "entity": "&#x202E;gnp.exe &lt;b&gt;",
}
TEXTS = list(ATTACKS.values())
SEGMENTS = (ATTACKS["html link"], ATTACKS["style"], "tools \u202eloot")
GUIDELINES = "**Grade** the title.\n\n" + "\n".join(f"- {t}" for t in TEXTS)
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_BARE_URL = re.compile(r"(https?://|www\.)[-.\w]+|[-.\w+]+@[-\w]+\.[-\w]+", re.IGNORECASE)
# LaTeX and directives are syntax (an escape defeats them), so they are looked for in the source, outside
# code spans, where the `$` or `:` is not escaped (preceded by an even number of backslashes).
_UNESCAPED = r"(?<!\\)(?:\\\\)*"
_MATH = re.compile(_UNESCAPED + r"\$[^$\s][^$]*" + _UNESCAPED + r"\$")
_DIRECTIVE = re.compile(_UNESCAPED + r":[a-z][\w-]*(\[|/|:)", re.IGNORECASE)
_CODE_SPAN = re.compile(r"(`+).+?\1")
_SHORTCODE = re.compile(r":[\w+-]+:")


_STRUCTURE = ("heading_open", "bullet_list_open", "ordered_list_open", "blockquote_open", "hr", "table_open")


def live_markup(markdown: str, structure: bool = True) -> list[str]:
    """Everything in ``markdown`` that would render as something other than text (empty: all text).

    With ``structure=False`` headings, lists, tables and quotes are allowed (guidelines keep them);
    links, images, HTML, bare URLs, LaTeX, directives and bidi controls never are."""
    found: list[str] = []
    for token in _PARSER.parse(markdown):
        if token.type.startswith("html") or structure and token.type in _STRUCTURE:
            found.append(f"{token.type}: {token.content or token.markup}")
        for child in token.children or []:
            if child.type in ("link_open", "image", "html_inline"):
                found.append(f"{child.type}: {child.attrs or child.content}")
            elif child.type == "text":
                found += [f"bare url: {m.group(0)}" for m in _BARE_URL.finditer(child.content)]
                found += [f"emoji or icon code: {m.group(0)}" for m in _SHORTCODE.finditer(child.content)]
        found += [f"bidi control in {token.type}" for ch in BIDI if ch in (token.content or "")]
    source = _CODE_SPAN.sub("", markdown)
    found += [f"{kind}: {m.group(0)}" for kind, pattern in (("latex", _MATH), ("directive", _DIRECTIVE))
              for m in pattern.finditer(source)]
    found += ["material icon: ':material/' in the source"] * (":material/" in source)
    return found


def shown_text(markdown: str) -> str:
    """The text a reader sees when ``markdown`` renders (inline text and code, breaks as newlines)."""
    parts: list[str] = []
    for token in _PARSER.parse(markdown):
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append("\n")
        if token.type == "paragraph_close":
            parts.append("\n")
    return "".join(parts).strip()


def seed_untrusted(session: Session, n_pairs: int) -> dict[str, User]:
    """Project "catalogue": queries, titles (``<attack> item i``), descriptions (every attack), segment
    names and guidelines carry the attacks; ann and bob disagree on the first 3 pairs (ann flags them with
    a hostile comment) for rita to review; the other pairs are an open round for annotators."""
    project = seed_project(session, "catalogue", n_pairs=n_pairs, guidelines=GUIDELINES, segments=SEGMENTS)
    ids = pair_ids(session, project.id)
    for i, pid in enumerate(ids):
        pair = session.get(Pair, pid)
        session.execute(update(Query).where(Query.id == pair.query_id).values(text=TEXTS[i % len(TEXTS)]))
        session.execute(update(Item).where(Item.id == pair.item_id).values(
            title=f"{TEXTS[(i + 5) % len(TEXTS)]} item {i}", text=" ".join(TEXTS)))
    users = {n: seed_user(session, n, r) for n, r in
             [("ann", Role.annotator), ("bob", Role.annotator), ("rita", Role.reviewer)]}
    for pid in ids[:3]:
        session.add_all([LabelEvent(pair_id=pid, user_id=users["ann"].id, kind=LabelKind.label, grade=0,
                                    flagged=True, comment=ATTACKS["bidi"] + " " + ATTACKS["image"]),
                         LabelEvent(pair_id=pid, user_id=users["bob"].id, kind=LabelKind.label, grade=2)])
    seed_round(session, project.id, ids[3:])
    return users
