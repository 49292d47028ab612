"""Overview: what the selected project holds and how far labelling has come."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from db.models import Role
from db.services.stats import project_overview
from pages._shared import db, require_role, selected_project

require_role(Role.annotator)
project = selected_project()
with db() as session:
    ov = project_overview(session, project)

st.title(project.name)
st.caption("Grade scale (lowest first): " + " < ".join(project.grades))
cols = st.columns(5)
cols[0].metric("Pairs", f"{ov.pairs:,}")
cols[1].metric("Labelled", f"{ov.labelled:,}", f"{ov.labelled_share:.0%} of pairs", delta_color="off")
cols[2].metric("Label events", f"{ov.label_events:,}")
cols[3].metric("Annotators", ov.annotators)
cols[4].metric("Model versions", ov.versions)

left, right = st.columns(2)
with left:
    st.subheader("Final grades")
    fig = px.bar(ov.grades, x="grade", y="count", color="grade", text="count",
                 category_orders={"grade": list(project.grades)},
                 color_discrete_sequence=px.colors.sequential.Tealgrn)
    fig.update_layout(showlegend=False, height=320, margin=dict(t=10, b=10))
    st.plotly_chart(fig, key="grades_chart")
with right:
    st.subheader("Pairs per segment")
    seg = ov.segments.assign(unlabelled=ov.segments["pairs"] - ov.segments["labelled"])
    fig = px.bar(seg, x="segment", y=["labelled", "unlabelled"], barmode="stack",
                 color_discrete_map={"labelled": "#2a9d8f", "unlabelled": "#d9d9d9"})
    fig.update_layout(height=320, margin=dict(t=10, b=10), legend_title_text="", yaxis_title="pairs")
    st.plotly_chart(fig, key="segments_chart")

left, right = st.columns(2)
with left:
    st.subheader("Segments")
    st.dataframe(ov.segments, hide_index=True, key="segments_table",
                 column_config={"labelled_share": st.column_config.ProgressColumn(
                     "labelled share", format="percent", min_value=0.0, max_value=1.0)})
with right:
    st.subheader("Origin splits")
    st.dataframe(ov.splits, hide_index=True, key="splits_table")
    if not ov.activity.empty:
        st.subheader("Annotator votes per day")
        fig = px.bar(ov.activity, x="day", y="labels")
        fig.update_layout(height=220, margin=dict(t=10, b=10))
        st.plotly_chart(fig, key="activity_chart")

with st.expander("Guidelines", expanded=False):
    st.markdown(project.guidelines or "_No guidelines yet._")
