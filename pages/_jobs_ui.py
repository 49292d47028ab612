"""The live job panel the engineer pages share: progress, loss curve, log tail, cancel.

It is a fragment that re-runs on its own every few seconds (``st.fragment(run_every=...)``), so a
running job updates without re-running the whole page.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import streamlit as st

from db.models import Job, JobStatus, User
from db.services import jobs as job_service
from pages._shared import db
from pages._text import md, plain, safe_figure

REFRESH_S = 2
ACTIVE = (JobStatus.queued, JobStatus.running)


def _curve(job: Job) -> go.Figure | None:
    curve = (job.result or {}).get("curve") or []
    if len(curve) < 2:
        return None
    fig = go.Figure(go.Scatter(x=[p[0] for p in curve], y=[p[1] for p in curve], mode="lines", name="loss"))
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="step", yaxis_title="loss")
    return fig


def render_job(job: Job, user: User, key: str) -> None:
    icon = {"succeeded": ":material/check_circle:", "failed": ":material/error:",
            "cancelled": ":material/cancel:"}.get(job.status.value, ":material/hourglass_top:")
    what = job.params.get("stage") or (f"of version {job.params['version_id']}" if "version_id" in job.params else "")
    with st.container(border=True):
        cols = st.columns([4, 1])
        cols[0].markdown(f"{icon} **Job {job.id}** · {job.kind} {md(what)} · {job.status.value} · "
                         f"attempt {job.attempts}/{job.max_attempts}")
        if job.status in ACTIVE and not job.cancel_requested:
            if cols[1].button("Cancel", key=f"{key}_cancel_{job.id}", icon=":material/stop:"):
                with db() as session:
                    job_service.request_cancel(session, job.id, actor=user)
                st.toast(f"Cancel requested for job {job.id}")
        st.progress(min(max(job.progress, 0.0), 1.0), text=f"{job.progress:.0%}")
        if job.error:
            st.error(md(job.error))
        fig = _curve(job)
        if fig is not None:
            st.plotly_chart(safe_figure(fig), key=f"{key}_curve_{job.id}")
        if job.result and "version" in job.result:
            st.caption(f"New version: **{md(job.result['version'])}**")
        with st.expander("Log", expanded=job.status in ACTIVE):
            st.code(plain("\n".join(job.log.splitlines()[-15:])) or "(empty)", language=None)


def job_panel(user: User, project_id: int, kinds: Sequence[str], key: str, show: int = 3) -> None:
    """Active jobs of these kinds, plus the latest finished ones; refreshes itself while shown."""

    @st.fragment(run_every=REFRESH_S)
    def panel() -> None:
        with db() as session:
            recent = job_service.list_jobs(session, project_id=project_id, kinds=list(kinds), limit=20)
        active = [j for j in recent if j.status in ACTIVE]
        done = [j for j in recent if j.status not in ACTIVE][: max(show - len(active), 1)]
        if not recent:
            st.caption("No jobs yet.")
        for job in active + done:
            render_job(job, user, key)
        # A job seen running that has now finished changed what the rest of the page shows (a new
        # version, a new map): re-run the whole page once, not just this fragment.
        seen_key = f"{key}_active_ids"
        was_active = set(st.session_state.get(seen_key, ()))
        st.session_state[seen_key] = [j.id for j in active]
        if was_active - {j.id for j in active}:
            st.rerun(scope="app")

    panel()
