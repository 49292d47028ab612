"""Training (engineer): launch a stage in the background, watch it, and manage model versions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from darl_core.config import STAGES
from db.models import Role
from db.services import launch
from db.services import versions as version_service
from pages._jobs_ui import job_panel
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, plain

user = require_role(Role.engineer)
project = selected_project()
st.title("Training")

with db() as session:
    overview = launch.training_overview(session, project.id)
rows = overview["versions"]
trained = [r for r in rows if r["stage"] != "base"]

left, right = st.columns([2, 3])
with left:
    st.subheader("Launch a stage")
    stage = st.selectbox("Stage", STAGES, key="train_stage",
                         help="lp: linear probe; ft: fine-tune; wi: weight interpolation; dasa: train on the "
                              "selected labels with replay; dpo: de-bias over-predictions")
    parents = {"default for this stage": None} | {f"{r['name']} ({r['stage']})": r["id"] for r in trained}
    parent_label = st.selectbox("Start from version", list(parents), key="train_parent", format_func=plain)
    with st.form("train_form"):
        values = {}
        for f in launch.stage_form(stage):
            wkey = f"train_{stage}_{f.name}"
            if f.kind == "choice":
                values[f.name] = st.selectbox(f.name, f.choices, index=f.choices.index(f.default), key=wkey,
                                              help=f.help or None)
            elif f.kind == "bool":
                values[f.name] = st.checkbox(f.name, value=bool(f.default), help=f.help, key=wkey)
            elif f.kind == "text":
                values[f.name] = st.text_input(f.name, value=f.default, help=f.help, key=wkey)
            elif f.kind == "int":
                values[f.name] = st.number_input(f.name, value=int(f.default), step=1, key=wkey,
                                                 help=f.help or None,
                                                 min_value=int(f.min) if f.min is not None else None,
                                                 max_value=int(f.max) if f.max is not None else None)
            else:
                values[f.name] = st.number_input(f.name, value=float(f.default), key=wkey, format="%g",
                                                 help=f.help or None,
                                                 min_value=f.min, max_value=f.max)
        launched = st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:")
    if launched:
        with db() as session:
            job = launch.launch_training(session, project, stage, from_version=parents[parent_label],
                                         overrides=launch.overrides_from_form(stage, values), actor=user)
        st.success(f"Job {job.id} queued: {stage}. The worker picks it up; progress shows on the right.")

with right:
    st.subheader("Jobs")
    job_panel(user, project.id, ["train", "evaluate"], key="train_jobs")

st.subheader("Model versions")
if not rows:
    st.info("No model version yet: launch an lp stage above.")
    st.stop()
table = pd.DataFrame(rows).set_index("id")
st.dataframe(frame(table), key="versions_table", width="stretch",
             column_config={"current": st.column_config.CheckboxColumn("current"),
                            "holdout_macro_f1": st.column_config.NumberColumn(
                                "holdout macro-F1", format="%.3f",
                                help="dasa/dpo: macro-F1 on the share of the new labels kept out of training "
                                     "(dasa_holdout / dpo_holdout), mostly the shifted pairs DASA picked"),
                            "few_queries": st.column_config.TextColumn(
                                "few queries", help="figures computed on fewer queries than the product trusts, "
                                                    "with their 95% interval from resampling whole queries")})
names = {f"{r['name']} ({r['stage']})": r["id"] for r in rows}
picked = st.selectbox("Version", list(names), index=len(names) - 1, key="version_pick", format_func=plain)
vid = names[picked]
with db() as session:
    chain = version_service.lineage(session, vid)
st.caption("Lineage: " + " ← ".join(f"**{md(v.name)}** (labels up to event {(v.label_snapshot or {}).get('last_event_id', '-')})"
                                    for v in chain))
c1, c2 = st.columns(2)
if c1.button("Make current", key="make_current", icon=":material/star:",
             help="The current version is used for selection and scoring"):
    with db() as session:
        version_service.make_current(session, project.id, vid, actor=user)
    st.success(f"{md(picked)} is now the current version.")
    st.rerun()
if c2.button("Evaluate on test_id / test_ood", key="evaluate_version", icon=":material/insights:"):
    with db() as session:
        job = launch.launch_evaluation(session, project, vid, actor=user)
    st.success(f"Evaluation job {job.id} queued; results appear on the Gap page.")
