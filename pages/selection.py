"""Selection (engineer): start a DASA round and follow the rounds.

A round is a background job: the worker embeds the labelled pairs and the unlabelled pool with a model
version, scores every pool pair for how far it is from the labels (OOD), and queues a diverse batch
for the annotators, the model's least sure first. The rounds table shows how far grading has come.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from db.models import Role
from db.services import annotation, launch, round_pairs, rounds, versions
from db.services.projects import project_settings
from pages._jobs_ui import job_panel
from pages._shared import db, require_role, selected_project
from pages._text import frame, plain

BUDGET_HELP = ("Pairs to queue for grading. On the Home Depot benchmark (bench/budget.py) DASA's 500 labels lifted "
               "OOD macro-F1 by 3 points and 2,000 lifted it no further, while random picks needed 2,000 for 2 "
               "points; a round of a few hundred trains best with a larger replay_ratio in the dasa stage.")

PICK = {"pair": "by pair", "query": "by query"}
AGGREGATE = {"mean": "mean of its pairs", "max": "max of its pairs"}

user = require_role(Role.engineer)
project = selected_project()
st.title("Selection")

left, right = st.columns([1, 1], gap="large")
with left:
    st.subheader("New DASA round")
    with db() as session:
        version_list = versions.version_rows(session, project.id)
    options: dict[str, int | None] = {"pretrained backbone (base)": None}  # None: the job resolves base
    options.update({f"{v['name']} ({v['stage']})" + (" · current" if v["current"] else ""): v["id"]
                    for v in reversed(version_list) if v["stage"] != "base"})
    current_id = next((v["id"] for v in version_list if v["current"] and v["stage"] != "base"), None)
    current = list(options.values()).index(current_id)  # None (no current, or base): the backbone, first
    with st.form("select_form", border=True):
        picked = st.selectbox("Model version", list(options), index=current, key="select_version", format_func=plain,
                              help="Embeds the pairs; with a trained grade head it also puts the model's least "
                                   "sure OOD candidates first. Starts at the current version (Training page).")
        budget = st.number_input("Budget (pairs)", min_value=1, max_value=1_000_000, value=200, step=50,
                                 key="select_budget", help=BUDGET_HELP)
        by = st.radio("Pick", list(PICK), format_func=PICK.get, horizontal=True, key="select_by",
                      help="By query: queries ranked by how unusual their unlabelled pairs are, then the top "
                           "results of each, for annotators who grade a query's results as a list.")
        q1, q2 = st.columns(2)
        per_query = q1.number_input("Results per query", min_value=1, max_value=100, value=10, key="select_per_query",
                                    help="By query only: at most this many pairs of each chosen query.")
        aggregate = q2.selectbox("Query score", list(AGGREGATE), format_func=AGGREGATE.get, key="select_aggregate",
                                 help="By query only: how a query's pair OOD scores make its score.")
        go = st.form_submit_button("Select with DASA", type="primary", icon=":material/travel_explore:")
    if go:
        with db() as session:
            job = launch.launch_selection(session, project, int(budget), version=options[picked], actor=user, by=by,
                                          per_query=int(per_query), aggregate=aggregate)
        unit = f"pairs, up to {int(per_query)} per query" if by == "query" else "pairs"
        st.success(f"Job {job.id} queued: select {int(budget):,} {unit}. The worker picks it up; the new round "
                   "joins the annotators' queue when it finishes.")
with right:
    st.subheader("Jobs")
    job_panel(user, project.id, ["select", "embed"], key="select_jobs")

st.subheader("Rounds")
show_reasons = bool(project_settings(project)["show_reasons"])
shown = st.toggle("Annotators see why each pair was picked", show_reasons, key="select_show_reasons",
                  help="On the grading card, in words: how unlike the labelled pairs it is, how much of its segment "
                       "is labelled, whether the model is unsure. Turn it off if it might bias the grades.")
if shown != show_reasons:
    with db() as session:
        annotation.update_annotation_settings(session, user, project.id, show_reasons=shown)
    st.toast("Saved: annotators " + ("now see" if shown else "no longer see") + " why a pair was picked.",
             icon=":material/check:")
with db() as session:
    rows = rounds.round_rows(session, project.id)
if not rows:
    st.info("No round yet: start one above. Rounds also come from `python -m darl_core select`.")
    st.stop()
st.dataframe(frame(pd.DataFrame(rows)), hide_index=True, key="rounds_table", width="stretch",
             column_config={
                 "created_at": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
                 "by": st.column_config.TextColumn("by", help="pair: DASA ranked pairs; query: it ranked queries by "
                                                              "their pairs' OOD scores, then took each one's top pairs"),
                 "queries": st.column_config.NumberColumn("queries", help="distinct queries among the round's pairs"),
                 "controls": st.column_config.NumberColumn(
                     "controls", help="random pairs mixed in as a control for the DASA picks"),
                 "graded": st.column_config.NumberColumn("graded", help="pairs with a standing grade"),
                 "graded_share": st.column_config.ProgressColumn("graded share", format="percent", min_value=0.0,
                                                                 max_value=1.0),
                 "order": st.column_config.TextColumn("order", help="how the OOD candidates were ranked")})

st.subheader("Pairs of a round")
by_id = {r["id"]: r for r in rows}
linked = st.query_params.get("round")  # a finished select job links here with ?round=<id>
first = next((i for i, r in enumerate(rows) if str(r["id"]) == linked), 0)
rid = st.selectbox("Round", list(by_id), index=first, key="round_pick",
                   format_func=lambda i: plain(f"{by_id[i]['name']} · {by_id[i]['version'] or 'backbone'} · "
                                               f"{by_id[i]['pairs']} pairs"
                                               + (f" of {by_id[i]['queries']} queries" if 'queries' in by_id[i] else "")))
with db() as session:
    pairs = round_pairs.round_pairs(session, rid, actor=user)
st.dataframe(frame(pd.DataFrame(pairs, columns=list(round_pairs.COLUMNS))), hide_index=True, key="round_pairs_table",
             width="stretch", column_config={
                 "pair": st.column_config.NumberColumn("pair", pinned=True),
                 "ood_score": st.column_config.NumberColumn("OOD score", format="%.3f",
                                                            help="higher: less like the labelled pairs"),
                 "control": st.column_config.CheckboxColumn("control", help="picked at random as a control"),
                 "reason": st.column_config.TextColumn("why it was picked", width="large"),
                 "grade": st.column_config.TextColumn("standing grade"),
                 "graded_by": st.column_config.TextColumn("who graded what", width="medium")})
st.download_button("Download this round (CSV)", round_pairs.round_csv(pairs), key="round_download",
                   file_name=re.sub(r"[^\w.-]+", "-", f"{project.name}-{by_id[rid]['name']}") + ".csv", mime="text/csv",
                   icon=":material/download:")
