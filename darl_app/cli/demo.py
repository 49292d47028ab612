"""`demo`: load the demo project and demo users (what `make run` does on an empty database).

The demo accounts have published passwords. They are created only into an empty database (no users,
no projects) or next to demo accounts already there; never next to real accounts:
- ``demo --if-empty`` (the run command): loads into an empty database, otherwise says why not and exits 0;
- ``demo``: the same, but a database that is not empty is an error that names ``--force``;
- ``demo --force``: loads the demo project whatever is there; with real accounts present it adds no demo
  accounts (and so none of their sample votes). There is no flag that adds them next to real accounts.
"""

from __future__ import annotations

import argparse

from darl_core.errors import ConflictError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="load the demo project and demo users into an empty database")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--if-empty", action="store_true",
                      help="load only when the database has no user and no project; otherwise say so and exit 0")
    mode.add_argument("--force", action="store_true",
                      help="load the demo project into a database that is not empty; the demo accounts are still "
                           "added only when no real account exists")
    mode.add_argument("--print-logins", action="store_true",
                      help="print the demo logins when this database has the demo accounts, and exit")
    p.add_argument("--first-round", type=int, default=0, metavar="N",
                   help="also queue a DASA selection of N pairs for the worker (the first annotation round)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from db.services.demo import DEMO_PROJECT, counts, has_demo_accounts, is_empty, load_demo, other_users
    from db.services.launch import launch_selection
    from db.services.projects import get_project
    from db.services.users import SYSTEM
    from db.session import session_scope

    ensure_schema()
    if args.print_logins:
        with session_scope() as session:
            return _print_logins(has_demo_accounts(session))
    with session_scope() as session:
        if not is_empty(session) and not args.force:
            n_users, n_projects = counts(session)
            why = f"the database already has {n_users} user(s) and {n_projects} project(s)"
            if args.if_empty:
                print(f"demo not loaded: {why} (the demo is loaded only into an empty database)")
                return 0
            raise ConflictError(f"demo not loaded: {why}. `demo --force` loads the demo project anyway "
                                "(its accounts only when no real account exists).")
        accounts = not other_users(session)
        summary = load_demo(session, actor=SYSTEM, accounts=accounts)
        job = None
        if args.first_round > 0:  # the worker embeds the pool and writes the round; annotators then get it
            job = launch_selection(session, get_project(session, DEMO_PROJECT), args.first_round, version=None,
                                   actor=SYSTEM)
    print(f"DEMO loaded: project '{DEMO_PROJECT}' ({summary})")
    if accounts:
        print("DEMO accounts created with published passwords: for trying DaRL Studio on this machine only.")
    else:
        print("No demo accounts were added: this database has real accounts.")
    if job is not None:
        print(f"queued job {job.id}: DASA selection of {args.first_round} pairs (the worker builds the first round)")
    return 0


def _print_logins(demo_accounts: bool) -> int:
    from db.services.demo import DEMO_USERS

    if not demo_accounts:
        print("No demo accounts in this database: log in with your own account "
              "(create one with `python -m darl_core user add NAME --role admin`).")
        return 0
    print("DEMO logins (user / password / role), unless changed since:")
    for name, role, password in DEMO_USERS:
        print(f"  {name:<6} / {password:<11} / {role.value}")
    return 0
