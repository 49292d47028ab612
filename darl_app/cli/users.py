"""User subcommands: ``user add NAME --role ROLE`` and ``user list``.

The password comes from ``DARL_PASSWORD`` when set (for scripts), else from a prompt (typed twice).
"""

from __future__ import annotations

import argparse
import getpass
import os

from darl_core.errors import ConfigError

ROLES = ("annotator", "reviewer", "engineer", "admin")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("user", help="manage accounts: user add NAME --role ROLE | user list")
    users = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = users.add_parser("add", help="create an account (password from DARL_PASSWORD or a prompt)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES,
                     help="annotator < reviewer < engineer < admin (each may do what the ones before may)")
    add.set_defaults(func=cmd_add)
    ls = users.add_parser("list", help="list accounts with their roles")
    ls.set_defaults(func=cmd_list)


def _password() -> str:
    env = os.environ.get("DARL_PASSWORD")
    if env:
        return env
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ConfigError("The two passwords differ; nothing was created.")
    return first


def cmd_add(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from db.services.users import SYSTEM, create_user
    from db.session import session_scope

    ensure_schema()
    password = _password()
    with session_scope() as session:
        user = create_user(session, args.name, args.role, password, actor=SYSTEM)
        print(f"created user '{user.name}' ({user.role.value})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from darl_app.cli.data import ensure_schema
    from db.services.users import list_users
    from db.session import session_scope

    ensure_schema()
    with session_scope() as session:
        rows = [(u.name, u.role.value, "active" if u.active else "deactivated") for u in list_users(session)]
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'role':<9}  status")
    for name, role, status in rows:
        print(f"{name:<{width}}  {role:<9}  {status}")
    return 0
