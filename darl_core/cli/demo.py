"""`demo`: load the demo project and users (what `make run` does on an empty database)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="load the demo project and demo users")
    p.add_argument("--if-empty", action="store_true", help="only when the database has no project yet")
    p.add_argument("--print-logins", action="store_true", help="print the demo logins and exit")
    p.add_argument("--first-round", type=int, default=0, metavar="N",
                   help="also queue a DASA selection of N pairs for the worker (the first annotation round)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from darl_core.cli.data import ensure_schema
    from db.services.demo import DEMO_PROJECT, DEMO_USERS, is_empty, load_demo
    from db.services.launch import launch_selection
    from db.services.projects import get_project
    from db.services.users import SYSTEM
    from db.session import session_scope

    if args.print_logins:
        print("Demo logins (user / password / role):")
        for name, role, password in DEMO_USERS:
            print(f"  {name:<6} / {password:<11} / {role.value}")
        return 0
    ensure_schema()
    with session_scope() as session:
        if args.if_empty and not is_empty(session):
            print("database already has a project; demo not loaded")
            return 0
        summary = load_demo(session, actor=SYSTEM)
        job = None
        if args.first_round > 0:  # the worker embeds the pool and writes the round; annotators then get it
            job = launch_selection(session, get_project(session, DEMO_PROJECT), args.first_round, version=None,
                                   actor=SYSTEM)
    print(f"demo project '{DEMO_PROJECT}' loaded: {summary}")
    if job is not None:
        print(f"queued job {job.id}: DASA selection of {args.first_round} pairs (the worker builds the first round)")
    return 0
