"""AppTest: the login gate and the Overview page on the demo project."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from db.services.demo import load_demo
from db.services.users import SYSTEM
from db.session import session_scope

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_db(sqlite_database: str) -> str:
    with session_scope() as s:
        load_demo(s, actor=SYSTEM)
    return sqlite_database


@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run app.py as scripts/serve.py serves it. AppTest resets Streamlit's legacy pages-folder flag before
    every run, so a rerun would run the previous run's page file directly, past app.py's login gate;
    the server pins the flag off (scripts/serve.py), and so does this fixture."""
    import streamlit.testing.v1.app_test as app_test
    from streamlit.runtime.pages_manager import PagesManager

    class Pinned(PagesManager):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", Pinned)


def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def test_wrong_password_is_refused(demo_db: str) -> None:
    at = app().run()
    at.text_input(key="login_name").input("alice")
    at.text_input(key="login_password").input("not-her-password")
    at.button[0].click().run()
    assert not at.exception
    assert any("wrong password" in e.value for e in at.error)
    assert "user_id" not in at.session_state


def test_login_then_overview_shows_project_statistics(demo_db: str) -> None:
    at = app().run()
    at.text_input(key="login_name").input("alice")
    at.text_input(key="login_password").input("alice-demo")
    at.button[0].click().run()
    assert not at.exception
    assert "user_id" in at.session_state
    assert at.title[0].value == "demo-home-improvement"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairs"] == "3,000"
    assert metrics["Annotators"] == "2"
    assert int(metrics["Labelled"].replace(",", "")) > 2000
    assert len(at.get("plotly_chart")) >= 2


def test_logout_clears_the_session(demo_db: str) -> None:
    at = app().run()
    at.text_input(key="login_name").input("erin")
    at.text_input(key="login_password").input("erin-demo")
    at.button[0].click().run()
    at.button(key="logout").click().run()
    assert not at.exception
    assert "user_id" not in at.session_state
    assert not [b for b in at.sidebar.button if b.key == "logout"]
