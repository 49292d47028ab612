"""Gold pairs (issue 23 §3) on SQLite and PostgreSQL: marking (adjudicated pairs, reviewer role), the share of
an annotator's cards that are gold, gold answers scored against the adjudication (accuracy, quadratic kappa),
a gold answer kept as a vote that never changes the final grade, and each annotator's suspected share."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from darl_core.errors import ConfigError, PermissionDeniedError
from db.models import LabelEvent, LabelKind, Lease, Role
from db.services import annotation, gold, lists, review
from db.services.labels import final_labels
from db.session import session_scope
from tests.seed import pair_ids, seed_label_check, seed_project, seed_review_queue, seed_user


def _gold_project(s, n_pairs: int = 100, n_gold: int = 30, share: float = 0.05):  # type: ignore[no-untyped-def]
    """``n_pairs`` pool pairs; the first ``n_gold`` adjudicated by rita (grade = index % 3) and marked gold."""
    project = seed_project(s, n_pairs=n_pairs, settings={"gold_share": share})
    ids = pair_ids(s, project.id)
    users = {n: seed_user(s, n, r) for n, r in [("ann", Role.annotator), ("rita", Role.reviewer)]}
    for i, pid in enumerate(ids[:n_gold]):
        review.adjudicate(s, users["rita"], pid, i % 3)
    if n_gold:
        assert gold.mark_gold(s, users["rita"], project.id, ids[:n_gold]) == n_gold
    return project, ids, users


def test_only_a_reviewer_marks_and_only_adjudicated_pairs(database: str) -> None:
    with session_scope(database) as s:
        project, ids, users = _gold_project(s, n_pairs=10, n_gold=0)
        rita, ann = users["rita"], users["ann"]
        review.adjudicate(s, rita, ids[0], 2)
        with pytest.raises(PermissionDeniedError):
            gold.mark_gold(s, ann, project.id, [ids[0]])
        with pytest.raises(ConfigError, match=f"Pair {ids[1]} has no adjudication.*nothing was marked"):
            gold.mark_gold(s, rita, project.id, [ids[0], ids[1]])
        assert gold.gold_pair_ids(s, project.id) == set()
        view = gold.gold_view(s, rita, project.id, add=[ids[0]])
        assert view.changed == 1 and view.gold_pairs == 1 and view.adjudicated == 1
        assert view.rows[["pair", "grade", "adjudicated_by", "gold"]].values.tolist() == [[ids[0], "strong", "rita", True]]
        assert gold.mark_gold(s, rita, project.id, [ids[0]]) == 0  # already gold: nothing new
        assert gold.gold_view(s, rita, project.id, remove=[ids[0]]).gold_pairs == 0


def test_gold_share_is_validated_and_changes_nothing(database: str) -> None:
    with session_scope(database) as s:
        project = seed_project(s, n_pairs=2)
        eve = seed_user(s, "eve", Role.engineer)
        for bad in (0.7, -0.1, "lots"):
            with pytest.raises(ConfigError, match=r"`gold_share` must be a share of the queue from 0 to 0.5"):
                annotation.update_annotation_settings(s, eve, project.id, gold_share=bad)
        assert gold.gold_share(project) == 0.05  # the default, untouched
        annotation.update_annotation_settings(s, eve, project.id, gold_share=0.2)
        assert gold.gold_share(project) == 0.2


def _grade_cards(s, user, project_id: int, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Grade ``n`` cards (grade 1 each); the pairs shown, in order."""
    shown = []
    step = annotation.next_card(s, user, project_id)
    for _ in range(n):
        assert step.card is not None
        shown.append(step.card.pair_id)
        step = annotation.submit_label(s, user, step.card.lease_id, 1)
    return shown


@pytest.mark.parametrize("share", [0.5, 0.0])
def test_a_share_of_each_annotators_cards_is_gold(database: str, share: float) -> None:
    with session_scope(database) as s:
        project, ids, users = _gold_project(s, share=share)
        shown = _grade_cards(s, users["ann"], project.id, 40)
        served = [p for p in shown if p in set(ids[:30])]
        assert len(set(shown)) == 40  # nobody gets a pair twice, gold or not
        if share == 0:
            assert served == []
        else:
            assert 12 <= len(served) <= 28, len(served)  # about half of 40
        # rita adjudicated every gold pair: she never gets one, whatever the share
        assert not set(_grade_cards(s, users["rita"], project.id, 10)) & set(ids[:30])


