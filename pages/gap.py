"""ID/OOD gap (engineer): macro-F1 on test_id vs test_ood per version and stage, calibration, confusion.

Everything here is read from stored evaluations (``model_versions.metrics["evaluation"]``); the
"Evaluate" button on the Training page (or a finished training job) computes them in the background.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from db.models import Role
from db.services import evaluation
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, plain, safe_figure

user = require_role(Role.engineer)
project = selected_project()
st.title("ID / OOD gap")

with db() as session:
    history = evaluation.gap_history(session, project.id)
if not history:
    st.info("No evaluated version yet. Train a stage (it is evaluated when it finishes) or press "
            "“Evaluate” on the Training page; this needs labelled pairs in the test_id and test_ood splits.")
    st.stop()


def metric(ev: dict, split: str, name: str) -> float | None:
    return ((ev["splits"].get(split) or {}).get("metrics") or {}).get(name)


def interval(ev: dict, split: str) -> dict:
    return (ev["splits"].get(split) or {}).get("interval") or {}


def span(ci: dict) -> str | None:
    return f"{ci['low']:.3f} … {ci['high']:.3f}" if ci.get("low") is not None and ci.get("high") is not None else None


rows = []
for h in history:
    ev = h["evaluation"]
    id_f1, ood_f1 = metric(ev, "id", "macro_f1"), metric(ev, "ood", "macro_f1")
    rows.append({"version": h["name"], "stage": h["stage"], "evaluated": ev.get("evaluated_at", ""),
                 "ID macro-F1": id_f1, "OOD macro-F1": ood_f1,
                 "gap": id_f1 - ood_f1 if id_f1 is not None and ood_f1 is not None else None,
                 "ID ECE": metric(ev, "id", "ece"), "OOD ECE": metric(ev, "ood", "ece"),
                 "ID over-recall": metric(ev, "id", "over_recall"), "OOD over-recall": metric(ev, "ood", "over_recall"),
                 "ID n": metric(ev, "id", "n"), "OOD n": metric(ev, "ood", "n"),
                 "ID queries": interval(ev, "id").get("queries"), "OOD queries": interval(ev, "ood").get("queries"),
                 "ID 95% interval": span(interval(ev, "id")), "OOD 95% interval": span(interval(ev, "ood")),
                 "few queries": "; ".join(h["few_queries"])})
table = pd.DataFrame(rows)
flagged = [h for h in history if h["few_queries"]]
if flagged:
    st.warning("Some figures rest on few test queries; their 95% intervals (resampling whole queries) are wide, "
               "so a difference inside them is not a difference: "
               + md("; ".join(f"{h['name']}: {', '.join(h['few_queries'])}" for h in flagged)))

fig = go.Figure()
for col, dash in (("ID macro-F1", "solid"), ("OOD macro-F1", "solid"), ("gap", "dot")):
    fig.add_trace(go.Scatter(x=table["version"], y=table[col], name=col, mode="lines+markers",
                             line=dict(dash=dash), text=table["stage"],
                             hovertemplate="%{x} (%{text})<br>" + col + " %{y:.3f}<extra></extra>"))
fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="macro-F1",
                  title="ID vs OOD macro-F1 and the gap, in training order")
st.plotly_chart(safe_figure(fig), key="gap_chart")
st.dataframe(frame(table), key="gap_table", hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                            if c not in ("version", "stage", "evaluated", "ID n", "OOD n", "ID queries", "OOD queries",
                                         "ID 95% interval", "OOD 95% interval", "few queries")})

st.subheader("Did it help? Compare two versions")
st.caption("Macro-F1 of B minus A on the test pairs both versions scored, with a 95% interval from resampling "
           "whole test queries: the spread another draw of test queries would give. Seed-to-seed training "
           "noise comes on top; an interval that crosses 0 is not a win.")
versions_by_name = {h["name"]: h["id"] for h in history}
if len(versions_by_name) < 2:
    st.info("Evaluate a second version to compare two.")
else:
    names_list = list(versions_by_name)
    ca, cb = st.columns(2)
    a_name = ca.selectbox("Baseline (A)", names_list, index=len(names_list) - 2, key="gap_compare_a",
                          format_func=plain)
    b_name = cb.selectbox("Compared (B)", names_list, index=len(names_list) - 1, key="gap_compare_b",
                          format_func=plain)
    if a_name == b_name:
        st.info("Pick two different versions.")
    else:
        with st.spinner("Resampling test queries..."), db() as session:
            comp = evaluation.compare_versions(session, project.id, versions_by_name[a_name], versions_by_name[b_name])
        done = {k: v for k, v in comp["splits"].items() if "difference" in v}
        for split, r in comp["splits"].items():
            if "difference" not in r:
                st.warning(f"{split.upper()}: fewer than 2 test pairs scored by both versions; evaluate both.")
                continue
            verdict = ("B is better" if r["low"] > 0 else "A is better" if r["high"] < 0
                       else "no clear difference")
            st.markdown(f"**{split.upper()}** · macro-F1 {r['difference']:+.3f} (95% interval {r['low']:+.3f} … "
                        f"{r['high']:+.3f}) over {r['n']} pairs of {r['groups']} queries · B no better in "
                        f"{r['share_below_zero']:.0%} of resamples · **{verdict}**"
                        + (f" · {r['missing']} pairs left out (not scored by both)" if r["missing"] else ""))
        if done:
            dfig = go.Figure(go.Scatter(
                x=[r["difference"] for r in done.values()], y=[s.upper() for s in done], mode="markers",
                marker=dict(size=12), error_x=dict(type="data", symmetric=False,
                                                   array=[r["high"] - r["difference"] for r in done.values()],
                                                   arrayminus=[r["difference"] - r["low"] for r in done.values()]),
                hovertemplate="%{y}: %{x:+.3f}<extra></extra>"))
            dfig.add_vline(x=0, line_dash="dash", line_color="gray")
            dfig.update_layout(height=200, margin=dict(l=10, r=10, t=30, b=10),
                               xaxis_title=f"{b_name} − {a_name} macro-F1", title="Difference with its 95% interval")
            st.plotly_chart(safe_figure(dfig), key="gap_compare_chart")

st.subheader("Calibration and errors of one version")
linked = [i for i, v in enumerate(table["version"]) if v == st.query_params.get("version")]  # a job's link
picked = st.selectbox("Version", list(table["version"]), index=linked[0] if linked else len(table) - 1,
                      key="gap_version", format_func=plain)
ev = next(h["evaluation"] for h in history if h["name"] == picked)
grades = ev.get("grades") or list(project.grades)
cols = st.columns(len(ev["splits"]))
for col, (split, data) in zip(cols, ev["splits"].items(), strict=True):
    with col:
        st.markdown(f"**{split.upper()}** · macro-F1 {data['metrics']['macro_f1']:.3f} · "
                    f"ECE {data['metrics']['ece']:.3f} · over-recall {data['metrics']['over_recall']:.3f}")
        rel = data["reliability"]
        width = 1.0 / len(rel["lower"])
        rfig = go.Figure([
            go.Bar(x=[lo + width / 2 for lo in rel["lower"]], y=rel["accuracy"], width=width * 0.9, name="accuracy",
                   customdata=rel["count"], hovertemplate="conf %{x:.2f}: acc %{y:.2f} (n=%{customdata})<extra></extra>"),
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line=dict(dash="dash", color="gray")),
        ])
        rfig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Reliability diagram",
                           xaxis_title="confidence", yaxis_title="accuracy", showlegend=False)
        st.plotly_chart(safe_figure(rfig), key=f"rel_{split}")
        cm = data["confusion"]
        cfig = go.Figure(go.Heatmap(z=cm, x=[f"pred {g}" for g in grades], y=[f"true {g}" for g in grades],
                                    text=cm, texttemplate="%{text}", colorscale="Blues", showscale=False))
        cfig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Confusion matrix",
                           yaxis_autorange="reversed")
        st.plotly_chart(safe_figure(cfig), key=f"cm_{split}")
