"""The grade table of a project's guidelines: for each grade, in the order of the grading buttons, the name
the guidelines use for it and their rules ("Choose Perfect match if: ...").

Guidelines are free text written by the project's engineers, often copied from a rater manual that lists
the grades best first. Three common shapes are recognised: a rating list ("Irrelevant (1)") that ties a
guideline name to a button number, rule blocks ("Choose <name> if:" followed by one rule per line), and a
Markdown table whose first cell names a grade and whose second cell is its rule (``| **weak** | ... |``).
A grade whose rules cannot be found gets an empty rule list; nothing is guessed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

_RATING = re.compile(r"^\s*(?P<name>[A-Za-z][^()]{0,60}?)\s*\((?P<n>\d{1,2})\)\s*$")
_CHOOSE = re.compile(r"^\s*choose\s+(?P<name>.+?)\s+if\s*:?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class GradeRow:
    key: str  # the keyboard key of its button ("" past 9)
    grade: str  # the project's grade name (the button label)
    name: str | None  # what the guidelines call it, when they say
    rules: tuple[str, ...]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", " ", text.split(":")[0].lower()).strip()


def _same(a: str, b: str) -> bool:
    a, b = _norm(a), _norm(b)
    return bool(a and b) and (a.startswith(b) or b.startswith(a) or a.split()[0] == b.split()[0])


def _blocks(lines: Sequence[str]) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in lines:
        m = _CHOOSE.match(line)
        if m:
            current = []
            out.append((m.group("name").strip(), current))
        elif current is not None:
            text = html.unescape(line).replace("\xa0", " ").strip()
            if not text or text.endswith(":"):  # a blank line or the next heading ("Do Not:") ends a block
                current = None
            else:
                current.append(text)
    return out


def _table_rows(lines: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``| name | rule |`` rows of a Markdown table, emphasis marks dropped (the header and rule rows
    simply name no grade)."""
    out = []
    for line in lines:
        cells = [re.sub(r"[*_`]", "", c).strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2 and cells[0] and cells[1]:
            out.append((cells[0], [html.unescape(cells[1])]))
    return out


def grade_table(guidelines: str | None, grades: Sequence[str]) -> list[GradeRow]:
    """One row per grade, in button order, with the guidelines' name and rules for it where found."""
    lines = (guidelines or "").splitlines()
    names: dict[int, str] = {}
    for line in lines:
        m = _RATING.match(line)
        if m and 1 <= int(m.group("n")) <= len(grades):
            names.setdefault(int(m.group("n")) - 1, m.group("name").strip())
    rules: dict[int, tuple[str, list[str]]] = {}
    for label, block in _blocks(lines) + _table_rows(lines):
        index = next((i for i, n in names.items() if _same(label, n)), None)
        if index is None:
            index = next((i for i, g in enumerate(grades) if _same(label, g)), None)
        if index is not None and index not in rules:
            rules[index] = (label, block)
    return [GradeRow(key=str(i + 1) if i < 9 else "", grade=g,
                     name=names.get(i) or (rules[i][0] if i in rules else None),
                     rules=tuple(rules[i][1]) if i in rules else ())
            for i, g in enumerate(grades)]
