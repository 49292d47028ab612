"""`demo --first-round N` (what `make run` calls): the demo project plus a queued DASA selection job, and
never the demo's published logins in a database that has real users."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from darl_app.cli import main
from darl_core.errors import ConflictError
from db.models import Job, JobStatus, Pair, Project, User
from db.services.demo import DEMO_PROJECT, DEMO_USERS, load_demo
from db.services.users import SYSTEM, authenticate
from db.session import reset_engines, session_scope

ROOT = Path(__file__).resolve().parents[2]


def demo(url: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "DARL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "darl_core", "demo", "--if-empty", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_demo_queues_the_first_round_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    first = demo(url, tmp_path, "--first-round", "25")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "queued job" in first.stdout
    again = demo(url, tmp_path, "--first-round", "25")  # not empty any more: nothing loaded, nothing queued
    assert again.returncode == 0 and "demo not loaded" in again.stdout
    reset_engines()
    with session_scope(url) as s:
        jobs = s.scalars(select(Job)).all()
        assert [(j.kind, j.status, j.params["budget"], j.params["version"]) for j in jobs] == [
            ("select", JobStatus.queued, 25, None)]
        assert s.query(Pair).count() == 3000


def test_demo_without_first_round_queues_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    assert demo(url, tmp_path).returncode == 0
    reset_engines()
    with session_scope(url) as s:
        assert s.scalars(select(Job)).all() == []


def _logins(url: str) -> set[str]:
    reset_engines()
    with session_scope(url) as s:
        return {name for name, _, password in DEMO_USERS if authenticate(s, name, password) is not None}


def test_demo_never_adds_its_published_logins_next_to_real_users(database: str, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DARL_PASSWORD", "ops-password")
    assert main(["user", "add", "ops", "--role", "admin"]) == 0
    capsys.readouterr()
    assert main(["demo", "--if-empty"]) == 0  # what `make run` calls: not empty (a user), so nothing loaded
    out = capsys.readouterr().out
    assert "demo not loaded" in out and "1 user(s) and 0 project(s)" in out
    assert _logins(database) == set()
    assert main(["demo"]) == 2  # asked without --force: refused, with the way out named
    assert "--force" in capsys.readouterr().err
    assert main(["demo", "--force"]) == 0  # the project, but still no demo account
    assert "No demo accounts were added" in capsys.readouterr().out
    assert _logins(database) == set()
    with session_scope(database) as s:
        assert s.scalar(select(Project.name)) == DEMO_PROJECT
        assert sorted(s.scalars(select(User.name))) == ["ops"]
        with pytest.raises(ConflictError, match=r"real accounts \(ops\)"):
            load_demo(s, actor=SYSTEM)
    assert main(["demo", "--print-logins"]) == 0
    assert "No demo accounts in this database" in capsys.readouterr().out


def test_demo_loads_into_an_empty_database_and_prints_its_logins(sqlite_database: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--if-empty"]) == 0
    assert "DEMO loaded" in capsys.readouterr().out
    assert _logins(sqlite_database) == {name for name, _, _ in DEMO_USERS}
    assert main(["demo", "--print-logins"]) == 0
    assert "admin  / admin-demo" in capsys.readouterr().out
