"""Alembic is the only way the schema changes: upgrade and downgrade on fresh SQLite and PostgreSQL
databases, the models match the migrated schema, and upgrades keep existing rows."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from db import migrate
from db.models import Base
from db.session import get_engine, reset_engines

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        reset_engines()
        return
    from tests.conftest import PG_URL

    if not PG_URL:
        pytest.skip("DARL_TEST_PG_URL is not set")
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"darl_mig_{tmp_path.name[-12:].replace('-', '_').lower()}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    reset_engines()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def tables(url: str) -> set[str]:
    return set(sa.inspect(get_engine(url)).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert tables(empty_url) == set(Base.metadata.tables)
    assert migrate.current_revision(empty_url) == migrate.head_revision()
    migrate.downgrade(empty_url, "base")
    assert tables(empty_url) == set()
    migrate.upgrade(empty_url)
    assert migrate.current_revision(empty_url) == migrate.head_revision()


def test_models_match_the_migrated_schema(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    with get_engine(empty_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == [], f"models and migrations disagree; add a migration: {diff}"


def test_every_step_upgrades_with_data_in_place(empty_url: str) -> None:
    """Rows written at the first revision survive every later migration (SQLite batch mode copies
    tables; with foreign keys on, that once cascaded deletes into label_events)."""
    script = ScriptDirectory.from_config(migrate.alembic_config(empty_url))
    first = [r.revision for r in script.walk_revisions()][-1]
    migrate.upgrade(empty_url, first)
    engine = get_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO projects (id, name, grades, guidelines, settings, created_at) "
                             "VALUES (1, 'p', '[\"a\", \"b\"]', '', '{}', '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO queries (id, project_id, key, text) VALUES (1, 1, 'k', 'q')")
        conn.exec_driver_sql("INSERT INTO items (id, project_id, key, title) VALUES (1, 1, 'k', 't')")
        conn.exec_driver_sql("INSERT INTO pairs (id, project_id, query_id, item_id, priority, created_at) "
                             "VALUES (1, 1, 1, 1, 0, '2026-01-01')")
        conn.exec_driver_sql("INSERT INTO label_events (pair_id, kind, grade, flagged, created_at) "
                             "VALUES (1, 'imported', 1, false, '2026-01-01')")
    reset_engines()
    migrate.upgrade(empty_url)
    with get_engine(empty_url).connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM label_events").scalar() == 1
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM pairs").scalar() == 1


def test_cli_migrate_and_auto_migration(tmp_path: Path) -> None:
    env = {"DARL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "darl_core", "migrate"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"at revision {migrate.head_revision()} (upgraded)" in run.stdout
    again = subprocess.run([sys.executable, "-m", "darl_core", "migrate"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert "already current" in again.stdout
