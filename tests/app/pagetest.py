"""AppTest helpers: run one page file as a logged-in user."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def page(name: str, user_id: int | None) -> AppTest:
    """An AppTest of ``pages/<name>.py`` with ``user_id`` logged in (None: nobody); not yet run."""
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=30)
    if user_id is not None:
        at.session_state["user_id"] = user_id
    return at
