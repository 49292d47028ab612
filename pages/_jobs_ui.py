"""The live job panel the engineer pages share: progress, loss curve, log tail, cancel, and every job.

It is a fragment that re-runs on its own every few seconds (``st.fragment(run_every=...)``), so a
running job updates without re-running the whole page. Jobs name versions as the versions table does
("lp-1"), and a finished job links to what it made: its version, its round or its map.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from db.models import Job, JobStatus, User
from db.services import jobs as job_service
from db.services import versions as version_service
from pages._shared import db
from pages._text import frame, md, plain, safe_figure

REFRESH_S = 2
ACTIVE = (JobStatus.queued, JobStatus.running)
PAGE_SIZE = 10


def _curve(job: Job) -> go.Figure | None:
    curve = (job.result or {}).get("curve") or []
    if len(curve) < 2:
        return None
    fig = go.Figure(go.Scatter(x=[p[0] for p in curve], y=[p[1] for p in curve], mode="lines", name="loss"))
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="step", yaxis_title="loss")
    return fig


def job_title(job: Job, names: dict[int, str]) -> str:
    """What the job does, in the words of the pages: versions by their names (never their ids)."""
    p = job.params or {}

    def name(vid: Any) -> str:
        return names.get(int(vid), "a deleted version") if vid is not None else "the pretrained backbone"

    if job.kind == "train":
        return f"train {p.get('stage', '')}" + (f" from {name(p['from_version'])}" if p.get("from_version") else "")
    if job.kind == "evaluate" and "version_id" in p:
        return f"evaluate {name(p['version_id'])}"
    if job.kind == "map" and "version_id" in p:
        return f"map of {name(p['version_id'])}"
    if job.kind == "embed" and "version_id" in p:
        return f"embed {len(p.get('pair_ids') or [])} pairs with {name(p['version_id'])}"
    if job.kind == "check_labels":
        return "label check, ce refit per fold" if p.get("refit") else f"label check with {name(p.get('version'))}"
    if job.kind == "select":
        return f"select {int(p.get('budget', 0)):,} pairs with {name(p.get('version'))}"
    return job.kind


def _link(page: str, label: str, icon: str, query: dict[str, str]) -> None:
    try:
        st.page_link(page, label=label, icon=icon, query_params=query)
    except StreamlitPageNotFoundError:  # the page run on its own (AppTest), not under app.py's navigation
        st.caption(f"{label} →")


def result_link(job: Job, names: dict[int, str]) -> None:
    """A finished job's link to what it made: its version (Training), evaluation (Gap), round or map."""
    r = job.result or {}
    if job.status != JobStatus.succeeded:
        return
    if job.kind == "train" and "version_id" in r:
        label = names.get(int(r["version_id"]), str(r.get("version", "")))
        _link("pages/training.py", f"New version: {plain(label)}", ":material/model_training:", {"version": label})
    elif job.kind == "evaluate" and "version_id" in r and int(r["version_id"]) in names:
        label = names[int(r["version_id"])]
        _link("pages/gap.py", f"{plain(label)}: ID and OOD results", ":material/compare_arrows:",
              {"version": label})
    elif job.kind == "select" and "round_id" in r:
        _link("pages/selection.py", f"Round {int(r['round_id'])}: its pairs", ":material/travel_explore:",
              {"round": str(int(r["round_id"]))})
    elif job.kind == "map" and "version_id" in (job.params or {}):
        label = names.get(int(job.params["version_id"]), "")
        _link("pages/maps.py", f"Map of {plain(label)}", ":material/scatter_plot:", {"version": label})


def render_job(job: Job, user: User, key: str, names: dict[int, str] | None = None) -> None:
    names = names or {}
    icon = {"succeeded": ":material/check_circle:", "failed": ":material/error:",
            "cancelled": ":material/cancel:"}.get(job.status.value, ":material/hourglass_top:")
    with st.container(border=True):
        cols = st.columns([4, 1])
        cols[0].markdown(f"{icon} **Job {job.id}** · {md(job_title(job, names))} · {job.status.value} · "
                         f"attempt {job.attempts}/{job.max_attempts}")
        if job.status in ACTIVE and not job.cancel_requested:
            if cols[1].button("Cancel", key=f"{key}_cancel_{job.id}", icon=":material/stop:"):
                with db() as session:
                    job_service.request_cancel(session, job.id, actor=user)
                st.toast(f"Cancel requested for job {job.id}")
        st.progress(min(max(job.progress, 0.0), 1.0), text=_progress_text(job))
        if job.error:
            st.error(md(job.error))
        fig = _curve(job)
        if fig is not None:
            st.plotly_chart(safe_figure(fig), key=f"{key}_curve_{job.id}")
        result_link(job, names)
        with st.expander("Log", expanded=job.status in ACTIVE):
            st.code(plain("\n".join(job.log.splitlines()[-15:])) or "(empty)", language=None)


