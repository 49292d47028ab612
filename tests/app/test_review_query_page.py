"""AppTest: Review's per-query view lists the queries least consistent first and shows one query's results
with every annotator's grade side by side."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from db.models import LabelEvent, LabelKind, Role
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_project, seed_user

ANN = [0, 1, 2, 2, 0, 1, 1, 1, 2, 2]
BOB = [2, 1, 0, 2, 0, 1, 1, 1, 2, 2]  # query 0: two of five differ; query 1: all the same


@pytest.fixture
def rita(sqlite_database: str) -> dict[str, Any]:
    with session_scope(sqlite_database) as s:
        project = seed_project(s, n_pairs=10)
        ids = pair_ids(s, project.id)
        ann, bob = seed_user(s, "ann", Role.annotator), seed_user(s, "bob", Role.annotator)
        for pid, a, b in zip(ids, ANN, BOB, strict=True):
            s.add_all([LabelEvent(pair_id=pid, user_id=ann.id, kind=LabelKind.label, grade=a, flagged=pid == ids[2]),
                       LabelEvent(pair_id=pid, user_id=bob.id, kind=LabelKind.label, grade=b)])
        return {"rita": seed_user(s, "rita", Role.reviewer).id, "ids": ids}


def _grid(at: AppTest) -> Any:
    """The side-by-side table (a read-only frame after the per-query table)."""
    (grid,) = [d for d in at.dataframe if d.key != "review_query_table"]
    return grid.value


def _queries(rita: dict[str, Any]) -> AppTest:
    at = page("review", rita["rita"]).run()
    at.segmented_control(key="review_view").set_value("Queries").run()
    assert not at.exception and not at.error
    return at


def test_queries_least_consistent_first_and_the_worst_shown_side_by_side(rita: dict[str, Any]) -> None:
    at = _queries(rita)
    table = at.dataframe(key="review_query_table").value
    assert table["query"].tolist() == ["query 0 cordless drill", "query 1 cordless drill"]
    assert table["unanimous"].tolist() == [pytest.approx(0.6), 1.0]
    grid = _grid(at)
    assert grid["result"].tolist() == [f"Item {i} title" for i in range(5)]
    assert grid["ann"].tolist() == ["irrelevant", "weak", "strong", "strong", "irrelevant"]
    assert grid["bob"].tolist() == ["strong", "weak", "irrelevant", "strong", "irrelevant"]
    assert grid["agree"].tolist() == ["✗", "✓", "✗", "✓", "✓"]
    assert grid["flag"].tolist() == ["", "", "⚑", "", ""]
    assert "query 0 cordless drill" in " ".join(m.value for m in at.markdown)
    assert [m.value for m in at.metric][:2] == ["5", "60%"]


def test_a_query_by_its_text_and_an_unknown_text_is_explained(rita: dict[str, Any]) -> None:
    at = _queries(rita)
    at.text_input(key="review_query_text").input("query 1 cordless drill").run()
    assert not at.exception and not at.error
    grid = _grid(at)
    assert grid["result"].tolist() == [f"Item {i} title" for i in range(5, 10)]
    assert set(grid["agree"]) == {"✓"} and at.metric[1].value == "100%"
    at.text_input(key="review_query_text").input("no such query").run()
    assert not at.exception
    assert "No query 'no such query'" in at.warning[0].value
    assert at.dataframe(key="review_query_table").value["query"].tolist()[0] == "query 0 cordless drill"

