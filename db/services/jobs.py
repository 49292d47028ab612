"""Background jobs: the ``jobs`` table is the source of truth; the queue (Huey) only delivers job ids.

Life of a job: ``enqueue`` (queued) -> a worker's ``claim`` (running; ``attempts`` + 1, a fresh
``worker`` token) -> ``report`` / ``heartbeat`` while it runs -> ``finish`` (succeeded, failed or
cancelled). Every write a worker makes names its token and is refused once the token is no longer
the job's, so a job that the watchdog handed to someone else can never be written by two runners.

Why a job never runs twice at once: ``claim`` is one ``UPDATE ... WHERE status = 'queued'`` whose
row count says who won. SQLite serialises writers (every transaction is BEGIN IMMEDIATE);
PostgreSQL re-checks the WHERE clause on the row lock, so the loser updates 0 rows. The queue may
deliver an id twice (a re-dispatch, a retry): the second delivery finds the job not queued and drops it.

The queue does not acknowledge: a worker killed with ``kill -9`` loses its message. ``watchdog``
puts a running job whose heartbeat is older than ``stale_s`` back in the queue (it resumes from its
checkpoint) until ``max_attempts`` is used up, then fails it with the reason. For a queued job,
``heartbeat_at`` is the time it was last sent to the queue; one left unclaimed for ``redispatch_s``
is sent again (a lost message, a queue that was down).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, ConflictError, NotFoundError
from db.models import Job, JobStatus, Role, utcnow
from db.services.users import Actor, require_role

log = logging.getLogger("darl.jobs")

# The job kinds a job row may name. The application layer (darl_app/job_kinds.py) registers one handler
# for each, and only these; a test keeps the two lists equal.
JOB_KINDS = frozenset({"sleep", "train", "select", "evaluate", "map", "embed", "check_labels"})
FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
LOG_KEEP_CHARS = 20_000  # the log column keeps its tail; the full story is in the worker's output
CURVE_KEEP = 2_000  # loss-curve points kept per job


def heartbeat_s() -> float:
    return float(os.environ.get("DARL_JOB_HEARTBEAT_S", "3"))


def stale_s() -> float:
    """A running job whose heartbeat is older than this is presumed dead (>= 3 heartbeats)."""
    return float(os.environ.get("DARL_JOB_STALE_S", "30"))


def redispatch_s() -> float:
    return float(os.environ.get("DARL_JOB_REDISPATCH_S", "60"))


# --- dispatch after commit -------------------------------------------------------------------------

_PENDING = "darl_jobs_to_dispatch"
# Who delivers committed job ids to the workers. The task queue belongs to the application layer
# (darl_app/queue.py), which installs its ``send`` here in every process that enqueues (the UI, the CLI,
# the worker): the services below it never import it. Without one, queued jobs still run: the
# watchdog re-sends every queued job older than ``redispatch_s``.
_dispatcher: Callable[[list[int]], None] | None = None


def install_dispatcher(send: Callable[[list[int]], None] | None) -> None:
    """Set (or, with None, remove) the function that delivers committed job ids to the workers."""
    global _dispatcher
    _dispatcher = send


def _dispatch_later(session: Session, job_id: int) -> None:
    """Send the id to the queue once the row is committed (a worker must be able to see it)."""
    session.info.setdefault(_PENDING, []).append(job_id)


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    ids = session.info.pop(_PENDING, None)
    if not ids:
        return
    if _dispatcher is None:
        log.info("jobs %s queued with no dispatcher in this process; the watchdog will send them", ids)
        return
    try:
        _dispatcher(ids)
    except Exception as exc:  # the watchdog re-sends queued jobs; the UI must not fail on a queue hiccup
        log.warning("could not send jobs %s to the queue (%s); the watchdog will retry", ids, exc)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


# --- creating, reading, cancelling (UI side) ---------------------------------------------------------


def enqueue(session: Session, kind: str, params: dict[str, Any] | None = None, *, project_id: int | None = None,
            actor: Actor | None, max_attempts: int = 3) -> Job:
    """Create a queued job (engineer role); it is sent to the queue when the transaction commits."""
    require_role(actor, Role.engineer)
    if kind not in JOB_KINDS:
        raise ConfigError(f"Unknown job kind {kind!r}; known: {', '.join(sorted(JOB_KINDS))}.")
    if max_attempts < 1:
        raise ConfigError(f"`max_attempts` must be at least 1, got {max_attempts}.")
    job = Job(kind=kind, params=dict(params or {}), project_id=project_id, status=JobStatus.queued,
              created_by=actor.id, max_attempts=max_attempts,
              heartbeat_at=utcnow(), log="", progress=0.0, attempts=0, cancel_requested=False)
    session.add(job)
    session.flush()
    _dispatch_later(session, job.id)
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"No job with id {job_id}.")
    return job


def _filtered(stmt, project_id: int | None, kinds: Sequence[str] | None,  # type: ignore[no-untyped-def]
              statuses: Sequence[JobStatus] | None):
    if project_id is not None:
        stmt = stmt.where(Job.project_id == project_id)
    if kinds:
        stmt = stmt.where(Job.kind.in_(list(kinds)))
    if statuses:
        stmt = stmt.where(Job.status.in_(list(statuses)))
    return stmt


def list_jobs(session: Session, project_id: int | None = None, kinds: Sequence[str] | None = None,
              statuses: Sequence[JobStatus] | None = None, limit: int = 50, offset: int = 0) -> list[Job]:
    """Newest first; ``offset`` skips that many (a page of the full list)."""
    stmt = _filtered(select(Job).order_by(Job.id.desc()).limit(limit).offset(offset), project_id, kinds, statuses)
    return list(session.scalars(stmt))


def count_jobs(session: Session, project_id: int | None = None, kinds: Sequence[str] | None = None,
               statuses: Sequence[JobStatus] | None = None) -> int:
    """How many jobs ``list_jobs`` would page through with these filters."""
    return int(session.scalar(_filtered(select(func.count(Job.id)), project_id, kinds, statuses)) or 0)


def request_cancel(session: Session, job_id: int, actor: Actor | None) -> Job:
    """A queued job is cancelled at once; a running one at its next step (the runner checks the flag)."""
    require_role(actor, Role.engineer)
    job = get_job(session, job_id)
    if job.status in FINISHED:
        raise ConflictError(f"Job {job_id} is already {job.status.value}; nothing to cancel.")
    now = utcnow()
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued)
                    .values(status=JobStatus.cancelled, finished_at=now, cancel_requested=True,
                            log=Job.log + _line(now, "cancelled before it started")))
    session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.running)
                    .values(cancel_requested=True, log=Job.log + _line(now, "cancel requested")))
    session.flush()
    session.refresh(job)
    return job


# --- the runner's side (each call names the runner's token) ------------------------------------------
# ``claim`` and ``watchdog`` need an actor (the worker is ``SYSTEM``); the calls after a claim are
# authorised by its token: they write only a running job whose ``worker`` is that token.


def claim(session: Session, job_id: int, token: str, *, actor: Actor | None) -> Job | None:
    """Take a queued job for ``token``; None when someone else has it or it is no longer queued."""
    require_role(actor, Role.engineer)
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued, Job.cancel_requested.is_(False))
        .values(status=JobStatus.running, worker=token, attempts=Job.attempts + 1, heartbeat_at=now,
                started_at=now, finished_at=None, log=Job.log + _line(now, f"claimed by {token}"))
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        return None
    session.flush()
    job = session.get(Job, job_id)
    session.refresh(job)
    return job


def _owned(job_id: int, token: str):  # type: ignore[no-untyped-def]
    return update(Job).where(Job.id == job_id, Job.worker == token, Job.status == JobStatus.running) \
        .execution_options(synchronize_session=False)


def heartbeat(session: Session, job_id: int, token: str) -> bool:
    """False when the job is no longer this runner's (requeued, finished, or taken by another)."""
    return session.execute(_owned(job_id, token).values(heartbeat_at=utcnow())).rowcount == 1


