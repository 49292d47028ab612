"""Worker subcommands: ``worker`` (run background jobs) and ``jobs`` (list, enqueue, cancel)."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run background jobs (training, selection, evaluation, maps) until stopped")
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once by this worker (default 1)")
    p.add_argument("--once", action="store_true", help="run the queued jobs, then exit (no queue needed)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("jobs", help="list, enqueue or cancel background jobs")
    jsub = p.add_subparsers(dest="jobs_command", required=True)
    q = jsub.add_parser("list", help="the newest jobs")
    q.add_argument("--limit", type=int, default=20)
    q.set_defaults(func=cmd_jobs_list)
    q = jsub.add_parser("enqueue", help="queue a job, e.g. `jobs enqueue sleep --params '{\"steps\": 5}'`")
    q.add_argument("kind")
    q.add_argument("--params", default="{}", help="JSON object of the job's parameters")
    q.add_argument("--max-attempts", type=int, default=3)
    q.set_defaults(func=cmd_jobs_enqueue)
    q = jsub.add_parser("cancel", help="cancel a queued or running job")
    q.add_argument("job_id", type=int)
    q.set_defaults(func=cmd_jobs_cancel)


def cmd_worker(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from darl_app.worker import run_worker
    from darl_core.errors import ConfigError

    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {args.concurrency}")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("huey", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ensure_schema()
    return run_worker(args.concurrency, once=args.once)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from db.services import jobs
    from db.session import session_scope

    ensure_schema()
    with session_scope() as session:
        for j in jobs.list_jobs(session, limit=args.limit):
            print(f"{j.id:>6} {j.kind:<9} {j.status.value:<10} {j.progress:>5.0%} attempts {j.attempts}/"
                  f"{j.max_attempts} {j.worker or '-'} {j.error or ''}")
    return 0


def cmd_jobs_enqueue(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from darl_core.errors import ConfigError
    from db.services import jobs
    from db.services.users import SYSTEM
    from db.session import session_scope

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params is not JSON ({exc}); pass an object such as '{{\"steps\": 5}}'") from exc
    ensure_schema()
    with session_scope() as session:
        job = jobs.enqueue(session, args.kind, params, max_attempts=args.max_attempts, actor=SYSTEM)
    print(f"job {job.id} queued")
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from db.services import jobs
    from db.services.users import SYSTEM
    from db.session import session_scope

    ensure_schema()
    with session_scope() as session:
        job = jobs.request_cancel(session, args.job_id, actor=SYSTEM)
    print(f"job {job.id}: {job.status.value}{' (cancel requested)' if job.cancel_requested else ''}")
    return 0
