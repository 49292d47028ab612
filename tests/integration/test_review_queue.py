"""The review queue reaches every pending pair: filters, paging and counts; a pair's flag and comments in
every export format; the flag rate per annotator — on SQLite and PostgreSQL (issue 21 §4)."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select

from darl_core.errors import ConfigError
from db.models import LabelEvent, ModelVersion, PairScore, Project
from db.services import review
from db.services.exports import export_frame, to_bytes
from db.services.review import ReviewFilters
from db.session import session_scope
from tests.seed import seed_review_queue, seed_round, seed_user


@pytest.fixture
def queue(database: str) -> dict[str, Any]:
    with session_scope(database) as s:
        seeded = seed_review_queue(s)
        ids = seeded["ids"]
        carl = seed_user(s, "carl")
        s.add_all([LabelEvent(pair_id=pid, user_id=carl.id, kind="label", grade=1) for pid in ids[:3]])
        rnd = seed_round(s, seeded["project"].id, [ids[3], ids[10], ids[13]])
        return {"pid": seeded["project"].id, "ids": ids, "rita": seeded["users"]["rita"], "round": rnd.id}


def _q(url: str, q: dict[str, Any], filters: ReviewFilters | None = None, offset: int = 0,
       limit: int = 50) -> review.ReviewQueue:
    with session_scope(url) as s:
        return review.review_queue(s, q["rita"], q["pid"], filters, offset, limit)


def test_pages_and_counts_reach_the_eleventh_pair(queue: dict[str, Any], database: str) -> None:
    ids = queue["ids"]
    first = _q(database, queue, limit=5)
    assert (first.pending, first.matching, first.flagged, first.disagreements) == (12, 12, 1, 11)
    assert [it.pair_id for it in first.items] == ids[:5]
    assert [it.pair_id for it in _q(database, queue, offset=5, limit=5).items] == ids[5:10]
    last = _q(database, queue, offset=10, limit=5)
    assert [it.pair_id for it in last.items] == ids[10:12] and last.items[0].flagged
    beyond = _q(database, queue, offset=40, limit=5)  # past the end (the last page was adjudicated): the last page
    assert beyond.offset == 10 and [it.pair_id for it in beyond.items] == ids[10:12]
    assert first.segments == ["garden", "tools"] and first.annotators == ["ann", "bob", "carl"]
    assert first.rounds == [(queue["round"], f"#{queue['round']} round 1")]


def test_flagged_only_gives_the_flagged_pair_with_every_vote(queue: dict[str, Any], database: str) -> None:
    got = _q(database, queue, ReviewFilters(flagged_only=True))
    assert (got.matching, got.pending) == (1, 12) and [it.pair_id for it in got.items] == [queue["ids"][10]]
    item = got.items[0]
    assert item.flagged and not item.disagree and item.query and item.title == "Item 10 title"
    assert [(v.annotator, v.grade, v.flagged, v.comment) for v in item.votes] == [
        ("ann", 1, True, "too vague"), ("bob", 1, False, "brand differs")]
    assert all(v.at is not None for v in item.votes) and item.prediction is None  # no current version


@pytest.mark.parametrize(("filters", "expected"), [
    (ReviewFilters(disagreements_only=True), [i for i in range(12) if i != 10]),
    (ReviewFilters(segment="garden"), [1, 3, 5, 7, 9, 11]),
    (ReviewFilters(annotator="carl"), [0, 1, 2]),
    (ReviewFilters(grade=1), [0, 1, 2, 10]),  # a standing vote of grade 1 (carl on 0-2, both on 10)
    (ReviewFilters(grade=2, segment="tools"), [0, 2, 4, 6, 8]),
    (ReviewFilters(flagged_only=True, segment="garden"), []),
    (ReviewFilters(annotator="nobody"), []),
])
def test_filters(queue: dict[str, Any], database: str, filters: ReviewFilters, expected: list[int]) -> None:
    got = _q(database, queue, filters)
    assert [it.pair_id for it in got.items] == [queue["ids"][i] for i in expected]
    assert got.matching == len(expected) and got.pending == 12


def test_round_filter(queue: dict[str, Any], database: str) -> None:
    got = _q(database, queue, ReviewFilters(round_id=queue["round"]))
    assert [it.pair_id for it in got.items] == [queue["ids"][3], queue["ids"][10]]  # ids[13] is not pending


def test_bad_filters_name_the_field(queue: dict[str, Any], database: str) -> None:
    with pytest.raises(ConfigError, match="`grade` must be 0..2"):
        _q(database, queue, ReviewFilters(grade=3))
    with pytest.raises(ConfigError, match="`offset`"):
        _q(database, queue, offset=-1)
    with pytest.raises(ConfigError, match="`limit`"):
        _q(database, queue, limit=0)


def test_prediction_of_the_current_version_and_adjudicating_from_a_filtered_list(queue: dict[str, Any],
                                                                                 database: str) -> None:
    flagged = queue["ids"][10]
    with session_scope(database) as s:
        mv = ModelVersion(project_id=queue["pid"], name="ft-3", stage="ft")
        s.add(mv)
        s.flush()
        s.add(PairScore(pair_id=flagged, model_version_id=mv.id, predicted_grade=2, expected_grade=1.7,
                        probs=[0.1, 0.1, 0.8]))
        s.get(Project, queue["pid"]).current_version_id = mv.id
    item = _q(database, queue, ReviewFilters(flagged_only=True)).items[0]
    assert item.prediction == review.Prediction("ft-3", 2, 1.7, [0.1, 0.1, 0.8])
    with session_scope(database) as s:
        after = review.adjudicate_and_list(s, queue["rita"], queue["pid"], (flagged, 1, "vague, keep weak"),
                                           ReviewFilters(flagged_only=True))
    assert (after.matching, after.pending, after.flagged, after.items) == (0, 11, 0, [])


def _read(data: bytes, fmt: str) -> pd.DataFrame:
    if fmt == "csv":
        return pd.read_csv(io.BytesIO(data), keep_default_na=False)
    if fmt == "jsonl":
        return pd.DataFrame([json.loads(line) for line in data.decode().splitlines()])
    return pd.read_parquet(io.BytesIO(data))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_carry_flag_and_comments(queue: dict[str, Any], database: str, fmt: str) -> None:
    ids = queue["ids"]
    with session_scope(database) as s:
        review.adjudicate(s, queue["rita"], ids[0], 2, "brand matches")
        out = _read(to_bytes(export_frame(s, s.get(Project, queue["pid"])), fmt), fmt).set_index("pair_id")
    flagged = out["flagged"].map(lambda v: v in (True, "True", "true"))
    assert flagged.to_dict() == {pid: pid == ids[10] for pid in ids}  # the undone flag on ids[12] is gone
    assert out.loc[ids[10], "comments"] == "ann: too vague | bob: brand differs"
    assert out.loc[ids[0], "comments"] == "rita (review): brand matches"
    assert out.loc[ids[12], "comments"] == "" and out.loc[ids[5], "comments"] == ""


def test_flag_rate_per_annotator(queue: dict[str, Any], database: str) -> None:
    with session_scope(database) as s:
        rep = review.agreement_report(s, queue["rita"], queue["pid"])
        standing = s.scalar(select(func.count()).select_from(LabelEvent).where(LabelEvent.kind == "label")) - 1
    people = rep.annotators.set_index("annotator")
    assert int(people["labels"].sum()) == standing  # ann's undone vote is not counted
    assert people.loc["ann", "flagged"] == 1 and people.loc["ann", "flag_rate"] == pytest.approx(1 / 14)
    assert people.loc["bob", "flagged"] == 0 and people.loc["bob", "flag_rate"] == 0.0
    assert not math.isnan(people.loc["carl", "flag_rate"])