def report(session: Session, job_id: int, token: str, *, progress: float | None = None,
           message: str | None = None, points: Sequence[tuple[float, float]] = (), phase: str | None = None,
           eta_s: float | None = None) -> str:
    """Record progress, a log line and loss-curve points (step, loss); with a ``phase``, it and the estimated
    seconds left (``result["phase"]``, ``result["eta_s"]``, for the job panel). Returns "ok", "cancel" or "lost"."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.worker != token or job.status != JobStatus.running:
        return "lost"
    now = utcnow()
    values: dict[str, Any] = {"heartbeat_at": now}
    if progress is not None:
        values["progress"] = float(min(max(progress, 0.0), 1.0))
    if message:
        values["log"] = _tail(job.log + _line(now, message))
    if points or phase is not None:
        result = dict(job.result or {})
        if points:
            curve = list(result.get("curve", [])) + [[float(x), float(y)] for x, y in points]
            result["curve"] = curve[-CURVE_KEEP:]
        if phase is not None:
            result.update(phase=phase, eta_s=None if eta_s is None else round(float(eta_s), 1))
        values["result"] = result
    if len(values) > 1 and session.execute(_owned(job_id, token).values(**values)).rowcount != 1:
        return "lost"
    return "cancel" if job.cancel_requested else "ok"


def finish(session: Session, job_id: int, token: str, status: JobStatus, *, result: dict[str, Any] | None = None,
           error: str | None = None, message: str | None = None) -> bool:
    """End the runner's attempt. ``result`` is merged into what the job reported (its loss curve)."""
    if status not in FINISHED:
        raise ConfigError(f"finish() needs a final status, got {status}")
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.worker != token or job.status != JobStatus.running:
        return False
    now = utcnow()
    values: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now, "error": error,
                              "log": _tail(job.log + _line(now, message or status.value))}
    if status == JobStatus.succeeded:
        values["progress"] = 1.0
    if result is not None:
        values["result"] = {**(job.result or {}), **result}
    return session.execute(_owned(job_id, token).values(**values)).rowcount == 1


