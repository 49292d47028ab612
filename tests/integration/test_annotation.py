"""Annotation service: queue order, overlap, leases and expiry, skip, undo, roles — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from darl_core.errors import ConflictError, PermissionDeniedError, StaleCardError
from db.models import LabelEvent, Lease, LeaseStatus, Role, utcnow
from db.services import annotation
from db.services.labels import final_labels
from db.session import session_scope
from tests.seed import pair_ids, run_together, seed_project, seed_round, seed_user


def _setup(database: str, n_pairs: int = 30, users: tuple[str, ...] = ("ann", "bob"), **settings):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        project = seed_project(s, n_pairs=n_pairs, settings=settings or None)
        people = [seed_user(s, name) for name in users]
        ids = pair_ids(s, project.id)
    return project.id, people, ids


def _next(database: str, user, pid: int, **kw):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        return annotation.next_card(s, user, pid, **kw)


def _label(database: str, user, step, grade: int = 1, **kw):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        return annotation.submit_label(s, user, step.card.lease_id, grade, 2.5, **kw)


def test_queue_order_round_first_then_priority_then_pool(database: str) -> None:
    pid, (ann, _), ids = _setup(database)
    with session_scope(database) as s:
        seed_round(s, pid, [ids[7], ids[3]])
        s.execute(annotation.text("UPDATE pairs SET priority = 5 WHERE id = :id"), {"id": ids[20]})
    seen = []
    step = _next(database, ann, pid)
    for _ in range(4):
        seen.append(step.card.pair_id)
        step = _label(database, ann, step)
    assert seen == [ids[7], ids[3], ids[20], ids[0]]
    assert step.progress.left_in_round == 0 and step.progress.done_today == 4


def test_resume_returns_the_same_card_and_reasons_are_shown_by_default(database: str) -> None:
    pid, (ann, _), ids = _setup(database)
    with session_scope(database) as s:
        seed_round(s, pid, ids[:3])
    first = _next(database, ann, pid)
    again = _next(database, ann, pid)
    assert again.card.lease_id == first.card.lease_id
    assert first.card.reasons is not None and "cluster" in first.card.reasons and first.card.why
    with session_scope(database) as s:
        admin = seed_user(s, "eng", Role.engineer)
        annotation.update_annotation_settings(s, admin, pid, show_reasons=False)
    hidden = _next(database, ann, pid).card
    assert hidden.reasons is None and hidden.why == ()


def test_overlap_two_distinct_annotators_never_the_same_pair_twice(database: str) -> None:
    pid, people, ids = _setup(database, n_pairs=4, users=("a", "b", "c"), overlap=2)
    graded: dict[str, list[int]] = {}
    for user in people:
        step = _next(database, user, pid)
        while step.card is not None:
            graded.setdefault(user.name, []).append(step.card.pair_id)
            step = _label(database, user, step)
    for name, got in graded.items():
        assert len(got) == len(set(got)), name
    per_pair = Counter(p for got in graded.values() for p in got)
    assert per_pair == {p: 2 for p in ids}


def test_agreement_share_sends_a_fixed_share_to_two_people(database: str) -> None:
    share = 0.3
    expected = sum(annotation.needed_votes(i, 1, share) == 2 for i in range(1, 2001))
    assert 500 <= expected <= 700  # ~30 % of ids
    pid, (ann, bob), ids = _setup(database, n_pairs=40, agreement_share=share)
    for user in (ann, bob):
        step = _next(database, user, pid)
        while step.card is not None:
            step = _label(database, user, step)
    with session_scope(database) as s:
        votes = Counter(s.scalars(select(LabelEvent.pair_id)))
    assert all(votes[p] == annotation.needed_votes(p, 1, share) for p in ids)
    assert any(v == 2 for v in votes.values())


def test_expired_lease_is_reassigned_and_a_late_label_is_kept(database: str) -> None:
    pid, (ann, bob), ids = _setup(database, n_pairs=3)
    held = _next(database, ann, pid)
    later = utcnow() + timedelta(minutes=11)
    other = _next(database, bob, pid, now=later)
    assert other.card.pair_id == held.card.pair_id
    with session_scope(database) as s:
        assert s.scalar(select(Lease.status).where(Lease.id == held.card.lease_id)) == LeaseStatus.expired
    _label(database, ann, held)  # typed before expiry noticed: saved, not lost
    with session_scope(database) as s:
        assert s.scalar(select(func.count()).select_from(LabelEvent)) == 1
        event = s.scalars(select(LabelEvent)).one()
        assert (event.pair_id, event.user_id, event.grade) == (held.card.pair_id, ann.id, 1)


def test_skip_gives_the_pair_to_someone_else_only(database: str) -> None:
    pid, (ann, bob), ids = _setup(database, n_pairs=2)
    step = _next(database, ann, pid)
    with session_scope(database) as s:
        after = annotation.skip(s, ann, step.card.lease_id)
    assert after.card.pair_id == ids[1]
    assert _next(database, bob, pid).card.pair_id == ids[0]
    _label(database, ann, after)
    assert _next(database, ann, pid).card is None


def test_undo_supersedes_and_brings_the_card_back(database: str) -> None:
    pid, (ann, _), ids = _setup(database, n_pairs=5)
    step = _next(database, ann, pid)
    first = step.card
    step = _label(database, ann, step, grade=2)
    with session_scope(database) as s:
        back = annotation.undo_last(s, ann, pid, step.card.lease_id)
    assert back.card.pair_id == first.pair_id and back.progress.done_today == 0
    with session_scope(database) as s:
        assert final_labels(s, pid) == {}
        with pytest.raises(ConflictError, match="Nothing to undo"):
            annotation.undo_last(s, ann, pid, back.card.lease_id)
    regraded = _label(database, ann, back, grade=0)
    assert regraded.card.pair_id == step.card.pair_id  # the card shown before the undo comes next
    with session_scope(database) as s:
        assert final_labels(s, pid)[first.pair_id].grade == 0
        kinds = Counter(k.value for k in s.scalars(select(LabelEvent.kind)))
    assert kinds == {"label": 2, "undo": 1}


def test_double_submission_writes_one_event(database: str) -> None:
    pid, (ann, _), _ids = _setup(database, n_pairs=3)
    step = _next(database, ann, pid)
    _label(database, ann, step)
    with pytest.raises(StaleCardError, match="already graded"):  # refused: never applied to the next card
        _label(database, ann, step)
    with session_scope(database) as s:
        assert s.scalar(select(func.count()).select_from(LabelEvent)) == 1


def test_flag_comment_and_time_are_recorded(database: str) -> None:
    pid, (ann, _), _ids = _setup(database, n_pairs=2)
    step = _next(database, ann, pid)
    _label(database, ann, step, flagged=True, comment="image shows a different brand")
    with session_scope(database) as s:
        ev = s.scalars(select(LabelEvent)).one()
    assert ev.flagged and ev.comment == "image shows a different brand" and ev.seconds_on_card == 2.5


def test_roles_and_ownership_are_checked_in_the_service(database: str) -> None:
    pid, (ann, bob), _ids = _setup(database, n_pairs=2)
    step = _next(database, ann, pid)
    with session_scope(database) as s, pytest.raises(PermissionDeniedError):
        annotation.submit_label(s, bob, step.card.lease_id, 1)
    with session_scope(database) as s, pytest.raises(PermissionDeniedError):
        annotation.update_annotation_settings(s, ann, pid, overlap=2)
    with session_scope(database) as s, pytest.raises(PermissionDeniedError):
        annotation.next_card(s, None, pid)  # type: ignore[arg-type]


def _grade_concurrently(database: str, pid: int, people: list, per_user: int) -> None:  # type: ignore[type-arg]
    """Each user in its own thread, all starting together: claim a card, then grade ``per_user`` cards."""
    def work(user) -> None:  # type: ignore[no-untyped-def]
        step = _next(database, user, pid)
        for i in range(per_user):
            step = _label(database, user, step, grade=i % 3)

    run_together(work, people)


def test_twenty_concurrent_annotators_no_duplicates_no_loss(database: str) -> None:
    """20 annotators x 200 labels, k = 1: exactly 4,000 events, each on its own pair, none lost."""
    n_users, per_user = 20, 200
    names = tuple(f"a{i:02d}" for i in range(n_users))
    pid, people, ids = _setup(database, n_pairs=n_users * per_user + 50, users=names)
    _grade_concurrently(database, pid, people, per_user)
    with session_scope(database) as s:
        events = list(s.execute(select(LabelEvent.pair_id, LabelEvent.user_id)))
        done = s.scalar(select(func.count()).select_from(Lease).where(Lease.status == LeaseStatus.done))
        active = s.scalar(select(func.count()).select_from(Lease).where(Lease.status == LeaseStatus.active))
    assert len(events) == n_users * per_user
    assert len({p for p, _ in events}) == len(events)  # no pair graded twice
    assert Counter(u for _, u in events) == {u.id: per_user for u in people}
    assert done == len(events) and active == n_users  # each holds the next card; nothing vanished


def test_twenty_concurrent_annotators_on_a_round_never_share_a_pair(database: str) -> None:
    """The round path too (pairs claimed by rank, not by the open-pair hint): no pair is leased twice.

    On PostgreSQL a claim whose lease count was read before a concurrent claim of the same pair
    committed would double-assign it; the count must be read after the row lock is held.
    """
    n_users, per_user = 20, 30
    names = tuple(f"r{i:02d}" for i in range(n_users))
    pid, people, ids = _setup(database, n_pairs=n_users * per_user + 20, users=names)
    with session_scope(database) as s:
        seed_round(s, pid, ids[: n_users * per_user])
    _grade_concurrently(database, pid, people, per_user)
    with session_scope(database) as s:
        taken = Counter(s.scalars(select(Lease.pair_id).where(Lease.status.in_((LeaseStatus.active, LeaseStatus.done)))))
        events = list(s.scalars(select(LabelEvent.pair_id)))
    assert [p for p, n in taken.items() if n > 1] == []
    assert len(events) == len(set(events)) == n_users * per_user
    assert set(ids[: n_users * per_user]) <= set(taken)  # the whole round was handed out first
