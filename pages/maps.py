"""Maps (engineer): a version's pairs on a 2-D UMAP map, coloured by role, OOD score or predicted grade;
clusters with their size, mean OOD score and labelled share; a cluster's pairs sent to the annotation
queue with a priority.

The worker computes maps ("Compute map" queues a map job) and stores them; this page only reads the
stored map back, so drawing one needs no model and no UMAP.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from db.models import Role
from db.services import maps
from pages._jobs_ui import job_panel
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, plain, safe_figure

# In drawing order: the unlabelled pool at the bottom, what stands out on top.
ROLE_COLOURS = {"pool": "#c7ccd4", "train": "#9aa5b1", "ID test": "#1f77b4", "OOD test": "#d62728",
                "labelled": "#2ca02c", "selected": "#ff7f0e"}
# Grades are ordinal: spread K of these red-to-green steps over the scale (3 grades: red, yellow, green).
GRADE_STEPS = ["#d62728", "#f46d43", "#fdae61", "#e6c229", "#a6d96a", "#66bd63", "#1a9850"]
LABELLED_CLUSTERS = 12  # clusters named on the map; the rest in the hover text
LABEL_GAP = 0.06  # two labels closer than this share of the map's width and height would overlap
COLOUR_BY = ("role", "OOD score", "predicted grade")
HOVER = ("<b>%{customdata[0]}</b><br>%{customdata[1]}<br>%{customdata[2]} · cluster %{customdata[3]}"
         " · OOD %{customdata[4]}<extra></extra>")

user = require_role(Role.engineer)
project = selected_project()
st.title("Maps")

with db() as session:
    choices = maps.map_choices(session, project.id)
labels = {f"{c['name']} ({c['stage']})" + (" · current" if c["current"] else "")
          + ("" if c["has_map"] else " · no map yet"): c for c in choices}
default = next((i for i, c in enumerate(choices) if c["name"] == st.query_params.get("version")),  # a job's link
               next((i for i, c in enumerate(choices) if c["current"] and c["has_map"]),
                    next((i for i, c in enumerate(choices) if c["has_map"]), 0)))

left, right = st.columns([3, 2])
with left:
    picked = labels[st.selectbox("Model version", list(labels), index=default, key="map_version",
                                       format_func=plain)]
    refit = st.checkbox("Refit from scratch", key="map_refit", disabled=not picked["has_map"],
                        help="By default a stored map keeps its coordinates and only new pairs are placed on it "
                             "(UMAP transform). A refit recomputes every position.")
    if st.button("Compute map", key="map_compute", type="primary", icon=":material/scatter_plot:"):
        with db() as session:
            job = maps.launch_map(session, project, picked["id"], actor=user, refit=refit)
        st.success(f"Map job {job.id} queued. The worker embeds the pairs and fits the map; progress shows "
                   "on the right, and the map appears here when it is done.")
with right:
    job_panel(user, project.id, ["map", "embed"], key="map_jobs", show=2)

if not picked["has_map"] or picked["id"] is None:
    st.info(f"No map of {md(picked['name'])} yet: press “Compute map” (the worker must be running: `make run`).")
    st.stop()
with db() as session:
    view = maps.map_view(session, project.id, picked["id"])
if view is None:
    st.info("The stored map has gone (the map folder was removed); compute it again.")
    st.stop()


def hover_data(df: pd.DataFrame) -> np.ndarray:
    ood = df["ood_score"].map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    return np.stack([df["query"].str.slice(0, 80), df["item"].str.slice(0, 100), df["role"],
                     df["cluster"].astype(str), ood], axis=1)


def figure(view: pd.DataFrame, colour: str, grades: list[str]) -> tuple[go.Figure, list[pd.DataFrame]]:
    """The map and, per trace in drawing order, the rows it plots (a box or lasso selection names points by
    trace and index: ``cluster_of_selection`` maps them back)."""
    size = 7.0 if len(view) < 2_000 else 4.0 if len(view) < 20_000 else 2.5
    fig = go.Figure()
    parts: list[pd.DataFrame] = []

    def scatter(df: pd.DataFrame, name: str, size: float, **marker: object) -> go.Scattergl:
        parts.append(df)
        return go.Scattergl(x=df["x"], y=df["y"], mode="markers", name=f"{name} ({len(df):,})",
                            customdata=hover_data(df), hovertemplate=HOVER, marker=dict(size=size, **marker))

    if colour == "role":
        for role, hex_colour in ROLE_COLOURS.items():
            part = view[view["role"] == role]
            if len(part):
                fig.add_trace(scatter(part, role, size, color=hex_colour))
    elif colour == "OOD score":
        scored = view["ood_score"].notna()
        if (~scored).any():
            fig.add_trace(scatter(view[~scored], "no OOD score", size, color="#e3e6ea"))
        if scored.any():
            fig.add_trace(scatter(view[scored], "OOD score", size, color=view.loc[scored, "ood_score"],
                                  colorscale="Viridis", showscale=True, colorbar=dict(title="OOD", thickness=12)))
    else:
        pred = view["predicted_grade"]
        if pred.isna().any():
            fig.add_trace(scatter(view[pred.isna()], "no prediction", size, color="#e3e6ea"))
        steps = np.linspace(0, len(GRADE_STEPS) - 1, max(len(grades), 2)).round().astype(int)
        for g, name in enumerate(grades):
            part = view[pred == g]
            if len(part):
                fig.add_trace(scatter(part, name, size, color=GRADE_STEPS[steps[min(g, len(steps) - 1)]]))
    # Cluster names on a light label, so they stay readable over dense points: the largest clusters only,
    # none on top of another; every point's cluster is in its hover text.
    for c, (x, y) in label_positions(view).items():
        fig.add_annotation(x=x, y=y, text=f"C{c}", showarrow=False, font=dict(size=10, color="#222"),
                           bgcolor="rgba(255,255,255,0.75)", borderpad=1)
    fig.update_layout(height=640, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=1.02, x=0),
                      xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white",
                      dragmode="lasso")
    return fig, parts


def label_positions(view: pd.DataFrame, most: int = LABELLED_CLUSTERS) -> dict[int, tuple[float, float]]:
    """Cluster -> label position (its median point) for the ``most`` largest clusters, largest first, leaving
    out a label closer than ``LABEL_GAP`` of the map's extent (both axes) to one already placed."""
    centres = view.groupby("cluster")[["x", "y"]].median()
    span_x = float(np.ptp(view["x"])) or 1.0
    span_y = float(np.ptp(view["y"])) or 1.0
    placed: dict[int, tuple[float, float]] = {}
    for c in view["cluster"].value_counts(sort=True).index[:most]:
        x, y = (float(v) for v in centres.loc[c])
        if all(abs(x - px) > LABEL_GAP * span_x or abs(y - py) > LABEL_GAP * span_y for px, py in placed.values()):
            placed[int(c)] = (x, y)
    return dict(sorted(placed.items()))