def test_a_gold_answer_is_kept_as_a_vote_and_never_changes_the_adjudicated_grade(database: str) -> None:
    with session_scope(database) as s:
        project, ids, users = _gold_project(s, share=0.5)
        shown = _grade_cards(s, users["ann"], project.id, 12)  # every answer is "weak" (1)
        served = [p for p in shown if p in set(ids[:30])]
        assert served
        adjudicated = {p: ids.index(p) % 3 for p in served}
        finals = final_labels(s, project.id, served)
        assert {p: finals[p].grade for p in served} == adjudicated  # the gold answers changed no final grade
        assert all(finals[p].source == "adjudication" for p in served)
        events = s.execute(select(LabelEvent.pair_id, LabelEvent.grade).where(
            LabelEvent.user_id == users["ann"].id, LabelEvent.kind == LabelKind.label,
            LabelEvent.pair_id.in_(served))).all()
        assert sorted(events) == sorted((p, 1) for p in served)  # each answer stored as an ordinary vote
        answers = gold.gold_answers(s, project.id)
        assert sorted((a, g, r) for a, g, r, _ in answers) == sorted(("ann", 1, adjudicated[p]) for p in served)
        assert review.review_queue(s, users["rita"], project.id).pending == 0  # no gold pair went back to review


def test_gold_answers_are_scored_by_accuracy_and_weighted_kappa_per_week(database: str) -> None:
    with session_scope(database) as s:
        project, ids, users = _gold_project(s, n_pairs=6, n_gold=0)
        rita, ann = users["rita"], users["ann"]
        bob = seed_user(s, "bob", Role.annotator)
        s.add(LabelEvent(pair_id=ids[0], user_id=ann.id, kind=LabelKind.label, grade=2))  # before gold: not an answer
        s.flush()
        for pid, grade in zip(ids[:4], [0, 1, 2, 2], strict=True):
            review.adjudicate(s, rita, pid, grade)
        gold.mark_gold(s, rita, project.id, ids[:4])
        week1, week2 = datetime(2026, 11, 3, 10), datetime(2026, 11, 10, 9)  # a Tuesday, the next Tuesday
        # ann: references 0 1 2 2, answers 0 2 2 1 -> 2 of 4 right; quadratic kappa 7/11 by hand
        for pid, grade, at in [(ids[0], 0, week1), (ids[1], 2, week1), (ids[2], 2, week2), (ids[3], 1, week2)]:
            s.add(LabelEvent(pair_id=pid, user_id=ann.id, kind=LabelKind.label, grade=grade, created_at=at))
        wrong = LabelEvent(pair_id=ids[0], user_id=bob.id, kind=LabelKind.label, grade=2, created_at=week1)
        s.add(wrong)
        s.flush()
        s.add(LabelEvent(pair_id=ids[0], user_id=bob.id, kind=LabelKind.undo, supersedes_id=wrong.id))  # withdrawn
        s.add(LabelEvent(pair_id=ids[1], user_id=bob.id, kind=LabelKind.label, grade=1, created_at=week2))
        s.flush()
        rep = review.agreement_report(s, rita, project.id).quality
        assert rep is not None and rep.gold_pairs == 4
        people = rep.annotators.set_index("annotator")
        assert people.loc["ann", ["gold_answers", "gold_correct"]].tolist() == [4, 2]
        assert people.loc["ann", "gold_accuracy"] == pytest.approx(0.5)
        assert people.loc["ann", "gold_kappa"] == pytest.approx(7 / 11)
        assert people.loc["bob", ["gold_answers", "gold_correct"]].tolist() == [1, 1]  # the undone answer is gone
        weekly = rep.weekly[rep.weekly.annotator == "ann"].set_index("week")
        assert weekly.loc[datetime(2026, 11, 2), "gold_accuracy"] == pytest.approx(0.5)  # weeks start on Monday
        assert weekly.loc[datetime(2026, 11, 9), ["gold_answers", "gold_accuracy"]].tolist() == [2, 0.5]


