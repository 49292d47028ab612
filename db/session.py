"""Engine and session handling for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from darl_core.errors import DatabaseUnavailableError
from darl_core.settings import database_url


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets the worker write while the UI reads; busy_timeout queues writers instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # Take the write lock at BEGIN: SQLite cannot upgrade a read transaction to a write one under
    # contention without a "database is locked" error, so every transaction starts IMMEDIATE.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    url = url or database_url()
    if url in _ENGINES:
        return _ENGINES[url]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling is off so that BEGIN IMMEDIATE above is the only BEGIN.
        event.listen(engine, "connect", lambda c, _r: setattr(c, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    _ENGINES[url] = engine
    return engine


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "sqlite"


@functools.cache
def _factory(url: str | None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@functools.cache
def _sqlite_writer(url: str) -> threading.RLock:
    return threading.RLock()


@contextmanager
def _sqlite_turn(url: str) -> Iterator[None]:
    # Every SQLite transaction takes the write lock (BEGIN IMMEDIATE), so transactions of one process
    # queue anyway. Queue them on a Python lock, woken the moment the holder commits, rather than in
    # SQLite's busy handler, which polls with sleeps of up to 100 ms: under 20 concurrent annotators that
    # turned ~3 ms of queueing into a p95 of hundreds of ms (bench/annotate_latency.py). Other processes
    # (the worker) still meet the busy handler. Re-entrant: a nested scope in one thread behaves as before.
    lock = _sqlite_writer(url)
    if not lock.acquire(timeout=30):
        raise DatabaseUnavailableError("The database stayed busy for 30 s; nothing was written. Retry.")
    try:
        yield
    finally:
        lock.release()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error (so nothing is half-written)."""
    url = url or database_url()
    if url.startswith("sqlite"):
        with _sqlite_turn(url), _session_scope(url) as session:
            yield session
    else:
        with _session_scope(url) as session:
            yield session


@contextmanager
def _session_scope(url: str) -> Iterator[Session]:
    session = _factory(url)()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise DatabaseUnavailableError(
            f"The database did not answer ({exc.orig.__class__.__name__}: {str(exc.orig).strip()[:200]}). "
            "Nothing was written; check that it is running and retry."
        ) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engines() -> None:
    """Dispose cached engines (tests switch DATABASE_URL between SQLite files and PostgreSQL)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    _factory.cache_clear()
