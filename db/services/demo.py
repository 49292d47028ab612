"""The demo project and demo users that `make run` loads into an empty database.

The demo accounts have published passwords, so they never join real accounts: ``load_demo``
refuses to create them while the database has any user that is not one of them. ``is_empty``
(no users, no projects) is what ``demo --if-empty`` (the run command) checks.
"""

from __future__ import annotations

import random
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from darl_core import demo
from darl_core.errors import ConflictError
from db.models import LabelEvent, LabelKind, Lease, LeaseStatus, Pair, Project, Role, User, utcnow
from db.services.imports import ImportSummary, import_file
from db.services.users import Actor, create_user, require_role

DEMO_PROJECT = "demo-home-improvement"
# name, role, password: printed by `make run`; change or deactivate them for real use.
DEMO_USERS = [
    ("admin", Role.admin, "admin-demo"),
    ("erin", Role.engineer, "erin-demo"),
    ("rita", Role.reviewer, "rita-demo"),
    ("alice", Role.annotator, "alice-demo"),
    ("bob", Role.annotator, "bob-demo"),
]


def counts(session: Session) -> tuple[int, int]:
    """(users, projects) in the database."""
    return (int(session.scalar(select(func.count(User.id))) or 0),
            int(session.scalar(select(func.count(Project.id))) or 0))


def is_empty(session: Session) -> bool:
    """No users and no projects: the only database the run command loads the demo into."""
    return counts(session) == (0, 0)


def other_users(session: Session) -> list[str]:
    """Names of the accounts that are not demo accounts (real users), sorted."""
    demo_names = [name for name, _, _ in DEMO_USERS]
    return list(session.scalars(select(User.name).where(User.name.not_in(demo_names)).order_by(User.name)))


def has_demo_accounts(session: Session) -> bool:
    """Whether the demo's admin account exists (the published logins may work here)."""
    return session.scalar(select(User.id).where(User.name == DEMO_USERS[0][0])) is not None


def load_demo(session: Session, seed: int = 7, *, actor: Actor | None, accounts: bool = True) -> ImportSummary:
    """Import the generated demo catalogue and, with ``accounts``, the demo users and a few annotator votes.

    Admin role. Demo accounts are refused while any other account exists: their passwords are published.
    """
    require_role(actor, Role.admin)
    others = other_users(session)
    if accounts and others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ConflictError(f"This database has real accounts ({shown}); the demo accounts have published "
                            "passwords and are not added next to them. Load the demo into an empty database, "
                            "or load only its data (`demo --force` does that here).")
    frame = demo.generate(seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.csv"
        frame.drop(columns=["hidden_grade"]).to_csv(path, index=False)
        summary = import_file(session, path, DEMO_PROJECT, create=True, guidelines=demo.GUIDELINES, actor=actor)
    if not accounts:
        return summary
    users = {}
    for name, role, password in DEMO_USERS:
        existing = session.scalar(select(User).where(User.name == name))
        users[name] = existing or create_user(session, name, role, password, actor=actor)
    _demo_votes(session, users, frame, seed)
    return summary


def _demo_votes(session: Session, users: dict[str, User], frame, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Two annotators grade 40 shared pool pairs (a few disagreements) so review has real work."""
    rng = random.Random(seed)
    project = session.scalar(select(Project).where(Project.name == DEMO_PROJECT))
    scale = list(project.grades)  # type: ignore[union-attr]
    pool = list(session.scalars(select(Pair).where(Pair.project_id == project.id, Pair.split == "pool")  # type: ignore[union-attr]
                                .order_by(Pair.id).limit(40)))
    truth = dict(zip(zip(frame["query"], frame["title"], strict=True), frame["hidden_grade"], strict=True))
    now = utcnow()
    for n, pair in enumerate(pool):
        true_grade = scale.index(truth[(pair.query.text, pair.item.title)])
        for who in ("alice", "bob"):
            grade = true_grade if rng.random() > 0.2 else rng.randrange(len(scale))
            at = now - timedelta(minutes=5 * (len(pool) - n), seconds=rng.randint(0, 60))
            session.add(Lease(pair_id=pair.id, user_id=users[who].id, status=LeaseStatus.done,
                              expires_at=at + timedelta(minutes=10), created_at=at))
            session.add(LabelEvent(pair_id=pair.id, user_id=users[who].id, kind=LabelKind.label, grade=grade,
                                   seconds_on_card=round(rng.uniform(3, 25), 1), created_at=at))
        if hasattr(pair, "queue_open"):
            pair.queue_open = False  # both overlap slots are used (annotation service's queue hint)
    session.flush()
