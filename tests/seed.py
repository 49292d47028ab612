"""Small, fast seeding helpers shared by the integration, AppTest and browser tests (core inserts)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Item, Pair, Project, Query, Role, RoundItem, SelectionRound, User, utcnow
from db.services.projects import create_project
from db.services.users import SYSTEM, create_user

PASSWORD = "secret-pw"


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def seed_project(session: Session, name: str = "demo", n_pairs: int = 50, *, grades: Sequence[str] | None = None,
                 guidelines: str = "Grade how well the product matches the query.",
                 segments: Sequence[str] = ("tools", "garden"), split: str = "pool",
                 settings: dict[str, Any] | None = None) -> Project:
    """A project with ``n_pairs`` unlabelled pairs (one query per 5 items), in id order."""
    project = create_project(session, name, list(grades) if grades else None, guidelines, settings, actor=SYSTEM)
    now = utcnow()
    n_queries = max(1, (n_pairs + 4) // 5)
    session.execute(insert(Query), [{"project_id": project.id, "key": _key(f"{name}q{i}"),
                                     "text": f"query {i} cordless drill"} for i in range(n_queries)])
    session.execute(insert(Item), [{"project_id": project.id, "key": _key(f"{name}i{i}"), "title": f"Item {i} title",
                                    "text": f"Description of item {i}."} for i in range(n_pairs)])
    qids = list(session.scalars(select(Query.id).where(Query.project_id == project.id).order_by(Query.id)))
    iids = list(session.scalars(select(Item.id).where(Item.project_id == project.id).order_by(Item.id)))
    session.execute(insert(Pair), [{"project_id": project.id, "query_id": qids[i // 5], "item_id": iids[i],
                                    "segment": segments[i % len(segments)], "split": split, "priority": 0,
                                    "queue_open": True, "created_at": now} for i in range(n_pairs)])
    return project


def pair_ids(session: Session, project_id: int) -> list[int]:
    return list(session.scalars(select(Pair.id).where(Pair.project_id == project_id).order_by(Pair.id)))


def seed_user(session: Session, name: str, role: Role | str = Role.annotator, password: str = PASSWORD) -> User:
    return create_user(session, name, role, password, actor=SYSTEM)


def seed_round(session: Session, project_id: int, ids: Sequence[int], name: str = "round 1") -> SelectionRound:
    rnd = SelectionRound(project_id=project_id, name=name, params={}, status="open")
    session.add(rnd)
    session.flush()
    session.execute(insert(RoundItem), [
        {"round_id": rnd.id, "pair_id": pid, "rank": r, "score": 1.0 - r / 100, "is_control": False,
         "reasons": {"ood_score": round(1.0 - r / 100, 3), "knn": 0.5, "mahalanobis": 0.4, "cluster": r % 3}}
        for r, pid in enumerate(ids)])
    return rnd


def seed_review_queue(session: Session, name: str = "demo", n_pending: int = 12, flagged_at: int = 10) -> dict[str, Any]:
    """A project whose first ``n_pending`` pairs wait for review: ann and bob disagree (0 vs 2) on each,
    except pair ``flagged_at``, where both say 1 and ann flags it ("too vague"; bob: "brand differs").
    Two more pairs agree (2, 2) and are not pending; on the first of them ann's flagged vote was undone.
    Users: ann, bob (annotators), rita (reviewer), eve (engineer). Returns the project, pair ids and users."""
    from db.models import LabelEvent, LabelKind

    project = seed_project(session, name, n_pairs=n_pending + 2)
    ids = pair_ids(session, project.id)
    users = {n: seed_user(session, n, r) for n, r in
             [("ann", Role.annotator), ("bob", Role.annotator), ("rita", Role.reviewer), ("eve", Role.engineer)]}
    ann, bob = users["ann"].id, users["bob"].id
    for i, pid in enumerate(ids[:n_pending]):
        flagged = i == flagged_at
        a, b = (1, 1) if flagged else (0, 2)
        session.add_all([
            LabelEvent(pair_id=pid, user_id=ann, kind=LabelKind.label, grade=a, seconds_on_card=3.0, flagged=flagged,
                       comment="too vague" if flagged else None),
            LabelEvent(pair_id=pid, user_id=bob, kind=LabelKind.label, grade=b, seconds_on_card=5.0,
                       comment="brand differs" if flagged else None)])
    withdrawn = LabelEvent(pair_id=ids[n_pending], user_id=ann, kind=LabelKind.label, grade=2, flagged=True,
                           comment="oops")
    session.add(withdrawn)
    session.flush()
    session.add_all([LabelEvent(pair_id=ids[n_pending], user_id=ann, kind=LabelKind.undo, supersedes_id=withdrawn.id)]
                    + [LabelEvent(pair_id=pid, user_id=uid, kind=LabelKind.label, grade=2, seconds_on_card=4.0)
                       for pid in ids[n_pending:] for uid in (ann, bob)])
    session.flush()
    return {"project": project, "ids": ids, "users": users}


def seed_label_check(session: Session, project_id: int, suspects: Sequence[tuple[int, int, int]],
                     clean: Sequence[int] = ()) -> int:
    """A stored label check without a model: ``suspects`` as (pair id, label seen, model grade), ranked in
    that order, then ``clean`` pairs (not suspected). Returns the check id."""
    from db.models import LabelCheck, LabelCheckItem
    from db.services.labels import last_event_id

    check = LabelCheck(project_id=project_id, method="ordinal", params={"model_version": "base"},
                       pairs=len(suspects) + len(clean), suspects=len(suspects),
                       last_event_id=last_event_id(session, project_id))
    session.add(check)
    session.flush()
    rows = [(pid, label, grade, True) for pid, label, grade in suspects] + [(pid, 0, 0, False) for pid in clean]
    session.add_all(LabelCheckItem(check_id=check.id, pair_id=pid, label=label, model_grade=grade,
                                   model_prob=0.9 if suspect else 0.6, label_prob=0.05 if suspect else 0.6,
                                   expected_grade=float(grade), quality=0.01 * rank if suspect else 0.9, rank=rank,
                                   suspect=suspect, reason=f"labelled {label}; the model says {grade}")
                    for rank, (pid, label, grade, suspect) in enumerate(rows, start=1))
    session.flush()
    return check.id


def run_together(work: Callable[[Any], None], people: Sequence[Any]) -> None:
    """``work(person)`` in one thread per person, all released at once; fails with the first errors raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(people))

    def run(person: Any) -> None:
        try:
            start.wait()
            work(person)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