def test_each_annotators_share_of_suspected_labels(database: str) -> None:
    with session_scope(database) as s:
        seeded = seed_review_queue(s)  # ann votes 0, bob 2 on the first pairs: the label seen is 0 (a tie: lower)
        ids, rita, pid = seeded["ids"], seeded["users"]["rita"], seeded["project"].id
        seed_label_check(s, pid, [(ids[0], 0, 2), (ids[1], 0, 2)], clean=[ids[2], ids[3]])
        rep = review.agreement_report(s, rita, pid).quality
        people = rep.annotators.set_index("annotator")
        assert people.loc["ann", ["checked_votes", "suspected_votes"]].tolist() == [4, 2]
        assert people.loc["ann", "suspected_share"] == pytest.approx(0.5)
        assert people.loc["bob", ["checked_votes", "suspected_votes", "suspected_share"]].tolist() == [4, 0, 0.0]
        assert rep.weekly.groupby("annotator")["suspected_share"].first().to_dict() == {"ann": 0.5, "bob": 0.0}


def test_a_gold_card_looks_like_a_round_card(database: str) -> None:
    from tests.seed import seed_round

    with session_scope(database) as s:
        project, ids, users = _gold_project(s, n_pairs=40, n_gold=20, share=0.5)
        seed_round(s, project.id, ids[:20], name="round 1").status = "closed"  # it picked the gold pairs once
        open_round = seed_round(s, project.id, ids[20:30], name="round 2")  # ordinary cards with reasons
        step = annotation.next_card(s, users["ann"], project.id)
        seen = []
        for _ in range(10):
            seen.append((step.card.pair_id, step.card.round_id, bool(step.card.why)))
            step = annotation.submit_label(s, users["ann"], step.card.lease_id, 1)
        gold_cards = [c for c in seen if c[0] in set(ids[:20])]
        assert gold_cards and all(why for _, _, why in seen)  # every card says why, gold or not
        # Leased under the open round, so "yours in this round" counts every card, gold or not.
        assert s.scalar(select(Lease.round_id).where(Lease.pair_id == gold_cards[0][0])) == open_round.id
        assert step.progress.mine_in_round == 10 and step.progress.round_total == 10


# --- list mode: gold comes as a list of one query ------------------------------------------------------------------


def _list_project(s, gold_at, share: float, n_pairs: int = 100):  # type: ignore[no-untyped-def]
    """A list-mode project (5 pairs per query); the pairs at indices ``gold_at`` adjudicated by rita and gold."""
    project = seed_project(s, n_pairs=n_pairs, settings={"gold_share": share, "annotation_mode": "list"})
    ids = pair_ids(s, project.id)
    users = {n: seed_user(s, n, r) for n, r in [("ann", Role.annotator), ("rita", Role.reviewer)]}
    gold_ids = [ids[i] for i in gold_at]
    for i in gold_at:
        review.adjudicate(s, users["rita"], ids[i], i % 3)
    gold.mark_gold(s, users["rita"], project.id, gold_ids)
    return project, ids, set(gold_ids), users


def _grade_lists(s, user, project_id: int, most: int = 100) -> list[list[int]]:  # type: ignore[no-untyped-def]
    """Grade lists (grade 1 for every item) until none is left; the pairs of each list, in the order shown."""
    shown: list[list[int]] = []
    ql = lists.next_list(s, user, project_id)
    while ql is not None and len(shown) < most:
        shown.append([it.pair_id for it in ql.items])
        ql = lists.submit_list(s, user, ql.list_id, {it.lease_id: 1 for it in ql.items})
    return shown


