"""Job services: atomic claim, token fencing, cancel, watchdog re-queue / fail, dispatch after commit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from darl_app import queue
from darl_core.errors import ConfigError, ConflictError, PermissionDeniedError
from db.models import JobStatus, Role, utcnow
from db.services import jobs, users
from db.services.users import SYSTEM
from db.session import session_scope


def _job(database: str, **kw):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        return jobs.enqueue(s, "sleep", {"steps": 3}, **{"actor": SYSTEM, **kw}).id


def test_claim_is_exclusive_and_writes_are_fenced(database: str) -> None:
    job_id = _job(database)
    with session_scope(database) as s:
        assert jobs.claim(s, job_id, "a/1", actor=SYSTEM) is not None
    with session_scope(database) as s:
        assert jobs.claim(s, job_id, "b/1", actor=SYSTEM) is None  # a second delivery of the same id finds it taken
        assert jobs.report(s, job_id, "b/1", progress=0.5) == "lost"
        assert jobs.report(s, job_id, "a/1", progress=0.5, message="half", points=[(1, 2.0)]) == "ok"
        assert not jobs.finish(s, job_id, "b/1", JobStatus.succeeded)
    with session_scope(database) as s:
        job = jobs.get_job(s, job_id)
        assert (job.status, job.progress, job.attempts, job.result) == (JobStatus.running, 0.5, 1,
                                                                        {"curve": [[1.0, 2.0]]})
        assert "half" in job.log
        assert jobs.finish(s, job_id, "a/1", JobStatus.succeeded, result={"x": 1})
    with session_scope(database) as s:
        job = jobs.get_job(s, job_id)
        assert job.status == JobStatus.succeeded and job.progress == 1.0
        assert job.result == {"curve": [[1.0, 2.0]], "x": 1}


def test_cancel_queued_at_once_running_at_next_check(database: str) -> None:
    a, b = _job(database), _job(database)
    with session_scope(database) as s:
        assert jobs.request_cancel(s, a, actor=SYSTEM).status == JobStatus.cancelled
        jobs.claim(s, b, "w/1", actor=SYSTEM)
        assert jobs.request_cancel(s, b, actor=SYSTEM).status == JobStatus.running
        assert jobs.report(s, b, "w/1") == "cancel"
        assert jobs.claim(s, a, "w/2", actor=SYSTEM) is None
    with session_scope(database) as s, pytest.raises(ConflictError):
        jobs.request_cancel(s, a, actor=SYSTEM)


def test_watchdog_requeues_stale_then_fails_past_the_limit(database: str) -> None:
    job_id = _job(database, max_attempts=2)
    later = utcnow() + timedelta(seconds=120)
    for attempt, expected in ((1, JobStatus.queued), (2, JobStatus.failed)):
        with session_scope(database) as s:
            assert jobs.claim(s, job_id, f"w/{attempt}", actor=SYSTEM) is not None
            assert jobs.watchdog(s, now=utcnow(), stale_after=30, actor=SYSTEM)["requeued"] == []  # fresh heartbeat: left alone
            acted = jobs.watchdog(s, now=later, stale_after=30, actor=SYSTEM)
        with session_scope(database) as s:
            job = jobs.get_job(s, job_id)
            assert job.status == expected, job.log
            assert job.attempts == attempt
    assert acted["failed"] == [job_id]
    assert "gave up after 2 attempt(s)" in job.error and "no heartbeat" in job.error
    with session_scope(database) as s:  # the dead runner's late writes are refused
        assert jobs.report(s, job_id, "w/2", progress=0.9) == "lost"


def test_clean_release_does_not_use_an_attempt(database: str) -> None:
    job_id = _job(database, max_attempts=1)
    with session_scope(database) as s:
        jobs.claim(s, job_id, "w/1", actor=SYSTEM)
        assert jobs.requeue(s, job_id, "w/1", "worker stopped", count_attempt=False)
    with session_scope(database) as s:
        job = jobs.get_job(s, job_id)
        assert (job.status, job.attempts, job.worker) == (JobStatus.queued, 0, None)


def test_sent_to_queue_only_after_commit(sqlite_database: str) -> None:
    before = queue.pending()
    with pytest.raises(RuntimeError), session_scope(sqlite_database) as s:
        jobs.enqueue(s, "sleep", {}, actor=SYSTEM)
        raise RuntimeError("rolled back")
    assert queue.pending() == before
    _job(sqlite_database)
    assert queue.pending() == before + 1


def test_enqueue_checks_kind_and_role(sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        annotator = users.create_user(s, "ann", Role.annotator, "secret1", actor=SYSTEM)
        with pytest.raises(ConfigError, match="Unknown job kind"):
            jobs.enqueue(s, "nope", {}, actor=SYSTEM)
        with pytest.raises(PermissionDeniedError):
            jobs.enqueue(s, "sleep", {}, actor=annotator)
