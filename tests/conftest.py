"""Shared fixtures. ``database`` gives each test a fresh, migrated database: SQLite always, and
PostgreSQL too when DARL_TEST_PG_URL names a server (``make test`` starts one on loopback and sets it).

Fresh databases are cloned from a migrated template (a file copy for SQLite, ``CREATE DATABASE ...
TEMPLATE`` for PostgreSQL), so each test pays milliseconds, not a migration.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The test process enqueues jobs like the UI and the CLI do, so it delivers them through the queue too.
from darl_app import queue  # noqa: E402

queue.install()

PG_URL = os.environ.get("DARL_TEST_PG_URL")
BACKENDS = ["sqlite", "postgresql"]


def _migrate(url: str) -> None:
    from db import migrate
    from db.session import reset_engines

    migrate.upgrade(url)
    reset_engines()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmpl") / "template.sqlite3"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> str:
    if not PG_URL:
        pytest.skip("DARL_TEST_PG_URL is not set (make test starts PostgreSQL and sets it)")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"darl_tmpl_{os.getpid()}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    _migrate(url)
    sa.create_engine(url).dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def fresh_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "darl.sqlite3"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    template = request.getfixturevalue("pg_template")
    name = f"darl_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")  # type: ignore[arg-type]
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    admin.dispose()
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)  # type: ignore[arg-type]

    def drop() -> None:
        from db.session import reset_engines

        reset_engines()
        admin2 = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")  # type: ignore[arg-type]
        # FORCE ends our own leftover connections, but not a superuser's autovacuum worker that may have just
        # started on the fresh database ("must be a member of the role whose process is being terminated",
        # seen once in a full run): such a worker finishes or yields within moments, so try again briefly.
        for attempt in range(20):
            try:
                with admin2.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except sa.exc.ProgrammingError:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        admin2.dispose()

    request.addfinalizer(drop)
    return url


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh migrated database URL, set as DATABASE_URL (DARL_HOME is a temp dir too)."""
    from db.session import reset_engines

    url = fresh_database_url(request.param, request, tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DARL_HOME", str(tmp_path / "home"))
    reset_engines()
    yield url
    reset_engines()


@pytest.fixture
def sqlite_database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Like ``database`` but SQLite only (for tests whose subject is not the SQL backend)."""
    from db.session import reset_engines

    url = fresh_database_url("sqlite", request, tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DARL_HOME", str(tmp_path / "home"))
    reset_engines()
    yield url
    reset_engines()


@pytest.fixture
def session(database: str):  # type: ignore[no-untyped-def]
    """A session on the fresh database; committed at the end of the test body."""
    from db.session import session_scope

    with session_scope(database) as s:
        yield s
