"""Review: adjudicate pairs whose votes disagree (or were flagged), the agreement dashboard, and (for
engineers) the project's annotation settings. Each view makes one service call."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import streamlit as st

from db.models import Role
from db.services import annotation, review
from db.services.projects import project_settings
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, safe_figure

user = require_role(Role.reviewer)
project = selected_project()
grades: list[str] = list(project.grades)
views = ["Disagreements", "Agreement"] + (["Settings"] if Role(user.role).allows(Role.engineer) else [])
st.title("Review")
view = st.segmented_control("View", views, default=views[0], key="review_view", label_visibility="collapsed")


def _decide(pair_id: int, grade: int) -> None:
    st.session_state["review_decision"] = (pair_id, grade, st.session_state.get(f"review_comment_{pair_id}"))


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


if view == "Disagreements":
    decision = st.session_state.pop("review_decision", None)
    with db() as session:
        items, total = review.adjudicate_and_list(session, user, project.id, decision, limit=20)
    if decision:
        st.toast(f"Pair {decision[0]} adjudicated as “{md(grades[decision[1]])}”.", icon=":material/gavel:")
    st.caption(f"{total} pair(s) wait for adjudication: votes disagree or an annotator flagged them.")
    if not items:
        st.success("No disagreements to review.", icon=":material/task_alt:")
    for it in items[:5]:
        with st.container(border=True, key=f"review_item_{it.pair_id}"):
            st.markdown(f"**{md(it.query)}** → {md(it.title)}" + ("  :red-badge[flagged]" if it.flagged else ""))
            if it.text:
                st.caption(md(it.text[:400]))
            st.dataframe(frame(pd.DataFrame([{"annotator": v.annotator, "grade": grades[v.grade], "flagged": v.flagged,
                                        "comment": v.comment or "", "seconds": v.seconds_on_card} for v in it.votes])),
                         hide_index=True, key=f"review_votes_{it.pair_id}")
            st.text_input("Comment (optional)", key=f"review_comment_{it.pair_id}")
            st.caption(f"Standing now: **{md(grades[it.majority])}** (majority of votes, a tie goes to the lower "
                       "grade), highlighted. Click the grade you decide on.")
            cols = st.columns(len(grades))
            for g, (col, name) in enumerate(zip(cols, grades, strict=True)):
                col.button(md(name), key=f"review_grade_{it.pair_id}_{g}", on_click=_decide, args=(it.pair_id, g),
                           type="primary" if g == it.majority else "secondary", width="stretch")

elif view == "Agreement":
    with db() as session:
        rep = review.agreement_report(session, user, project.id)
    for note in rep.notes:
        st.info(md(note))
    m1, m2 = st.columns(2)
    m1.metric("Krippendorff's α (ordinal)", _fmt(rep.alpha_overall))
    m2.metric("Pairs with ≥ 2 votes", rep.alpha_units)
    left, right = st.columns(2)
    if not rep.kappa_pairs.empty:
        both = pd.concat([rep.kappa_pairs, rep.kappa_pairs.rename(columns={"annotator_a": "annotator_b",
                                                                            "annotator_b": "annotator_a"})])
        grid = both.pivot_table(index="annotator_a", columns="annotator_b", values="kappa")
        fig = px.imshow(grid, zmin=-1, zmax=1, color_continuous_scale="RdBu", text_auto=".2f",
                        title="Quadratic-weighted κ per annotator pair")
        left.plotly_chart(safe_figure(fig), key="review_kappa_chart")
    if not rep.alpha_by_segment.empty:
        fig = px.bar(rep.alpha_by_segment, x="segment", y="alpha", hover_data=["units"], range_y=[-1, 1],
                     title="Krippendorff's α per segment")
        right.plotly_chart(safe_figure(fig), key="review_alpha_chart")
    if not rep.annotators.empty:
        a, b = st.columns(2)
        a.plotly_chart(safe_figure(px.bar(rep.annotators, x="annotator", y="labels_per_hour", hover_data=["labels", "median_seconds"],
                              title="Throughput (labels per active hour)")), key="review_throughput_chart")
        b.plotly_chart(safe_figure(px.bar(rep.annotators, x="annotator", y="accuracy", hover_data=["adjudicated"], range_y=[0, 1],
                              title="Accuracy on adjudicated pairs")), key="review_accuracy_chart")
        st.dataframe(frame(rep.annotators), hide_index=True, key="review_annotators_table")

elif view == "Settings":
    current = project_settings(project)
    with st.form("review_settings"):
        overlap = st.number_input("Annotators per pair (overlap k)", 1, 5, int(current["overlap"]), key="set_overlap")
        share = st.slider("Extra share of pairs graded twice (for agreement, when k = 1)", 0.0, 1.0,
                          float(current["agreement_share"]), 0.05, key="set_share")
        minutes = st.number_input("Lease minutes", 1, 240, int(current["lease_minutes"]), key="set_minutes")
        reasons = st.toggle("Show graders why a pair was picked (OOD score, cluster)", bool(current["show_reasons"]),
                            key="set_reasons", help="On by default (the Selection page has the same switch): knowing a "
                                                         "pair is 'unusual' can bias the grade.")
        saved = st.form_submit_button("Save", type="primary")
    if saved:
        with db() as session:
            annotation.update_annotation_settings(session, user, project.id, overlap=int(overlap),
                                                  agreement_share=float(share), lease_minutes=int(minutes),
                                                  show_reasons=bool(reasons))
        st.success("Saved. The queue now follows the new settings.", icon=":material/check:")
