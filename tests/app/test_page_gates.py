"""Every page file guards itself: run directly with nobody signed in (as Streamlit's legacy pages-folder
mode runs a deep link on a freshly started server), it shows no project data, only a login message."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.services.demo import load_demo
from db.services.users import SYSTEM
from db.session import session_scope
from tests.app.pagetest import page

PAGES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "pages").glob("[a-z]*.py"))


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> str:
    import shutil

    path = tmp_path_factory.mktemp("gates") / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    with session_scope(url) as s:
        load_demo(s, actor=SYSTEM)
    return url


@pytest.mark.parametrize("name", PAGES)
def test_a_page_run_without_a_user_shows_nothing_but_a_login_message(
        name: str, demo_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from db.session import reset_engines

    monkeypatch.setenv("DATABASE_URL", demo_url)
    monkeypatch.setenv("DARL_HOME", str(tmp_path))
    reset_engines()
    at = page(name, None).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Log in first."]
    assert not at.title and not at.metric and not at.get("plotly_chart")
    assert "demo-home-improvement" not in " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])
