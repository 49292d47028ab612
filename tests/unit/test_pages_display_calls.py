"""Every page draws charts and tables through the display helper, and uses no deprecated Streamlit argument."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([ROOT / "app.py", *(ROOT / "pages").glob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_charts_and_tables_go_through_the_helper(path: Path) -> None:
    source = path.read_text()
    assert not re.findall(r"plotly_chart\((?!safe_figure\()", source), "wrap every figure: plotly_chart(safe_figure(fig))"
    assert not re.findall(r"st\.dataframe\((?!frame\()", source), "wrap every table: st.dataframe(frame(df))"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_use_container_width(path: Path) -> None:
    """Streamlit 1.67 logs a deprecation warning for it; width="stretch" / "content" replace it."""
    assert "use_container_width" not in path.read_text()
