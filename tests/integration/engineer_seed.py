"""A small graded project for the engineer tests: train / val / test_id / test_ood / pool pairs."""

from __future__ import annotations

import hashlib

import numpy as np
from sqlalchemy.orm import Session

from db.models import Item, LabelEvent, LabelKind, Pair, Project, Query, Role
from db.services import users
from db.services.users import SYSTEM

ID_WORDS = ["drill", "paint", "hose", "saw", "lamp", "door"]
OOD_WORDS = ["kettle", "violin", "tent", "piano"]
SPLITS = {"train": 48, "val": 16, "test_id": 16, "test_ood": 16, "pool": 40}


def seed_project(session: Session, name: str = "demo", *, with_engineer: bool = True) -> Project:
    rng = np.random.default_rng(0)
    project = Project(name=name, grades=["irrelevant", "weak", "strong"], settings={})
    session.add(project)
    session.flush()
    if with_engineer:
        users.create_user(session, "eng", Role.engineer, "engineer1", actor=SYSTEM)
    n = 0
    for split, count in SPLITS.items():
        words = OOD_WORDS if split in ("test_ood",) or (split == "pool" and count % 2 == 0 and rng.random() < 0.5) \
            else ID_WORDS
        for _ in range(count):
            n += 1
            qw, iw = str(rng.choice(words)), str(rng.choice(words))
            q = Query(project_id=project.id, key=hashlib.sha1(f"q{n}".encode()).hexdigest(), text=f"{qw} {n % 7}")
            it = Item(project_id=project.id, key=hashlib.sha1(f"i{n}".encode()).hexdigest(), title=f"{iw} pro {n}",
                      text=f"a {iw} for the home")
            session.add_all([q, it])
            session.flush()
            pair = Pair(project_id=project.id, query_id=q.id, item_id=it.id, split=split)
            session.add(pair)
            session.flush()
            if split != "pool":
                grade = 2 if qw == iw else int(rng.integers(0, 2))
                session.add(LabelEvent(pair_id=pair.id, kind=LabelKind.imported, grade=grade))
    session.flush()
    return project


def store_predictions(session: Session, version_id: int, sets: dict, ood_right: float) -> None:
    """Stored test predictions for a version (``db.services.evaluation.write_pair_probs``): right on every
    ID pair and on the first ``ood_right`` share of the OOD pairs, one grade too high elsewhere."""
    from db.services import evaluation

    probs = {}
    for name, ts in sets.items():
        right = np.arange(len(ts.grades)) < (ood_right if name == "ood" else 1.0) * len(ts.grades)
        pred = np.where(right, ts.grades, (ts.grades + 1) % 3)
        probs[name] = np.full((len(pred), 3), 0.1) + 0.7 * np.eye(3)[pred]
    evaluation.write_pair_probs(session, version_id, sets, probs, actor=SYSTEM)
