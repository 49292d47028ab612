"""Export (engineer): filter, then one click downloads (the file is built when the button is pressed).
Same service as the CLI. By default only labelled pairs, with the final-grade rule stated."""

from __future__ import annotations

from datetime import datetime, time

import streamlit as st

from db.models import Role
from db.services import downloads
from db.services.exports import ExportFilters
from db.session import session_scope
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, plain

user = require_role(Role.engineer)
project = selected_project()
st.title("Export")
with db() as session:
    rounds, segments = downloads.export_choices(session, user, project.id)
    prediction_note = downloads.prediction_note(session, user, project.id)

c1, c2, c3 = st.columns(3)
round_label = c1.selectbox("Round", ["all pairs"] + [label for _, label in rounds], key="export_round",
                           format_func=plain)
segment = c2.selectbox("Segment", ["all segments"] + segments, key="export_segment", format_func=plain)
fmt = c3.radio("Format", ["csv", "jsonl", "parquet"], horizontal=True, key="export_format")
labelled_only = st.toggle("Labelled pairs only", value=True, key="export_labelled_only",
                          help="off: every pair of the selection, unlabelled ones with empty grade columns")
d1, d2, d3 = st.columns(3)
since = d1.date_input("Labelled from", value=None, key="export_since")
until = d2.date_input("Labelled until", value=None, key="export_until")
min_votes = d3.number_input("Minimum votes", 1, 20, 1, key="export_min_votes", disabled=not labelled_only,
                            help="pairs with fewer votes (annotators' latest votes and imported grades) are left out")
min_votes = int(min_votes) if labelled_only else 0
st.caption("A pair's grade is its final grade: a reviewer's adjudication if there is one, else the majority of "
           "the annotators' latest votes (imported grades count as votes), a tie going to the lower grade. "
           + (f"Only pairs with a final grade and at least {min_votes} vote(s) are exported." if labelled_only
              else "Every pair of the selection is exported; unlabelled ones have empty grade columns."))
st.caption(md(prediction_note))

filters = ExportFilters(
    round_id=next((rid for rid, label in rounds if label == round_label), None),
    segment=None if segment == "all segments" else segment, min_votes=min_votes,
    since=datetime.combine(since, time.min) if since else None,
    until=datetime.combine(until, time.max) if until else None, labelled_only=bool(labelled_only))


def build() -> bytes:
    """Runs when the button is pressed, on Streamlit's download thread: its own transaction."""
    with session_scope() as session:
        return downloads.prepare_download(session, user, project.id, filters, fmt).data


st.download_button(f"Download {md(project.name)}-labels.{fmt}", build, f"{project.name}-labels.{fmt}",
                   downloads.MIME[fmt], key="export_download", icon=":material/download:", type="primary",
                   on_click="ignore")
if st.toggle("Preview the first rows", key="export_preview_on"):
    with db() as session:
        ready = downloads.prepare_download(session, user, project.id, filters, fmt)
    st.caption(f"First {len(ready.preview)} of {ready.rows:,} rows")
    st.dataframe(frame(ready.preview), hide_index=True, key="export_preview")
