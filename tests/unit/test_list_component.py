"""The list-mode component's browser script (pages/_assets/query_list.js) shows data only as text."""

from __future__ import annotations

import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "pages" / "_assets" / "query_list.js"


def test_the_list_script_never_writes_markup() -> None:
    js = SCRIPT.read_text()
    assert "textContent" in js  # query, titles and texts are set as text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, f"{SCRIPT.name} uses {sink}: untrusted text must be set with textContent"
    assert not re.search(r"\bhref\s*=", js)  # no links built from data
