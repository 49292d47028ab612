"""Alembic environment: the URL is DATABASE_URL (or the SQLite default under DARL_HOME)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, event

from darl_core.settings import database_url
from db.models import Base
from db.session import get_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or None
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    url = url or database_url()
    if url.startswith("sqlite"):
        # SQLite ALTERs go through batch mode, which copies a table, DROPs the old one and renames the
        # copy. With foreign keys on, that DROP cascades (ON DELETE CASCADE) and silently deletes every
        # dependent row - label events included. So migrations run on a connection with foreign keys
        # off, and the result is checked with PRAGMA foreign_key_check before committing.
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_fk_off)
        try:
            with engine.connect() as connection:
                _run(connection)
                bad = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if bad:
                    raise RuntimeError(f"migration left {len(bad)} dangling foreign keys, e.g. {bad[0]}")
                connection.commit()
        finally:
            engine.dispose()
        return
    with get_engine(url).connect() as connection:
        _run(connection)
        connection.commit()


def _sqlite_fk_off(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need batch mode
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run `python -m darl_core migrate`")
run_migrations_online()
