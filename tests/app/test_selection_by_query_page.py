"""AppTest: the Selection page starts a DASA round by pair (the default) or by query, with the results per
query and the query aggregate reaching the job."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from db.models import Job, Role
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import seed_project, seed_user


@pytest.fixture
def eve(sqlite_database: str) -> int:
    with session_scope(sqlite_database) as s:
        seed_project(s, n_pairs=20)
        return seed_user(s, "eve", Role.engineer).id


def _job(url: str) -> dict[str, Any]:
    with session_scope(url) as s:
        job = s.scalars(select(Job).where(Job.kind == "select")).one()
        return dict(job.params)


def test_by_pair_is_the_default(eve: int, sqlite_database: str) -> None:
    at = page("selection", eve).run()
    assert at.radio(key="select_by").value == "pair"
    at.number_input(key="select_budget").set_value(30)
    [b for b in at.button if b.label == "Select with DASA"][0].click().run()
    assert not at.exception and not at.error
    assert "select 30 pairs." in at.success[0].value
    params = _job(sqlite_database)
    assert (params["budget"], params["by"]) == (30, "pair")


def test_by_query_sends_results_per_query_and_the_aggregate(eve: int, sqlite_database: str) -> None:
    at = page("selection", eve).run()
    at.radio(key="select_by").set_value("query")
    at.number_input(key="select_per_query").set_value(4)
    at.selectbox(key="select_aggregate").set_value("max")
    at.number_input(key="select_budget").set_value(40)
    [b for b in at.button if b.label == "Select with DASA"][0].click().run()
    assert not at.exception and not at.error
    assert "select 40 pairs, up to 4 per query" in at.success[0].value
    params = _job(sqlite_database)
    assert (params["budget"], params["by"], params["per_query"], params["aggregate"]) == (40, "query", 4, "max")
