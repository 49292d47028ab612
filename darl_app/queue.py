"""The task queue: Huey, delivering job ids only (the jobs table holds everything else).

The services never import this module: each process that enqueues jobs (the UI's app.py, the CLI, the
worker) calls ``install()``, which hands ``send`` to ``db.services.jobs`` to run after each commit.

``DARL_QUEUE_URL`` picks the storage: ``sqlite:///path`` (the embedded default, a file under
``DARL_HOME``; workers on one machine) or ``redis://host:port/db`` (workers on several machines).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from huey import Huey, RedisHuey, SqliteHuey

from darl_core.errors import ConfigError
from darl_core.settings import queue_url

TASK_NAME = "darl.run_job"


def install() -> None:
    """Deliver this process's newly committed jobs through this queue (idempotent)."""
    from db.services.jobs import install_dispatcher

    install_dispatcher(send)


def _run_job(job_id: int) -> None:
    from darl_app.worker import execute  # the worker is only imported where jobs are run

    execute(int(job_id))


@functools.cache
def _huey_for(url: str) -> tuple[Huey, object]:
    if url.startswith(("redis://", "rediss://", "unix://")):
        huey: Huey = RedisHuey(name="darl", url=url, results=False, utc=True)
    elif url.startswith("sqlite:///"):
        huey = SqliteHuey(name="darl", filename=url.removeprefix("sqlite:///"), results=False, utc=True)
    else:
        raise ConfigError(f"DARL_QUEUE_URL={url!r} is neither sqlite:///PATH nor redis://HOST:PORT/DB.")
    # retries=0: a failed job is retried by the watchdog (with a checkpoint), not by the queue.
    task = huey.task(name=TASK_NAME, retries=0)(_run_job)
    return huey, task


def get_huey(url: str | None = None) -> Huey:
    return _huey_for(url or queue_url())[0]


def send(job_ids: Iterable[int], url: str | None = None) -> None:
    """Put job ids on the queue (a duplicate delivery is harmless: claiming is atomic)."""
    task = _huey_for(url or queue_url())[1]
    for job_id in job_ids:
        task(int(job_id))  # type: ignore[operator]


def pending(url: str | None = None) -> int:
    return int(get_huey(url).pending_count())