def _progress_text(job: Job) -> str:
    """"40% · training · about 2 min left" while running (phase and ETA from the handler); the share otherwise."""
    r = job.result or {}
    parts = [f"{job.progress:.0%}"]
    if job.status == JobStatus.running:
        if r.get("phase"):
            parts.append(plain(r["phase"]))
        eta = r.get("eta_s")
        if isinstance(eta, int | float) and eta >= 0:
            parts.append(f"about {_duration(eta)} left")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(int(round(seconds)), 1)} s"
    if seconds < 5400:
        return f"{int(round(seconds / 60))} min"
    return f"{seconds / 3600:.1f} h"


def job_panel(user: User, project_id: int, kinds: Sequence[str], key: str, show: int = 3) -> None:
    """Active jobs of these kinds, plus the latest finished ones; refreshes itself while shown. "Show all
    jobs" opens every job of the project, filtered by kind and state, a page at a time."""

    @st.fragment(run_every=REFRESH_S)
    def panel() -> None:
        with db() as session:
            recent = job_service.list_jobs(session, project_id=project_id, kinds=list(kinds), limit=20)
            names = version_service.version_names(session, project_id)
        active = [j for j in recent if j.status in ACTIVE]
        done = [j for j in recent if j.status not in ACTIVE][: max(show - len(active), 1)]
        if not recent:
            st.caption("No jobs yet.")
        for job in active + done:
            render_job(job, user, key, names)
        # A job seen running that has now finished changed what the rest of the page shows (a new
        # version, a new map): re-run the whole page once, not just this fragment.
        seen_key = f"{key}_active_ids"
        was_active = set(st.session_state.get(seen_key, ()))
        st.session_state[seen_key] = [j.id for j in active]
        if was_active - {j.id for j in active}:
            st.rerun(scope="app")

    panel()
    if st.toggle("Show all jobs", key=f"{key}_all", help="every job of this project, filtered and a page at a time"):
        all_jobs(project_id, kinds, key=f"{key}_all")


def _result_url(job: Job, names: dict[int, str]) -> str | None:
    """The address of what a finished job made (the same targets as ``result_link``), for a table's link."""
    r, p = job.result or {}, job.params or {}
    if job.status != JobStatus.succeeded:
        return None
    if job.kind == "train" and "version_id" in r and int(r["version_id"]) in names:
        return f"/training?{urlencode({'version': names[int(r['version_id'])]})}"
    if job.kind == "evaluate" and int(r.get("version_id", -1)) in names:
        return f"/gap?{urlencode({'version': names[int(r['version_id'])]})}"
    if job.kind == "select" and "round_id" in r:
        return f"/selection?round={int(r['round_id'])}"
    if job.kind == "map" and int(p.get("version_id", -1)) in names:
        return f"/maps?{urlencode({'version': names[int(p['version_id'])]})}"
    return None


def all_jobs(project_id: int, kinds: Sequence[str], key: str) -> None:
    """Every job of the project, newest first, filtered by kind and state, PAGE_SIZE rows at a time."""
    c1, c2, c3 = st.columns([2, 2, 1])
    picked_kinds = c1.multiselect("Kind", sorted(job_service.JOB_KINDS), default=list(kinds), key=f"{key}_kinds")
    states = c2.multiselect("State", [s.value for s in JobStatus], key=f"{key}_states", placeholder="any")
    statuses = [JobStatus(s) for s in states]
    with db() as session:
        total = job_service.count_jobs(session, project_id=project_id, kinds=picked_kinds, statuses=statuses)
        pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
        number = int(c3.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1,
                                     key=f"{key}_page"))
        shown = job_service.list_jobs(session, project_id=project_id, kinds=picked_kinds, statuses=statuses,
                                      limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
        names = version_service.version_names(session, project_id)
    if not total:
        st.caption("No job matches these filters.")
        return
    st.caption(f"{total:,} job(s) match; showing {len(shown)} from number {(number - 1) * PAGE_SIZE + 1:,}.")
    table = pd.DataFrame([{"job": j.id, "what": job_title(j, names), "state": j.status.value,
                           "progress": float(j.progress), "created": j.created_at.strftime("%Y-%m-%d %H:%M"),
                           "result": _result_url(j, names)} for j in shown])
    st.dataframe(frame(table), hide_index=True, key=f"{key}_table", width="stretch", column_config={
        "progress": st.column_config.ProgressColumn("progress", format="percent", min_value=0.0, max_value=1.0),
        "created": st.column_config.TextColumn("created (UTC)"),
        "result": st.column_config.LinkColumn("result", display_text="open")})
