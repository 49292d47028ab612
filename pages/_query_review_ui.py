"""Review's per-query view: how consistently each query is graded (worst first), and one query's results with
every annotator's grade side by side, the grade that stands and the reviewer's decision.

Pick a query from the table (a row click) or type its exact text; the table's first row, the least
consistent query, is shown until then. One transaction: the per-query agreement table and the query's list.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from darl_core.errors import NotFoundError
from db.models import Project, User
from db.services import query_review, review
from pages._shared import db
from pages._text import frame, md, plain

ss = st.session_state


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _picked(ids: list[int]) -> None:
    rows = ss["review_query_table"].selection.rows
    if rows:
        ss["review_query"] = ids[rows[0]]
        ss["review_query_text"] = ""


def _grade(grades: list[str], g: int | None) -> str:
    return "" if g is None else grades[g] if 0 <= g < len(grades) else str(g)


def side_by_side(qr: Any, grades: list[str]) -> pd.DataFrame:
    """One row per result: its title, each annotator's grade (a column each), agreement, final grade."""
    rows = []
    for r in qr.rows:
        votes = set(r.grades.values())
        rows.append({"pair": r.pair_id, "result": r.title,
                     **{name: _grade(grades, r.grades.get(name)) for name in qr.annotators},
                     "agree": "" if len(r.grades) < 2 else "✓" if len(votes) == 1 else "✗",
                     "flag": "⚑" if r.flagged else "", "final": _grade(grades, r.final),
                     "adjudicated": _grade(grades, r.adjudicated)})
    return pd.DataFrame(rows, columns=["pair", "result", *qr.annotators, "agree", "flag", "final", "adjudicated"])


def query_view(user: User, project: Project, grades: list[str]) -> None:
    typed = (ss.get("review_query_text") or "").strip()
    with db() as session:
        table = review.agreement_report(session, user, project.id).by_query
        ids = [int(q) for q in table["query_id"]]
        wanted: int | str | None = typed or ss.get("review_query") or (ids[0] if ids else None)
        try:
            qr = query_review.query_review(session, user, project.id, wanted) if wanted is not None else None
        except NotFoundError as err:  # a typed text that is no query: say so, keep the table
            qr, missing = None, str(err)
        else:
            missing = None
    left, right = st.columns([3, 2], gap="medium", vertical_alignment="bottom")
    with right:
        st.text_input("Or a query's exact text", key="review_query_text", placeholder="e.g. cordless drill 18v")
    with left:
        st.subheader("Agreement per query")
        st.caption("Queries with two or more votes on a result, least consistent first. Click a row to see its "
                   "results side by side below.")
    if table.empty:
        st.info("No query has a result with two votes yet: set an overlap of 2 or an agreement share "
                "(Review → Settings) to compare annotators.")
    else:
        st.dataframe(frame(table.drop(columns=["query_id"])), key="review_query_table", hide_index=True,
                     on_select=lambda: _picked(ids), selection_mode="single-row", width="stretch",
                     height=min(38 + 35 * len(table), 38 + 35 * 6),
                     column_config={
                         "query": st.column_config.TextColumn("query", width="medium"),
                         "pairs": st.column_config.NumberColumn("results", width="small",
                                                                help="results with two or more votes"),
                         "votes": st.column_config.NumberColumn("votes", width="small"),
                         "unanimous": st.column_config.ProgressColumn(
                             "unanimous", format="percent", min_value=0.0, max_value=1.0, width="small",
                             help="share of those results whose votes all agree"),
                         "alpha": st.column_config.NumberColumn(
                             "α", format="%.2f", width="small",
                             help="Krippendorff's alpha (ordinal) over the query's results")})
    if missing:
        st.warning(md(missing), icon=":material/search_off:")
    if qr is None:
        return
    with st.container(border=True, key="review_query_list"):
        st.caption(f"Query · {len(qr.rows)} results · graded by {len(qr.annotators)} annotator(s)")
        st.markdown(f"### {md(qr.query)}")
        m1, m2, m3 = st.columns(3)
        m1.metric("Results with ≥ 2 votes", qr.pairs)
        m2.metric("Unanimous", "—" if math.isnan(qr.unanimous) else f"{qr.unanimous:.0%}")
        m3.metric("Krippendorff's α", _fmt(qr.alpha))
        st.dataframe(frame(side_by_side(qr, grades)), hide_index=True, key=f"review_query_grades_{qr.query_id}",
                     width="stretch", column_config={
                         "pair": st.column_config.NumberColumn("pair", width=50),
                         "result": st.column_config.TextColumn("result", width="large"),
                         **{plain(n): st.column_config.TextColumn(plain(n), width="small") for n in qr.annotators},
                         "agree": st.column_config.TextColumn("agree", width=50,
                                                              help="✓ every vote the same, ✗ they differ"),
                         "flag": st.column_config.TextColumn("flag", width=40)})
        st.caption("Results whose votes differ, or that were flagged, wait in the Disagreements view.")
