"""SQLite transactions of one process take turns on a Python lock (db.session), not in SQLite's busy handler."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from db.session import _sqlite_writer, session_scope


def test_a_second_thread_waits_for_the_first_to_commit_then_sees_its_write(sqlite_database: str) -> None:
    inside, order = threading.Event(), []

    def first() -> None:
        with session_scope(sqlite_database) as s:
            s.execute(text("UPDATE projects SET name = name"))  # holds SQLite's write lock too
            inside.set()
            time.sleep(0.3)
            s.execute(text("INSERT INTO users (name, role, password_hash, active, created_at) "
                           "VALUES ('turn', 'annotator', 'x', true, CURRENT_TIMESTAMP)"))
            order.append("first committed")

    def second() -> None:
        inside.wait()
        with session_scope(sqlite_database) as s:
            order.append("second began")
            order.append(str(s.scalar(text("SELECT count(*) FROM users WHERE name = 'turn'"))))

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    inside.wait()
    taken_elsewhere = not _sqlite_writer(sqlite_database).acquire(timeout=0.05)
    a.join()
    b.join()
    assert taken_elsewhere  # while a scope is open, no other thread of this process gets a turn
    assert order == ["first committed", "second began", "1"]


def test_a_nested_scope_in_the_same_thread_does_not_deadlock(sqlite_database: str) -> None:
    with session_scope(sqlite_database):
        with session_scope(sqlite_database) as inner:  # re-entrant lock: as before this change
            assert inner.scalar(text("SELECT 1")) == 1
    assert _sqlite_writer(sqlite_database).acquire(blocking=False)  # released on the way out
    _sqlite_writer(sqlite_database).release()