def test_list_mode_serves_gold_as_a_list_of_one_query_with_its_ordinary_pairs(database: str) -> None:
    from db.models import Pair

    with session_scope(database) as s:
        # 40 queries of 5 pairs; queries 0-23 have two gold pairs each (48) and three ordinary ones.
        gold_at = [i for i in range(120) if i % 5 in (0, 1)]
        project, ids, gold_ids, users = _list_project(s, gold_at, share=0.1, n_pairs=200)
        shown = _grade_lists(s, users["ann"], project.id)
        flat = [p for lst in shown for p in lst]
        assert len(flat) == len(set(flat))  # nobody gets a pair twice, gold or not
        assert len([p for p in flat if p not in gold_ids]) == 152  # all the ordinary work was served
        query_of = dict(s.execute(select(Pair.id, Pair.query_id).where(Pair.id.in_(flat))).all())
        assert all(len({query_of[p] for p in lst}) == 1 for lst in shown)  # every list is one query
        gold_lists = [lst for lst in shown if set(lst) & gold_ids]
        # A gold list holds its query's gold pairs, with the query's ordinary pairs when some are still open,
        # in pair order; gold is about 10% of the pairs graded (ordinary lists hold 3-5 pairs here, not 10).
        assert all(len(set(lst) & gold_ids) == 2 and len(lst) in (2, 5) and lst == sorted(lst) for lst in gold_lists)
        assert any(len(lst) == 5 for lst in gold_lists)
        served = len(set(flat) & gold_ids)
        assert 0.03 <= served / len(flat) <= 0.18, (served, len(flat))
        answers = gold.gold_answers(s, project.id)
        assert sorted(a[0] for a in answers) == ["ann"] * served  # each gold item is scored as a gold answer
        # rita adjudicated every gold pair: her lists never hold one
        assert not {p for lst in _grade_lists(s, users["rita"], project.id) for p in lst} & gold_ids


def test_list_mode_gold_share_zero_and_no_gold_alone(database: str) -> None:
    with session_scope(database) as s:
        # queries 0-5 are all gold (30 pairs), queries 6-7 ordinary (10 pairs); chance per list 0.1 * 10 / 5 = 0.2
        project, ids, gold_ids, users = _list_project(s, range(30), share=0.1, n_pairs=40)
        shown = _grade_lists(s, users["ann"], project.id)
        ordinary = [p for lst in shown for p in lst if p not in gold_ids]
        assert sorted(ordinary) == ids[30:]
        served = {p for lst in shown for p in lst} & gold_ids
        assert len(served) < 30  # gold left for ann, but no ordinary work: nothing more is served
        assert lists.next_list(s, users["ann"], project.id) is None
        annotation.update_annotation_settings(s, seed_user(s, "eve", Role.engineer), project.id, gold_share=0.0)
        bob = seed_user(s, "bob", Role.annotator)
        assert not {p for lst in _grade_lists(s, bob, project.id) for p in lst} & gold_ids


def test_a_gold_list_is_leased_under_the_open_round(database: str) -> None:
    from tests.seed import seed_round

    with session_scope(database) as s:
        project, ids, gold_ids, users = _list_project(s, [0, 1, 5, 6], share=0.5, n_pairs=30)  # chance 1
        seed_round(s, project.id, [ids[0]], name="round 0").status = "closed"  # it picked one gold pair once
        open_round = seed_round(s, project.id, ids[10:30], name="round 1")
        ql = lists.next_list(s, users["ann"], project.id)
        assert ql is not None and [it.pair_id for it in ql.items] == ids[0:5]  # 2 gold + 3 ordinary of query 0
        rounds = dict(s.execute(select(Lease.pair_id, Lease.round_id).where(Lease.pair_id.in_(ids[0:5]))).all())
        assert rounds == {ids[0]: open_round.id, ids[1]: open_round.id, ids[2]: None, ids[3]: None, ids[4]: None}
        # The gold pair a round picked says why, as a card from that round would; the others have no round.
        assert [bool(it.why) for it in ql.items] == [True, False, False, False, False]
        nxt = lists.submit_list(s, users["ann"], ql.list_id, {it.lease_id: 2 for it in ql.items})
        assert nxt is not None and [it.pair_id for it in nxt.items] == ids[5:10]  # the next gold query
        assert nxt.progress.mine_in_round == 2  # the gold answers count in the round, as gold cards do