def cluster_of_selection(state: object, parts: list[pd.DataFrame]) -> int | None:
    """The cluster most of the box- or lasso-selected points belong to (None: nothing selected)."""
    points = ((state or {}).get("selection") or {}).get("points") or []  # type: ignore[union-attr]
    found = []
    for p in points:
        trace, row = p.get("curve_number"), p.get("point_index", p.get("point_number"))
        if isinstance(trace, int) and isinstance(row, int) and 0 <= trace < len(parts) and 0 <= row < len(parts[trace]):
            found.append(int(parts[trace]["cluster"].iloc[row]))
    return max(set(found), key=found.count) if found else None


meta = view.attrs.get("meta") or {}
st.caption(f"{len(view):,} pairs · fitted on {meta.get('points', len(view)):,} in {meta.get('fit_s', '?')} s"
           + (f" · {meta['placed']:,} placed since without refitting" if meta.get("placed") else ""))
colour = st.segmented_control("Colour by", COLOUR_BY, default="role", key="map_colour") or "role"
if colour == "OOD score" and view["ood_score"].isna().all():
    st.caption("No OOD scores for this version yet: a DASA selection round with it scores the pool.")
if colour == "predicted grade" and view["predicted_grade"].isna().all():
    st.caption("No predictions for this version yet: a DASA selection round with it stores them.")
