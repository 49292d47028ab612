"""Review service: disagreement queue, adjudication, agreement report — on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest

from darl_core.errors import PermissionDeniedError
from db.models import Role
from db.services import annotation, review
from db.services.labels import final_labels
from db.session import session_scope
from tests.seed import seed_project, seed_user

# pair index -> (ann's grade, bob's grade); pair 3 is flagged by ann
GRADES = [(2, 2), (0, 2), (1, 1), (1, 0), (0, 0), (2, 2)]


@pytest.fixture
def graded(database: str):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        project = seed_project(s, n_pairs=len(GRADES), settings={"overlap": 2})
        ann, bob = seed_user(s, "ann"), seed_user(s, "bob")
        rev = seed_user(s, "rita", Role.reviewer)
    for who, user in enumerate((ann, bob)):
        with session_scope(database) as s:
            step = annotation.next_card(s, user, project.id)
        i = 0
        while step.card is not None:
            with session_scope(database) as s:
                step = annotation.submit_label(s, user, step.card.lease_id, GRADES[i][who], 4.0 + i,
                                               flagged=(who == 0 and i == 3), comment="odd" if who == 0 and i == 3 else None)
            i += 1
    return project.id, ann, rev


def test_queue_lists_disagreements_and_flags_then_adjudication_settles(graded, database: str) -> None:  # type: ignore[no-untyped-def]
    pid, ann, rev = graded
    with session_scope(database) as s:
        queue = review.review_queue(s, rev, pid)
        items, total = queue.items, queue.pending
    assert total == 2 and [it.pair_id - items[0].pair_id for it in items] == [0, 2]
    first = items[0]
    assert sorted(v.grade for v in first.votes) == [0, 2] and first.majority == 0  # tie -> lower grade
    assert items[1].flagged and any(v.comment == "odd" for v in items[1].votes)
    with session_scope(database) as s:
        review.adjudicate(s, rev, first.pair_id, 2, "brand matches")
    with session_scope(database) as s:
        queue = review.review_queue(s, rev, pid)
        items, total = queue.items, queue.pending
        final = final_labels(s, pid)[first.pair_id]
    assert total == 1 and final.grade == 2 and final.source == "adjudication"


def test_annotators_cannot_review(graded, database: str) -> None:  # type: ignore[no-untyped-def]
    pid, ann, _ = graded
    with session_scope(database) as s, pytest.raises(PermissionDeniedError):
        review.review_queue(s, ann, pid)
    with session_scope(database) as s, pytest.raises(PermissionDeniedError):
        review.adjudicate(s, ann, 1, 0)


def test_agreement_report(graded, database: str) -> None:  # type: ignore[no-untyped-def]
    pid, _, rev = graded
    with session_scope(database) as s:
        items = review.review_queue(s, rev, pid).items
        review.adjudicate(s, rev, items[0].pair_id, 2)
    with session_scope(database) as s:
        rep = review.agreement_report(s, rev, pid)
    assert rep.kappa_pairs.to_dict("records")[0]["n"] == len(GRADES)
    assert -1 <= rep.kappa_pairs["kappa"].iloc[0] <= 1 and rep.alpha_units == len(GRADES)
    assert not math.isnan(rep.alpha_overall) and set(rep.alpha_by_segment["segment"]) == {"tools", "garden"}
    people = rep.annotators.set_index("annotator")
    assert people.loc["ann", "labels"] == len(GRADES) and people.loc["bob", "adjudicated"] == 1
    assert people.loc["bob", "accuracy"] == 1.0 and people.loc["ann", "accuracy"] == 0.0
    assert people.loc["ann", "median_seconds"] == pytest.approx(6.5)
