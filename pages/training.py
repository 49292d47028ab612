"""Training (engineer): launch a stage in the background, watch it, and manage model versions."""

from __future__ import annotations

from typing import Any

import streamlit as st

from darl_core.config import STAGES
from db.models import Role
from db.services import launch
from db.services import versions as version_service
from db.services.projects import stage_base
from pages._jobs_ui import job_panel
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, plain
from pages._versions_ui import VERSION_COLUMNS, versions_table


def _widget(f: launch.FormField, key: str) -> Any:
    """One form field in words: its label, its one-line help, the stage recipe's value as the default."""
    help_ = f.help or None
    if f.kind == "choice":
        return st.selectbox(f.label, f.choices, index=f.choices.index(f.default), key=key, help=help_)
    if f.kind == "bool":
        return st.checkbox(f.label, value=bool(f.default), help=help_, key=key)
    if f.kind == "text":
        return st.text_input(f.label, value=f.default, help=help_, key=key)
    if f.kind == "int":
        return st.number_input(f.label, value=int(f.default), step=1, key=key, help=help_,
                               min_value=int(f.min) if f.min is not None else None,
                               max_value=int(f.max) if f.max is not None else None)
    return st.number_input(f.label, value=float(f.default), key=key, format="%g", help=help_,
                           min_value=f.min, max_value=f.max)


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
    with db() as session:
        missing = launch.missing_prerequisite(session, project, stage, parents[parent_label])
    if missing:
        st.warning(md(missing), icon=":material/block:")
    base = stage_base(project)  # the project's backbone: the lr shown is the one its "auto" tuning gets
    form = launch.stage_form(stage, base)
    with st.form("train_form"):
        values = {}
        for group, title in launch.GROUPS.items():
            fields = [f for f in form if f.group == group]
            if not fields:
                continue
            box = st.container() if group == "basics" else st.expander(title, expanded=False)
            with box:
                for f in fields:
                    values[f.name] = _widget(f, f"train_{stage}_{f.name}")
        launched = st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:",
                                         disabled=bool(missing))
    if launched:
        with db() as session:
            job = launch.launch_training(session, project, stage, from_version=parents[parent_label],
                                         overrides=launch.overrides_from_form(stage, values, base), actor=user)
        st.success(f"Job {job.id} queued: {stage}. The worker picks it up; progress shows on the right.")

with right:
    st.subheader("Jobs")
    job_panel(user, project.id, ["train", "evaluate"], key="train_jobs")

st.subheader("Model versions")
if not rows:
    st.info("No model version yet: launch an lp stage above.")
    st.stop()
current = next((r["name"] for r in rows if r["current"]), None)
if current is None:
    st.caption("No current version: selection and scoring use the pretrained backbone. Make one current below.")
elif (project.settings or {}).get(version_service.AUTO_CURRENT):
    st.info(f"**{md(current)}** became the current version on its own: it was the first trained one. "
            "Selection and scoring use it; pick another below and press Make current to change that.",
            icon=":material/star:")
else:
    st.caption(f"Current version: **{md(current)}** (used for selection and scoring).")
st.dataframe(frame(versions_table(rows)), key="versions_table", width="stretch", hide_index=True,
             column_order=list(VERSION_COLUMNS), column_config=VERSION_COLUMNS)
names = {f"{r['name']} ({r['stage']})": r["id"] for r in rows}
linked = [i for i, r in enumerate(rows) if r["name"] == st.query_params.get("version")]  # a job's link
picked = st.selectbox("Version", list(names), index=linked[0] if linked else len(names) - 1, key="version_pick",
                      format_func=plain)
vid = names[picked]
with db() as session:
    chain = version_service.lineage(session, vid)
st.caption("Lineage: " + " ← ".join(f"**{md(v.name)}** (labels up to event {(v.label_snapshot or {}).get('last_event_id', '-')})"
                                    for v in chain))
for warning in (chain[0].metrics or {}).get("warnings") or []:  # e.g. a stage whose loss barely fell
    st.warning(f"**{md(chain[0].name)}**: {md(warning)}", icon=":material/warning:")
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