fig, parts = figure(view, colour, list(project.grades))
chosen = st.plotly_chart(safe_figure(fig), key="map_chart", width="stretch", on_select="rerun",
                         selection_mode=("box", "lasso", "points"))
st.caption("Draw a lasso or a box around points (or click one) to open their cluster below.")
from_map = cluster_of_selection(chosen, parts)
if from_map is not None and st.session_state.get("map_selection_seen") != repr(chosen):
    st.session_state["map_cluster"] = from_map  # a new selection on the map picks the cluster; the list still can
    st.session_state["map_selection_seen"] = repr(chosen)

st.subheader("Clusters")
summary = maps.cluster_summary(view)
has_ood = bool(view["ood_score"].notna().any())  # no scores yet: leave the columns out, not a column of "None"
st.dataframe(frame(summary if has_ood else summary.drop(columns=["mean_ood"])), key="map_clusters", hide_index=True, width="stretch",
             column_config={"cluster": st.column_config.NumberColumn("cluster", format="C%d"),
                            "mean_ood": st.column_config.NumberColumn("mean OOD score", format="%.3f"),
                            "labelled_share": st.column_config.ProgressColumn("labelled", min_value=0, max_value=1),
                            "pool_share": st.column_config.ProgressColumn("unlabelled pool", min_value=0, max_value=1)})
options = {int(r.cluster): f"C{int(r.cluster)} · {int(r.size):,} pairs · mean OOD "
           + ("-" if pd.isna(r.mean_ood) else f"{r.mean_ood:.2f}") + f" · {r.labelled_share:.0%} labelled"
           for r in summary.itertuples()}
cluster = st.selectbox("Cluster", list(options), format_func=options.__getitem__, key="map_cluster")
members = view[view["cluster"] == cluster].sort_values("ood_score", ascending=False, na_position="last")
grade_names = dict(enumerate(project.grades))
st.dataframe(frame(members.assign(predicted=members["predicted_grade"].map(grade_names))
                   [["pair_id", "query", "item", "role", *(["ood_score"] if has_ood else []),
                     *(["predicted"] if members["predicted_grade"].notna().any() else [])]]),
             key="map_members", hide_index=True, width="stretch", height=280,
             column_config={"query": st.column_config.TextColumn(width="medium"),
                            "item": st.column_config.TextColumn(width="large"),
                            "ood_score": st.column_config.NumberColumn("OOD score", format="%.3f")})

c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
priority = c1.number_input("Priority", min_value=1, max_value=1000, value=10, step=1, key="map_priority",
                           help="The annotation queue serves open pairs by priority, highest first "
                                "(after the open selection round's pairs).")
if c2.button(f"Send cluster C{cluster} to the annotation queue", key="map_send", icon=":material/playlist_add:"):
    with db() as session:
        done = maps.queue_pairs(session, project.id, members["pair_id"].tolist(), int(priority), actor=user)
    parts = [f"{done.queued:,} of {len(members):,} pairs of C{cluster} queued with priority {int(priority)}"]
    if done.already:
        parts.append(f"{done.already:,} were already queued at that priority (sent before)")
    if done.not_eligible:
        parts.append(f"{done.not_eligible:,} are in a test split or already have an imported or adjudicated grade")
    (st.info if done.queued == 0 else st.success)("; ".join(parts) + ".")
