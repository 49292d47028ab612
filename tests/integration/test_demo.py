"""`demo --first-round N` (what `make run` calls): the demo project plus a queued DASA selection job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from db.models import Job, JobStatus, Pair
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
