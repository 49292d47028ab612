"""The background job runner (``python -m darl_core worker``): a Huey consumer plus a watchdog.

Like the CLI this module is an edge: it wires the queue to the job services (``db.services.jobs``).

For each job id the queue delivers, a consumer thread:
1. claims the job in the jobs table (atomic; a job held by anyone else is dropped here),
2. runs it in a child process (``python -m darl_app.worker JOB TOKEN``), so the memory a stage
   takes is returned when it ends, and a crash takes only the child,
3. writes the heartbeat every ``DARL_JOB_HEARTBEAT_S`` seconds while the child lives,
4. when the child exits without having recorded an outcome (killed, out of memory), re-queues it.

The child reports progress and log lines itself and checks for a cancel between steps. It dies
with its worker (PR_SET_PDEATHSIG, and a parent check in ``should_stop``): after ``kill -9`` of
the worker nothing keeps running, and the watchdog of any live worker re-queues the job once its
heartbeat is stale. SIGTERM (or Ctrl-C) stops the worker cleanly: its children are stopped and
their jobs go back to the queue without using up an attempt.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from darl_core.errors import DarlError

log = logging.getLogger("darl.worker")


@dataclass
class Runtime:
    """This process's worker state: its name, the stop flag and the children it is running."""

    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    stopping: threading.Event = field(default_factory=threading.Event)
    children: dict[int, tuple[subprocess.Popen, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_RUNTIME = Runtime()


def execute(job_id: int) -> str:
    """Claim and run one job to its end in a child process; returns its final status (or "skipped")."""
    from db.models import Job
    from db.services import jobs
    from db.services.users import SYSTEM
    from db.session import session_scope

    rt = _RUNTIME
    if rt.stopping.is_set():
        return "skipped"  # the job stays queued; the watchdog re-sends it
    token = f"{rt.name}/{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        job = jobs.claim(session, job_id, token, actor=SYSTEM)
        if job is None:
            return "skipped"
        kind, attempt = job.kind, job.attempts
    log.info("job %s (%s) claimed, attempt %s", job_id, kind, attempt)
    started = time.monotonic()
    # A session of its own: a Ctrl-C in the terminal reaches the worker, which stops the child itself.
    proc = subprocess.Popen([sys.executable, "-m", "darl_app.worker", str(job_id), token], start_new_session=True)
    with rt.lock:
        rt.children[job_id] = (proc, token)
    try:
        _watch(proc, job_id, token, rt)
    finally:
        with rt.lock:
            rt.children.pop(job_id, None)
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None and job.worker == token and job.status.value == "running":
            if rt.stopping.is_set():
                jobs.requeue(session, job_id, token, "worker stopped", count_attempt=False)
            else:
                jobs.requeue(session, job_id, token, f"runner process exited with code {proc.returncode}")
        status = job.status.value if job is not None else "gone"
    log.info("job %s ended: %s after %.1f s", job_id, status, time.monotonic() - started)
    return status


def _watch(proc: subprocess.Popen, job_id: int, token: str, rt: Runtime) -> None:
    """Heartbeat while the child runs; stop it when the worker stops or the job is taken away."""
    from db.services import jobs
    from db.session import session_scope

    next_beat = time.monotonic() + jobs.heartbeat_s()
    while True:
        try:
            proc.wait(timeout=0.2)
            return
        except subprocess.TimeoutExpired:
            pass
        if rt.stopping.is_set():
            _stop_child(proc)
            return
        if time.monotonic() < next_beat:
            continue
        next_beat = time.monotonic() + jobs.heartbeat_s()
        try:
            with session_scope() as session:
                ours = jobs.heartbeat(session, job_id, token)
        except DarlError as err:  # the database hiccuped: keep the child, try again next beat
            log.warning("job %s: heartbeat failed: %s", job_id, err)
            continue
        if not ours:  # the child finished it, or the watchdog gave it to someone else
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("job %s is no longer ours; stopping its runner", job_id)
                _stop_child(proc)
            return


def _stop_child(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def watchdog_loop(rt: Runtime) -> None:
    from db.services import jobs
    from db.services.users import SYSTEM
    from db.session import session_scope

    interval = max(0.5, min(jobs.stale_s() / 3, 5.0))
    while not rt.stopping.wait(interval):
        try:
            with session_scope() as session:
                acted = jobs.watchdog(session, actor=SYSTEM)
            for what, ids in acted.items():
                if ids and what != "resent":
                    log.warning("watchdog: %s %s", what, ids)
        except Exception:  # the watchdog must outlive a database outage
            log.exception("watchdog pass failed")


def run_worker(concurrency: int = 1, once: bool = False) -> int:
    """Run until SIGTERM/SIGINT (or, with ``once``, until no job is queued). Returns an exit code."""
    from darl_app.queue import get_huey, install
    from darl_core.settings import load_settings
    from db.services import jobs
    from db.services.users import SYSTEM
    from db.session import session_scope

    install()
    settings = load_settings()
    log.info("worker %s: %s job(s) at a time; database %s; queue %s", _RUNTIME.name, concurrency,
             _redact(settings.database_url), _redact(settings.queue_url))
    if once:
        with session_scope() as session:
            jobs.watchdog(session, actor=SYSTEM)
        done = 0
        while True:
            with session_scope() as session:
                ids = jobs.queued_ids(session)
            if not ids:
                break
            for job_id in ids:
                done += execute(job_id) != "skipped"
        log.info("worker %s: %s job(s) run; none left queued", _RUNTIME.name, done)
        return 0
    from huey.consumer import Consumer

    class _Consumer(Consumer):
        """Huey's consumer; stopping it also stops our children and hands their jobs back."""

        def stop(self, graceful: bool = False) -> None:
            _RUNTIME.stopping.set()
            super().stop(graceful=True)

    consumer = _Consumer(get_huey(), workers=concurrency, worker_type="thread", periodic=False,
                         initial_delay=0.1, backoff=1.15, max_delay=1.0, graceful_signal="TERM",
                         shutdown_timeout=30)
    threading.Thread(target=watchdog_loop, args=(_RUNTIME,), name="darl-watchdog", daemon=True).start()
    consumer.run()
    log.info("worker %s stopped", _RUNTIME.name)
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# --- the child process -----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that started it dies (kill -9 of the worker)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: JobContext.should_stop checks the parent pid between steps instead


def child_main(job_id: int, token: str) -> int:
    """Run the handler of one claimed job and record its outcome (the child process's body)."""
    _die_with_parent()
    from darl_app.job_kinds import JobContext, get_handler
    from darl_core.settings import darl_home
    from db.models import Job, JobStatus
    from db.services import jobs
    from db.session import session_scope

    def report(**kw: object) -> str:
        with session_scope() as session:
            return jobs.report(session, job_id, token, **kw)  # type: ignore[arg-type]

    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.worker != token:
            return 0
        workdir = Path(darl_home()) / "jobs" / str(job_id)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(job_id=job_id, kind=job.kind, params=dict(job.params or {}), project_id=job.project_id,
                         attempt=job.attempts, workdir=workdir, report=report)
    status, result, error, message = JobStatus.failed, None, None, None
    try:
        ctx.progress(0.0, f"started in process {os.getpid()} (attempt {ctx.attempt})", force=True)
        result = get_handler(ctx.kind)(ctx)
        status, message = JobStatus.succeeded, "succeeded"
    except Exception as exc:
        ctx.should_stop()
        if ctx.stop_reason == "cancel requested":
            status, message = JobStatus.cancelled, f"cancelled: {exc}"
        elif ctx.stop_reason is not None:
            return 0  # the job is not ours any more (or our worker died): record nothing
        elif isinstance(exc, DarlError):
            error = str(exc)
        else:
            error = f"{type(exc).__name__}: {exc}"
            message = "".join(traceback.format_exception(exc)[-6:])
    with session_scope() as session:
        jobs.finish(session, job_id, token, status, result=result, error=error, message=message or error)
    return 0


if __name__ == "__main__":
    # `python -m darl_app.worker JOB TOKEN`: a runner child. `... serve N`: a worker without the CLI's
    # start-up cost (tests start several); `python -m darl_core worker` is the documented way.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if sys.argv[1] == "serve":
        logging.getLogger("huey").setLevel(logging.WARNING)
        sys.exit(run_worker(int(sys.argv[2]) if len(sys.argv) > 2 else 1))
    sys.exit(child_main(int(sys.argv[1]), sys.argv[2]))
