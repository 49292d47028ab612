"""Vote aggregation: undo, corrections, adjudication, ties toward the lower grade."""

from __future__ import annotations

from darl_core.labels import Event, aggregate


def ev(i: int, kind: str, grade: int | None, user: int | None = 1, sup: int | None = None) -> Event:
    return Event(id=i, kind=kind, grade=grade, user_id=user, supersedes=sup)


def test_majority_and_agreement() -> None:
    final = aggregate([ev(1, "label", 2, 1), ev(2, "label", 2, 2), ev(3, "label", 1, 3)])
    assert final is not None
    assert (final.grade, final.source, final.n_votes) == (2, "majority", 3)
    assert abs(final.agreement - 2 / 3) < 1e-9


def test_tie_breaks_toward_lower_grade() -> None:
    final = aggregate([ev(1, "label", 2, 1), ev(2, "label", 0, 2)])
    assert final is not None and final.grade == 0 and final.agreement == 0.5


def test_undo_removes_the_vote_it_supersedes() -> None:
    assert aggregate([ev(1, "label", 2), ev(2, "undo", None, sup=1)]) is None
    final = aggregate([ev(1, "label", 2), ev(2, "undo", None, sup=1), ev(3, "label", 1)])
    assert final is not None and final.grade == 1 and final.n_votes == 1


def test_correction_replaces_only_the_superseded_vote() -> None:
    final = aggregate([ev(1, "imported", 0, None), ev(2, "imported", 2, None, sup=1), ev(3, "label", 2, 5)])
    assert final is not None and final.grade == 2 and final.n_votes == 2


def test_adjudication_wins_over_votes() -> None:
    final = aggregate([ev(1, "label", 2, 1), ev(2, "label", 2, 2), ev(3, "adjudication", 0, 9)])
    assert final is not None and (final.grade, final.source) == (0, "adjudication")
    assert final.agreement == 0.0  # nobody voted what the reviewer decided


def test_several_imported_votes_of_one_pair_count_separately() -> None:
    """Issue 26.4: ``import --on-conflict votes`` stores each row as an imported event (user NULL, no
    supersedes); every one is a vote, not one vote per (missing) annotator."""
    two = aggregate([ev(1, "imported", 2, None), ev(2, "imported", 0, None)])
    assert two is not None and (two.grade, two.n_votes, two.agreement) == (0, 2, 0.5)  # tie -> lower grade
    assert two.votes == ((None, 2), (None, 0)) and two.vote_counts == {2: 1, 0: 1}
    three = aggregate([ev(1, "imported", 2, None), ev(2, "imported", 0, None), ev(3, "imported", 2, None)])
    assert three is not None and (three.grade, three.source, three.n_votes) == (2, "majority", 3)
    assert abs(three.agreement - 2 / 3) < 1e-9
    # a re-import superseded two of them and withdrew the third: only the new vote stands
    redone = aggregate([ev(1, "imported", 2, None), ev(2, "imported", 0, None), ev(3, "imported", 2, None),
                        ev(4, "imported", 1, None, sup=1), ev(5, "undo", None, None, sup=2),
                        ev(6, "undo", None, None, sup=3)])
    assert redone is not None and (redone.grade, redone.n_votes, redone.agreement) == (1, 1, 1.0)
    # with an annotator's vote beside them, the imported votes still count one each
    mixed = aggregate([ev(1, "imported", 1, None), ev(2, "imported", 1, None), ev(3, "label", 2, 7)])
    assert mixed is not None and (mixed.grade, mixed.n_votes) == (1, 3)