def requeue(session: Session, job_id: int, token: str, reason: str, *, count_attempt: bool = True) -> bool:
    """Give the runner's job back to the queue (its process died, or its worker is stopping).

    Past ``max_attempts`` the job fails with ``reason`` instead. ``count_attempt=False`` (a clean
    shutdown) does not use up an attempt.
    """
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.worker != token or job.status != JobStatus.running:
        return False
    return _requeue_or_fail(session, job, reason, count_attempt=count_attempt, guard=_owned(job_id, token))


def _requeue_or_fail(session: Session, job: Job, reason: str, *, count_attempt: bool, guard) -> bool:  # type: ignore[no-untyped-def]
    now = utcnow()
    attempts = job.attempts if count_attempt else max(job.attempts - 1, 0)
    if job.cancel_requested:
        values: dict[str, Any] = {"status": JobStatus.cancelled, "finished_at": now,
                                  "log": _tail(job.log + _line(now, f"{reason}; cancelled as requested"))}
    elif attempts >= job.max_attempts:
        msg = f"{reason}; gave up after {attempts} attempt(s) (max_attempts={job.max_attempts})"
        values = {"status": JobStatus.failed, "finished_at": now, "error": msg,
                  "log": _tail(job.log + _line(now, msg))}
    else:
        values = {"status": JobStatus.queued, "worker": None, "heartbeat_at": now, "attempts": attempts,
                  "log": _tail(job.log + _line(now, f"{reason}; re-queued (attempt {attempts} of "
                                                    f"{job.max_attempts} used), resumes from its checkpoint"))}
    if session.execute(guard.values(**values)).rowcount != 1:
        return False
    if values["status"] == JobStatus.queued:
        _dispatch_later(session, job.id)
    return True


def watchdog(session: Session, *, actor: Actor | None, now: datetime | None = None, stale_after: float | None = None,
             redispatch_after: float | None = None) -> dict[str, list[int]]:
    """Re-queue (or fail) running jobs with a stale heartbeat; re-send long-unclaimed queued jobs."""
    require_role(actor, Role.engineer)
    now = now or utcnow()
    stale_cut = now - timedelta(seconds=stale_after if stale_after is not None else stale_s())
    resend_cut = now - timedelta(seconds=redispatch_after if redispatch_after is not None else redispatch_s())
    out: dict[str, list[int]] = {"requeued": [], "failed": [], "cancelled": [], "resent": []}
    stale = session.scalars(select(Job).where(Job.status == JobStatus.running, Job.heartbeat_at < stale_cut))
    for job in list(stale):
        age = (now - job.heartbeat_at).total_seconds() if job.heartbeat_at else float("inf")
        guard = update(Job).where(Job.id == job.id, Job.status == JobStatus.running,
                                  Job.heartbeat_at == job.heartbeat_at).execution_options(synchronize_session=False)
        if _requeue_or_fail(session, job, f"no heartbeat from {job.worker} for {age:.0f} s",
                            count_attempt=True, guard=guard):
            session.refresh(job)
            key = {JobStatus.queued: "requeued", JobStatus.failed: "failed"}.get(job.status, "cancelled")
            out[key].append(job.id)
    waiting = session.scalars(select(Job.id).where(Job.status == JobStatus.queued, Job.heartbeat_at < resend_cut))
    for job_id in list(waiting):
        session.execute(update(Job).where(Job.id == job_id, Job.status == JobStatus.queued)
                        .values(heartbeat_at=now).execution_options(synchronize_session=False))
        _dispatch_later(session, job_id)
        out["resent"].append(job_id)
    session.flush()
    return out


def queued_ids(session: Session, limit: int = 100) -> list[int]:
    return list(session.scalars(select(Job.id).where(Job.status == JobStatus.queued).order_by(Job.id).limit(limit)))


def _line(now: datetime, message: str) -> str:
    return f"{now:%Y-%m-%d %H:%M:%S} {message.rstrip()}\n"


def _tail(text: str) -> str:
    if len(text) <= LOG_KEEP_CHARS:
        return text
    cut = text[-LOG_KEEP_CHARS:]
    return "...\n" + cut[cut.find("\n") + 1:]
