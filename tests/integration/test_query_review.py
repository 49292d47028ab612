"""Review per query (issue 24), on SQLite and PostgreSQL: a query's list with every annotator's grade side by
side, the review queue narrowed to one query, and per-query agreement on a hand-computed case."""

from __future__ import annotations

import math

import pytest

from darl_core.errors import NotFoundError, PermissionDeniedError
from db.models import LabelEvent, LabelKind, Role
from db.services import review
from db.services.query_review import query_review
from db.session import session_scope
from tests.seed import pair_ids, seed_project, seed_user

# pair index -> (ann, bob). Query 0 (pairs 0-4): (2,2) (0,2) (1,1), pair 3 ann only (flagged), pair 4 none.
# Query 1 (pairs 5-9): (0,0) (1,1). Query 2 (pairs 10-14): (2,0), then adjudicated 2.
VOTES = {0: (2, 2), 1: (0, 2), 2: (1, 1), 3: (1, None), 5: (0, 0), 6: (1, 1), 10: (2, 0)}


@pytest.fixture
def graded(database: str):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        project = seed_project(s, n_pairs=20)  # query 3 (pairs 15-19): no votes
        ann, bob = seed_user(s, "ann"), seed_user(s, "bob")
        rita = seed_user(s, "rita", Role.reviewer)
        ids = pair_ids(s, project.id)
        for i, grades in VOTES.items():
            for user, grade in zip((ann, bob), grades, strict=True):
                if grade is not None:
                    s.add(LabelEvent(pair_id=ids[i], user_id=user.id, kind=LabelKind.label, grade=grade,
                                     flagged=i == 3))
        s.add(LabelEvent(pair_id=ids[10], user_id=rita.id, kind=LabelKind.adjudication, grade=2))
    return project.id, ann, rita, ids


def test_per_query_agreement_matches_the_hand_computed_figures_worst_first(graded, database: str) -> None:  # type: ignore[no-untyped-def]
    pid, _, rita, _ = graded
    with session_scope(database) as s:
        rep = review.agreement_report(s, rita, pid)
    rows = rep.by_query.to_dict("records")
    # Ordinal alpha by hand. Query 0, units [2,2] [0,2] [1,1]: coincidences o02 = o20 = 1, o11 = 2, o22 = 2;
    # n_c = (1, 2, 3), n = 6; delta02 = (6 - 2)^2 = 16, delta01 = (3 - 1.5)^2 = 2.25, delta12 = (5 - 2.5)^2 = 6.25;
    # observed 2 x 16 = 32, expected 2 x (2 x 2.25 + 3 x 16 + 6 x 6.25) = 180; alpha = 1 - 5 x 32 / 180 = 1/9.
    # Query 1, units [0,0] [1,1]: no disagreement, alpha 1. Query 2, unit [2,0]: alpha = 1 - 1 x 2 / 2 = 0.
    assert [r["query"] for r in rows] == ["query 2 cordless drill", "query 0 cordless drill", "query 1 cordless drill"]
    assert [r["pairs"] for r in rows] == [1, 3, 2] and [r["votes"] for r in rows] == [2, 6, 4]
    assert [r["unanimous"] for r in rows] == pytest.approx([0.0, 2 / 3, 1.0])
    assert [r["alpha"] for r in rows] == pytest.approx([0.0, 1 / 9, 1.0])


def test_a_querys_list_shows_every_annotators_grade_side_by_side(graded, database: str) -> None:  # type: ignore[no-untyped-def]
    pid, ann, rita, ids = graded
    with session_scope(database) as s:
        q0 = query_review(s, rita, pid, "query 0 cordless drill")
        q2 = query_review(s, rita, pid, q0.query_id + 2)
    assert q0.annotators == ("ann", "bob") and [r.pair_id for r in q0.rows] == ids[:5]
    assert [r.grades for r in q0.rows] == [{"ann": 2, "bob": 2}, {"ann": 0, "bob": 2}, {"ann": 1, "bob": 1},
                                           {"ann": 1}, {}]
    assert [r.final for r in q0.rows] == [2, 0, 1, 1, None]  # a tie goes to the lower grade
    assert [r.flagged for r in q0.rows] == [False, False, False, True, False]
    assert (q0.pairs, q0.unanimous, q0.alpha) == (3, pytest.approx(2 / 3), pytest.approx(1 / 9))
    assert q2.rows[0].grades == {"ann": 2, "bob": 0} and q2.rows[0].adjudicated == 2 and q2.rows[0].final == 2
    assert q2.rows[1].final is None and math.isnan(query_review_empty(database, rita, pid, q0.query_id + 3).alpha)
    with session_scope(database) as s, pytest.raises(NotFoundError, match="No query 'no such query'"):
        query_review(s, rita, pid, "no such query")
    with session_scope(database) as s, pytest.raises(PermissionDeniedError):
        query_review(s, ann, pid, q0.query_id)


def query_review_empty(database: str, actor, pid: int, qid: int):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        out = query_review(s, actor, pid, qid)
    assert out.pairs == 0 and all(r.grades == {} for r in out.rows)
    return out


def test_the_review_queue_narrows_to_one_query(graded, database: str) -> None:  # type: ignore[no-untyped-def]
    pid, _, rita, ids = graded
    with session_scope(database) as s:
        qid = query_review(s, rita, pid, "query 0 cordless drill").query_id
        everything = review.review_queue(s, rita, pid)
        q0 = review.review_queue(s, rita, pid, review.ReviewFilters(query_id=qid))
        q1 = review.review_queue(s, rita, pid, review.ReviewFilters(query_id=qid + 1))
    assert [i.pair_id for i in everything.items] == [ids[1], ids[3]]  # disagreement, flag; pair 10 adjudicated
    assert [i.pair_id for i in q0.items] == [ids[1], ids[3]] and q0.matching == 2
    assert q1.items == [] and q1.matching == 0 and q1.pending == 2
