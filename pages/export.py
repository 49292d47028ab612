"""Export (engineer): filter, pick a format, preview the first rows, download. Same service as the CLI."""

from __future__ import annotations

from datetime import datetime, time

import streamlit as st

from db.models import Role
from db.services import downloads
from db.services.exports import ExportFilters
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, plain

user = require_role(Role.engineer)
project = selected_project()
st.title("Export")
with db() as session:
    rounds, segments = downloads.export_choices(session, user, project.id)

with st.form("export_filters"):
    c1, c2, c3 = st.columns(3)
    round_label = c1.selectbox("Round", ["all pairs"] + [label for _, label in rounds], key="export_round",
                               format_func=plain)
    segment = c2.selectbox("Segment", ["all segments"] + segments, key="export_segment", format_func=plain)
    min_votes = c3.number_input("Minimum votes", 0, 20, 0, key="export_min_votes")
    d1, d2, d3 = st.columns(3)
    since = d1.date_input("Labelled from", value=None, key="export_since")
    until = d2.date_input("Labelled until", value=None, key="export_until")
    fmt = d3.radio("Format", ["csv", "jsonl", "parquet"], horizontal=True, key="export_format")
    go = st.form_submit_button("Prepare export", type="primary")

if go:
    filters = ExportFilters(
        round_id=next((rid for rid, label in rounds if label == round_label), None),
        segment=None if segment == "all segments" else segment, min_votes=int(min_votes),
        since=datetime.combine(since, time.min) if since else None,
        until=datetime.combine(until, time.max) if until else None)
    with db() as session:
        st.session_state["export_ready"] = downloads.prepare_download(session, user, project.id, filters, fmt)

ready = st.session_state.get("export_ready")
if ready is not None:
    st.download_button(f"Download {md(ready.file_name)} ({ready.rows:,} rows)", ready.data, ready.file_name, ready.mime,
                       key="export_download", icon=":material/download:", type="primary")
    st.caption(f"First {len(ready.preview)} of {ready.rows:,} rows")
    st.dataframe(frame(ready.preview), hide_index=True, key="export_preview")
