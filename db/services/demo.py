"""The demo project and demo users that `make run` loads into an empty database."""

from __future__ import annotations

import random
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from darl_core import demo
from db.models import LabelEvent, LabelKind, Lease, LeaseStatus, Pair, Project, Role, User, utcnow
from db.services.imports import ImportSummary, import_file
from db.services.users import create_user

DEMO_PROJECT = "demo-home-improvement"
# name, role, password: printed by `make run`; change or deactivate them for real use.
DEMO_USERS = [
    ("admin", Role.admin, "admin-demo"),
    ("erin", Role.engineer, "erin-demo"),
    ("rita", Role.reviewer, "rita-demo"),
    ("alice", Role.annotator, "alice-demo"),
    ("bob", Role.annotator, "bob-demo"),
]


def is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count(Project.id)))


def load_demo(session: Session, seed: int = 7) -> ImportSummary:
    """Import the generated demo catalogue, create the demo users and a few annotator votes."""
    frame = demo.generate(seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.csv"
        frame.drop(columns=["hidden_grade"]).to_csv(path, index=False)
        summary = import_file(session, path, DEMO_PROJECT, create=True, guidelines=demo.GUIDELINES)
    users = {}
    for name, role, password in DEMO_USERS:
        existing = session.scalar(select(User).where(User.name == name))
        users[name] = existing or create_user(session, name, role, password, bootstrap=True)
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
