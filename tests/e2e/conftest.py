"""Browser tests: a real ``streamlit run scripts/serve.py`` (app.py plus the session-cookie route) on a free loopback port against a fresh, seeded SQLite
database, driven by Playwright with Debian's Chromium (flags from METHOD.md).

Reusable pieces (import ``login`` / ``ARTIFACTS`` from here; fixtures are picked up automatically):
- ``seed``: module-scoped fixture returning ``callable(database_url)``; override it in a test module to
  seed other data (the default gives a small project and one user per role, password ``PASSWORD``);
- ``app_db_url`` / ``app_url``: the database and the base URL of the running app (one server per module);
- ``app_home``: the app's ``DARL_HOME`` (a worker started by a test must share it: queue, checkpoints, maps);
- ``app_env``: module-scoped hook, extra environment for the app (e.g. ``DARL_MODEL``); default none;
- ``browser`` (session) and ``page`` (a fresh context per test);
- ``login(page, app_url, name, password)``: log in through the form and wait for the navigation.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_IMG = ROOT / "docs" / "img"  # the README's screenshots: the e2e tests that reach those screens rewrite them
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GUIDELINES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "homedepot" / "guidelines.txt"
USERS = {"ann": "annotator", "rita": "reviewer", "eve": "engineer", "root": "admin"}

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_seed(url: str) -> None:
    """A 20-pair project with real raters' guidelines and one user per role."""
    from db.session import session_scope
    from tests.seed import seed_project, seed_user

    guidelines = GUIDELINES.read_text() if GUIDELINES.exists() else "Grade how well the product matches the query."
    with session_scope(url) as s:
        seed_project(s, "demo", n_pairs=20, guidelines=guidelines)
        for name, role in USERS.items():
            seed_user(s, name, role)


@pytest.fixture(scope="module")
def seed() -> Callable[[str], None]:
    return default_seed


@pytest.fixture(scope="module")
def app_db_url(seed: Callable[[str], None], sqlite_template_module: Path, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("e2e") / "app.sqlite3"
    shutil.copyfile(sqlite_template_module, path)
    url = f"sqlite:///{path}"
    seed(url)
    from db.session import reset_engines

    reset_engines()
    return url


@pytest.fixture(scope="module")
def sqlite_template_module(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue("sqlite_template")


@pytest.fixture(scope="module")
def app_home(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("e2e_home")


@pytest.fixture(scope="module")
def app_env() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def app_url(app_db_url: str, app_home: Path, app_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    home = app_home
    env = {**os.environ, **app_env, "DATABASE_URL": app_db_url, "DARL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    log = open(home / "streamlit.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "scripts/serve.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start: {(home / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait as long as actions do: on a loaded 2-core machine a Streamlit rerun can take more
    # than expect's default 5 s (the login helper timed out there while the app was fine).
    expect.set_options(timeout=20_000)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    yield pg
    context.close()


def login(page, app_url: str, name: str, password: str, path: str = "") -> None:  # type: ignore[no-untyped-def]
    """Open ``app_url/path`` and log in through the form; returns once the sidebar says who is signed in.

    A login sets the HttpOnly session cookie (pages/_session.py), so within the same browser context a
    reload or a typed URL stays signed in; each test's ``page`` is a fresh context, signed out, and a
    second login in the same context logs the first user out first.
    """
    from playwright.sync_api import expect

    page.goto(f"{app_url}/{path}")
    form = page.get_by_role("textbox", name="User name")
    signed_in = page.get_by_role("button", name="Log out")
    expect(form.or_(signed_in)).to_be_attached()
    if signed_in.count() and not form.count():  # still signed in from an earlier login in this context
        signed_in.click()
        expect(form).to_be_attached()  # the logout ran on the server before the page is left
        page.goto(f"{app_url}/{path}")
        expect(form).to_be_attached()
    page.wait_for_timeout(300)
    not_found = page.get_by_role("dialog", name="Page not found")
    if not_found.count():  # a deep link to a page the login screen does not have: dismiss, then log in
        not_found.get_by_role("button", name="Close").click()
    form.fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()


def readme_shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Save what the window shows as the README's ``docs/img/<name>`` (a run that changes a screen changes
    its picture; commit it with the change)."""
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / name))
