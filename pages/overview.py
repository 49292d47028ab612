"""Overview: what the selected project holds and how far labelling has come."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import streamlit as st

from db.models import Role
from db.services.stats import project_overview
from pages._shared import db, require_role, selected_project
from pages._text import frame, guidelines_md, md, safe_figure

DAY_MS = 86_400_000

require_role(Role.annotator)
project = selected_project()
with db() as session:
    ov = project_overview(session, project)

st.title(md(project.name))
st.caption("Grade scale (lowest first): " + " < ".join(md(g) for g in project.grades))
cols = st.columns(5)
cols[0].metric("Pairs", f"{ov.pairs:,}")
cols[1].metric("Labelled", f"{ov.labelled:,}")
cols[1].caption(f"{ov.labelled_share:.0%} of pairs")  # a share, not a change: no delta arrow or colour
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
    st.plotly_chart(safe_figure(fig), key="grades_chart")
with right:
    st.subheader("Pairs per segment")
    seg = ov.segments.assign(unlabelled=ov.segments["pairs"] - ov.segments["labelled"])
    fig = px.bar(seg, x="segment", y=["labelled", "unlabelled"], barmode="stack",
                 color_discrete_map={"labelled": "#2a9d8f", "unlabelled": "#d9d9d9"})
    fig.update_layout(height=320, margin=dict(t=10, b=10), legend_title_text="", yaxis_title="pairs")
    st.plotly_chart(safe_figure(fig), key="segments_chart")

left, right = st.columns(2)
with left:
    st.subheader("Segments")
    st.dataframe(frame(ov.segments), hide_index=True, key="segments_table",
                 column_config={"labelled_share": st.column_config.ProgressColumn(
                     "labelled share", format="percent", min_value=0.0, max_value=1.0)})
with right:
    st.subheader("Origin splits")
    st.dataframe(frame(ov.splits), hide_index=True, key="splits_table")
    if not ov.activity.empty:
        st.subheader("Annotator votes per day")
        days = ov.activity.assign(day=pd.to_datetime(ov.activity["day"]))
        fig = px.bar(days, x="day", y="labels")
        # Whole days: ticks a whole number of days apart (at most ~10), bars a day wide, and half a day
        # of margin, so a single day is not drawn as a millisecond-wide bar with sub-second ticks.
        first, last = days["day"].min(), days["day"].max()
        fig.update_traces(width=DAY_MS * 0.8)
        fig.update_xaxes(type="date", dtick=DAY_MS * max(1, math.ceil((last - first).days / 10)),
                         tickformat="%Y-%m-%d", title_text="day",
                         range=[first - pd.Timedelta(hours=14), last + pd.Timedelta(hours=14)])
        fig.update_layout(height=220, margin=dict(t=10, b=10))
        st.plotly_chart(safe_figure(fig), key="activity_chart")

with st.expander("Guidelines", expanded=False):
    st.markdown(guidelines_md(project.guidelines) if project.guidelines else "_No guidelines yet._")
