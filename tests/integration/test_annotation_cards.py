"""Annotation service, on SQLite and PostgreSQL: an action is refused unless it names the card that is on
the annotator's screen; undo walks back the last 10 cards; progress, the previous card and the reasons in
words that the grading screen shows."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select, update

from darl_core.errors import ConflictError, StaleCardError
from db.models import LabelEvent, Lease, LeaseStatus, RoundItem
from db.services import annotation
from db.session import session_scope
from tests.seed import pair_ids, seed_project, seed_round, seed_user


def _setup(database: str, n_pairs: int = 20):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        project = seed_project(s, n_pairs=n_pairs)
        ann = seed_user(s, "ann")
        ids = pair_ids(s, project.id)
    return project.id, ann, ids


def _events(database: str) -> Counter[str]:
    with session_scope(database) as s:
        return Counter(k.value for k in s.scalars(select(LabelEvent.kind)))


def _call(database: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
    with session_scope(database) as s:
        return fn(s, *args, **kw)


def test_an_action_for_a_card_no_longer_on_screen_is_refused_and_writes_nothing(database: str) -> None:
    pid, ann, ids = _setup(database)
    a = _call(database, annotation.next_card, ann, pid)
    b = _call(database, annotation.submit_label, ann, a.card.lease_id, 1, 2.0)  # A graded; B on screen
    assert b.card.pair_id != a.card.pair_id
    # A second key press for A (the page had not shown B yet): refused, not applied to B.
    with pytest.raises(StaleCardError, match="already graded"):
        _call(database, annotation.submit_label, ann, a.card.lease_id, 1, 0.1)
    with pytest.raises(StaleCardError):
        _call(database, annotation.skip, ann, a.card.lease_id)
    with pytest.raises(StaleCardError):  # the empty-queue screen's undo while a card is leased
        _call(database, annotation.undo_last, ann, pid, None)
    assert _events(database) == {"label": 1}
    # Undo from B brings A back; B is still leased but no longer on screen: B's keys are refused.
    back = _call(database, annotation.undo_last, ann, pid, b.card.lease_id)
    assert back.card.pair_id == a.card.pair_id
    with pytest.raises(StaleCardError, match="no longer the one on your screen"):
        _call(database, annotation.submit_label, ann, b.card.lease_id, 2, 0.1)
    with pytest.raises(StaleCardError):
        _call(database, annotation.skip, ann, b.card.lease_id)
    with pytest.raises(StaleCardError):  # a second U from B's screen must not withdraw another grade
        _call(database, annotation.undo_last, ann, pid, b.card.lease_id)
    assert _events(database) == {"label": 1, "undo": 1}
    with session_scope(database) as s:
        assert s.scalar(select(Lease.status).where(Lease.id == b.card.lease_id)) == LeaseStatus.active
    after = _call(database, annotation.submit_label, ann, back.card.lease_id, 0, 1.0)  # the card on screen: saved
    assert after.card.lease_id == b.card.lease_id and _events(database) == {"label": 2, "undo": 1}


def test_undo_walks_back_the_last_ten_cards_then_stops(database: str) -> None:
    pid, ann, ids = _setup(database, n_pairs=20)
    step = _call(database, annotation.next_card, ann, pid)
    graded = []
    for i in range(12):
        graded.append(step.card.pair_id)
        step = _call(database, annotation.submit_label, ann, step.card.lease_id, i % 3, 1.0)
        assert step.previous is not None and step.previous.pair_id == graded[-1] and step.previous.grade == i % 3
    shown = step.card.lease_id
    for n in range(1, annotation.UNDO_DEPTH + 1):
        back = _call(database, annotation.undo_last, ann, pid, shown)
        assert back.card.pair_id == graded[-n]  # newest first
        assert back.previous is not None and back.previous.pair_id == graded[-n - 1]
        shown = back.card.lease_id
    with pytest.raises(ConflictError, match="last 10 cards"):
        _call(database, annotation.undo_last, ann, pid, shown)
    with session_scope(database) as s:
        events = list(s.scalars(select(LabelEvent).order_by(LabelEvent.id)))
    undos = [e for e in events if e.kind.value == "undo"]
    assert len(undos) == 10 and len(events) == 22  # each undo appended, nothing deleted
    by_id = {e.id: e for e in events}
    assert [by_id[u.supersedes_id].pair_id for u in undos] == graded[::-1][:10]
    # Re-grading walks forward again: the card shown when U was first pressed comes back last.
    nxt = _call(database, annotation.submit_label, ann, shown, 2, 1.0)
    assert nxt.card.pair_id == graded[3]


def test_progress_counts_the_round_and_my_share(database: str) -> None:
    pid, ann, ids = _setup(database)
    with session_scope(database) as s:
        seed_round(s, pid, ids[:5])
        bob = seed_user(s, "bob")
    step = _call(database, annotation.next_card, ann, pid)
    assert (step.progress.round_total, step.progress.round_graded, step.progress.mine_in_round) == (5, 0, 0)
    for _ in range(2):
        step = _call(database, annotation.submit_label, ann, step.card.lease_id, 1, 1.0)
    other = _call(database, annotation.next_card, bob, pid)
    other = _call(database, annotation.submit_label, bob, other.card.lease_id, 1, 1.0)
    assert (other.progress.round_graded, other.progress.mine_in_round) == (3, 1)
    mine = _call(database, annotation.undo_last, ann, pid, step.card.lease_id)
    assert (mine.progress.round_total, mine.progress.round_graded, mine.progress.mine_in_round) == (5, 2, 1)


def test_the_card_says_why_it_was_picked_in_words(database: str) -> None:
    pid, ann, ids = _setup(database)
    with session_scope(database) as s:
        rnd = seed_round(s, pid, ids[:2])
        s.execute(update(RoundItem).where(RoundItem.round_id == rnd.id, RoundItem.pair_id == ids[0]).values(
            reasons={"score": 0.8, "parts": {"knn": 0.7}, "cluster": 2, "neighbours": [ids[9]],
                     "neighbour_similarity": [0.41], "is_control": False, "probs": [0.1, 0.46, 0.44],
                     "segment": {"name": "appliances", "labelled": 3, "pairs": 100}}))
    card = _call(database, annotation.next_card, ann, pid).card
    assert card.pair_id == ids[0]
    assert card.why == ("Few labelled pairs are like this one (closest labelled pair: 0.41 similar).",
                        "Segment appliances: 3% of pairs labelled.",
                        "The model is unsure between weak and strong.")
    assert not any(str(ids[9]) in s for s in card.why)  # no pair ids


def test_segment_reasons_count_labelled_pairs_outside_held_out_splits(database: str) -> None:
    from darl_core.selection import Selected
    from db.services.rounds import _segment_reasons

    pid, ann, ids = _setup(database, n_pairs=10)  # segments alternate tools, garden
    with session_scope(database) as s:
        s.execute(update(annotation.Pair).where(annotation.Pair.id == ids[8]).values(split="test"))
        sel = [Selected(index=0, pair_id=ids[0], rank=1, score=1.0, parts={}, cluster=0, neighbours=(),
                        neighbour_similarity=(), is_control=False)]
        got = _segment_reasons(s, pid, {ids[2], ids[8]}, sel)
        n = s.scalar(select(func.count()).select_from(annotation.Pair))
    assert n == 10
    assert got == {ids[0]: {"segment": {"name": "tools", "labelled": 1, "pairs": 4}}}
