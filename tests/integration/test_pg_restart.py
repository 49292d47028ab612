"""Stopping and restarting PostgreSQL mid-run: a clear error in the app, no partial writes, and work
continues after the restart.

The server stopped here is a private PostgreSQL instance (initdb in a temp dir, its own port), not the
shared one that ``make test`` starts, so that other tests running against that one are not disturbed.
It is a real server stop (``pg_ctl stop -m fast``: open sessions are terminated, open transactions
rolled back) and a real restart.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from darl_core.errors import DatabaseUnavailableError
from db.models import LabelEvent, Lease, LeaseStatus
from db.services import annotation
from db.session import reset_engines, session_scope
from tests.app.pagetest import page
from tests.e2e.conftest import free_port
from tests.seed import seed_project, seed_user

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def _as_postgres(*cmd: str) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)


class PrivatePostgres:
    def __init__(self) -> None:
        self.bin = Path(_BINS[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="darl_pg_"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        _as_postgres(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                     "--no-sync")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", opts, "-w", "-l",
                     str(self.dir / "log"), "start")

    def stop(self) -> None:
        _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def pg(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivatePostgres]:
    if not _BINS:
        pytest.skip("PostgreSQL binaries are missing (make test installs Debian's postgresql)")
    server = PrivatePostgres()
    server.start()
    try:
        from db import migrate

        migrate.upgrade(server.url)
        reset_engines()
        monkeypatch.setenv("DATABASE_URL", server.url)
        yield server
    finally:  # always leave the machine as we found it
        reset_engines()
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(server.dir, ignore_errors=True)


def _counts(url: str) -> tuple[int, int]:
    with session_scope(url) as s:
        events = s.scalar(sa.select(sa.func.count()).select_from(LabelEvent))
        done = s.scalar(sa.select(sa.func.count()).select_from(Lease).where(Lease.status == LeaseStatus.done))
    return int(events or 0), int(done or 0)


def test_stop_and_restart_mid_run(pg: PrivatePostgres) -> None:
    with session_scope(pg.url) as s:
        project = seed_project(s, n_pairs=20)
        ann = seed_user(s, "ann")
    with session_scope(pg.url) as s:
        step = annotation.next_card(s, ann, project.id)
    for _ in range(3):
        with session_scope(pg.url) as s:
            step = annotation.submit_label(s, ann, step.card.lease_id, 1, 2.0)
    assert _counts(pg.url) == (3, 3)

    # The server stops while a submission is in flight: its statements ran, the commit cannot.
    with pytest.raises(DatabaseUnavailableError, match="Nothing was written"):
        with session_scope(pg.url) as s:
            annotation.submit_label(s, ann, step.card.lease_id, 2, 2.0)
            pg.stop()
    # While it is down the grading screen says so plainly instead of crashing.
    at = page("annotate", ann.id).run()
    assert not at.exception
    assert "Database unavailable" in at.error[0].value and "retry" in at.error[0].value

    pg.start()
    assert _counts(pg.url) == (3, 3)  # the in-flight submission left nothing behind
    with session_scope(pg.url) as s:
        again = annotation.next_card(s, ann, project.id)
    assert again.card.lease_id == step.card.lease_id  # the same card is still waiting
    with session_scope(pg.url) as s:
        annotation.submit_label(s, ann, again.card.lease_id, 2, 2.0)
    assert _counts(pg.url) == (4, 4)
    assert "Item" in " ".join(m.value for m in page("annotate", ann.id).run().markdown)
