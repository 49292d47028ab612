"""Review: adjudicate pairs whose votes disagree (or were flagged) or that the label check suspects, each
query's results graded side by side with the per-query agreement (``pages/_query_review_ui.py``), the
agreement dashboard, and (for engineers) the project's annotation settings. Each view makes one service call
(the per-query view: two in one transaction)."""

from __future__ import annotations

import math
import zlib
from collections import Counter
from functools import partial

import pandas as pd
import plotly.express as px
import streamlit as st

from db.models import Role
from db.services import annotation, gold, label_check, label_neighbours, review
from db.services.projects import project_settings
from pages._jobs_ui import job_panel
from pages._query_review_ui import query_view
from pages._shared import db, require_role, selected_project
from pages._text import frame, md, plain, safe_figure

user = require_role(Role.reviewer)
project = selected_project()
grades: list[str] = list(project.grades)
views = ["Disagreements", "Queries", "Agreement", "Gold"] + (["Settings"] if Role(user.role).allows(Role.engineer) else [])
st.title("Review")
view = st.segmented_control("View", views, default=views[0], key="review_view", label_visibility="collapsed")


GRADING_MODES = {"card": "one card at a time", "list": "a query's results as a list",
                 "both": "each annotator chooses (card or list)"}
PAGE_SIZE = 25
LAST = -1  # "select the last row" after stepping back past the top of a page
ss = st.session_state


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _filters_changed() -> None:
    ss["review_offset"] = 0
    ss["review_pair"] = None


def _decide(pair_id: int, grade: int) -> None:
    ss["review_decision"] = (pair_id, grade, ss.get(f"review_comment_{pair_id}"), bool(ss.get("review_as_gold")))


def _pick(key: str, ids: list[int]) -> None:
    rows = ss[key].selection.rows
    if rows:
        ss["review_pair"] = ids[rows[0]]


def _move(ids: list[int], step: int, offset: int, matching: int) -> None:
    """J/K: the next or previous pair, across page boundaries."""
    i = ids.index(ss["review_pair"]) if ss.get("review_pair") in ids else 0
    if 0 <= i + step < len(ids):
        ss["review_pair"] = ids[i + step]
    elif step > 0 and offset + PAGE_SIZE < matching:
        ss["review_offset"], ss["review_pair"] = offset + PAGE_SIZE, None
    elif step < 0 and offset > 0:
        ss["review_offset"], ss["review_pair"] = max(0, offset - PAGE_SIZE), LAST


def _page(offset: int) -> None:
    ss["review_offset"], ss["review_pair"] = offset, None


def _selected(ids: list[int], wanted: int | None, before: list[int]) -> int | None:
    """The pair to show: the one asked for; after it left the queue (adjudicated), the one after it in the list
    as it was (``before``: pair order, or most suspect first), else the next pair id."""
    if not ids or wanted in ids:
        return wanted if ids else None
    if wanted == LAST:
        return ids[-1]
    if wanted is None:
        return ids[0]
    if wanted in before:
        return next((i for i in before[before.index(wanted) + 1:] if i in ids), ids[-1])
    return next((i for i in ids if i > wanted), ids[-1])


def _counts(votes: list[review.Vote]) -> str:
    tally = Counter(v.grade for v in votes)
    return ", ".join(f"{tally[g]}×{grades[g]}" for g in sorted(tally, reverse=True))


def _neighbours(pair_id: int) -> None:
    """The suspect's nearest labelled pairs in the label check's embedding space, with their grades."""
    with db() as session:
        near = label_neighbours.labelled_neighbours(session, user, pair_id, k=5)
    if not near.rows:
        st.caption(md(near.note or "No neighbours."))
        return
    st.markdown(f"**Nearest labelled pairs** (model {md(near.version or '—')}, cosine similarity):")
    st.dataframe(frame(pd.DataFrame([{"pair": n.pair_id, "similar": n.similarity,
                                      "grade": grades[n.grade] if n.grade is not None else "—",
                                      "checked": grades[n.label], "suspect": n.suspect, "query": n.query,
                                      "item": n.title} for n in near.rows])),
                 hide_index=True, key=f"review_neighbours_{pair_id}", column_config={
                     "pair": st.column_config.NumberColumn(width=56),
                     "grade": st.column_config.TextColumn("grade now"),
                     "checked": st.column_config.TextColumn("grade checked", help="The grade the label check saw"),
                     "similar": st.column_config.NumberColumn("similarity", format="%.2f")})


def _quality(rep: gold.QualityReport | None) -> None:
    """Each annotator against gold and against the latest label check, overall and per week."""
    if rep is None:
        return
    st.subheader("Annotators against gold and the label check")
    st.caption(f"{rep.gold_pairs} gold pair(s), {rep.share:.0%} of each annotator's cards. Suspected share: of "
               "the votes the latest label check saw"
               + (f" (check {rep.check_id})" if rep.check_id is not None else " (no label check yet)")
               + ", those that gave the grade it suspects.")
    if rep.annotators.empty:
        st.caption("No gold answer and no checked vote yet.")
        return
    st.dataframe(frame(rep.annotators), hide_index=True, key="review_quality_table", column_config={
        "gold_accuracy": st.column_config.NumberColumn("gold accuracy", format="percent"),
        "gold_kappa": st.column_config.NumberColumn("gold κ (quadratic)", format="%.2f"),
        "suspected_share": st.column_config.NumberColumn("suspected share", format="percent")})
    weekly = rep.weekly
    a, b = st.columns(2)
    if weekly["gold_answers"].sum() > 0:
        fig = px.line(weekly[weekly["gold_answers"] > 0], x="week", y="gold_accuracy", color="annotator", markers=True,
                      hover_data=["gold_answers"], range_y=[0, 1.05], title="Accuracy on gold pairs, per week")
        a.plotly_chart(safe_figure(fig), key="review_gold_chart")
    if weekly["checked_votes"].sum() > 0:
        fig = px.line(weekly[weekly["checked_votes"] > 0], x="week", y="suspected_share", color="annotator",
                      markers=True, hover_data=["checked_votes"], title="Share of votes the label check suspects, per week")
        b.plotly_chart(safe_figure(fig), key="review_suspected_chart")


if view == "Disagreements":
    decision = ss.pop("review_decision", None)
    grade_filter = ss.get("review_f_grade")
    filters = review.ReviewFilters(
        flagged_only=bool(ss.get("review_f_flagged")), disagreements_only=bool(ss.get("review_f_disagree")),
        segment=ss.get("review_f_segment"), round_id=ss.get("review_f_round"), annotator=ss.get("review_f_annotator"),
        grade=grade_filter if isinstance(grade_filter, int) and grade_filter < len(grades) else None,
        suspected=bool(ss.get("review_f_suspected")))
    with db() as session:
        q = review.adjudicate_and_list(session, user, project.id, decision, filters, int(ss.get("review_offset", 0)),
                                       PAGE_SIZE)
    ss["review_offset"] = q.offset
    if decision:
        st.toast(f"Pair {decision[0]} adjudicated as “{md(grades[decision[1]])}”.", icon=":material/gavel:")
    st.caption(f"{q.pending} pair(s) wait for adjudication: votes disagree or an annotator flagged them "
               f"({q.flagged} flagged, {q.disagreements} with disagreeing votes). **{q.matching}** match the filters.")
    if filters.suspected:
        if q.check is not None:
            st.caption(f"Label check {q.check.id} ({q.check.created_at:%Y-%m-%d %H:%M}, model {md(q.check.version)}, "
                       f"{q.check.method}): {q.suspected} of its {q.check.suspects} suspected label(s) not reviewed "
                       "yet, most suspect first. Confirm the grade or correct it.")
        else:
            st.caption("No label check yet." if Role(user.role).allows(Role.engineer) else
                       "No label check yet: ask an engineer to run one (Review, 'Suspected by the label check').")
        if Role(user.role).allows(Role.engineer):
            with st.container(horizontal=True, vertical_alignment="center"):
                run = st.button("Run a label check", key="review_run_check", icon=":material/fact_check:",
                                help="The worker scores every labelled pair with a model that never saw its label "
                                     "and ranks the likely-mislabelled ones (the current version, else the backbone)")
                refit = st.checkbox("Refit per fold", key="review_check_refit",
                                    help="Fine-tune the ce baseline once per fold (5 fine-tunes) instead of fitting "
                                         "a head on frozen embeddings: slower, meant for GPUs or small projects")
            if run:
                with db() as session:
                    job = label_check.launch_label_check(session, project, version=project.current_version_id,
                                                         refit=refit, actor=user)
                st.success(f"Label check queued (job {job.id}); its suspects appear here when it finishes.")
                ss["review_check_queued"] = True
            with st.expander("Label check jobs", expanded=bool(ss.get("review_check_queued"))):  # open once queued
                job_panel(user, project.id, ["check_labels"], key="review_check_jobs", show=2)
    with st.container(horizontal=True, key="review_toggles"):
        st.toggle(f"Flagged only ({q.flagged})", key="review_f_flagged", on_change=_filters_changed)
        st.toggle(f"Disagreements only ({q.disagreements})", key="review_f_disagree", on_change=_filters_changed)
        st.toggle(f"Suspected by the label check ({q.suspected})", key="review_f_suspected",
                  on_change=_filters_changed, help="Labels the model, trained without them, finds unlikely "
                                                   "(cleanlab on out-of-fold grade probabilities)")
    f = st.columns(4)
    f[0].selectbox("Segment", [None, *q.segments], format_func=lambda s: "any segment" if s is None else plain(s),
                   key="review_f_segment", on_change=_filters_changed)
    rounds = dict(q.rounds)
    f[1].selectbox("Round", [None, *rounds], format_func=lambda r: "any round" if r is None else plain(rounds.get(r, r)),
                   key="review_f_round", on_change=_filters_changed)
    f[2].selectbox("Annotator", [None, *q.annotators], format_func=lambda a: "anyone" if a is None else plain(a),
                   key="review_f_annotator", on_change=_filters_changed)
    f[3].selectbox("With a vote of", [None, *range(len(grades))], key="review_f_grade", on_change=_filters_changed,
                   format_func=lambda g: "any grade" if g is None else plain(grades[g]))
    ids = [it.pair_id for it in q.items]
    selected = ss["review_pair"] = _selected(ids, ss.get("review_pair"), ss.get("review_listed", []))
    ss["review_listed"] = ids
    if not ids:
        st.success("No pair matches." if q.pending or filters.suspected else "No disagreements to review.",
                   icon=":material/task_alt:")
        st.stop()
    left, right = st.columns([1, 1], gap="medium")
    with left:
        table = pd.DataFrame([{"": "▶" if it.pair_id == selected else "", "pair": it.pair_id,
                               "flag": "⚑" if it.flagged else "", "query": it.query, "item": it.title,
                               "votes": _counts(it.votes), "segment": it.segment or ""} for it in q.items])
        key = f"review_table_{q.offset}_{selected}_{zlib.crc32(str(ids).encode())}"  # a new list: no stale highlight
        st.dataframe(frame(table), key=key, on_select=partial(_pick, key, ids), selection_mode="single-row", hide_index=True,
                     height=min(38 + 35 * len(table), 38 + 35 * 12), column_config={
                         "": st.column_config.TextColumn(width=24), "pair": st.column_config.NumberColumn(width=56),
                         "flag": st.column_config.TextColumn(width=40)})
        p1, p2, p3 = st.columns([1, 2, 1], vertical_alignment="center")
        p1.button("‹ Page", key="review_prev_page", disabled=q.offset == 0, on_click=_page,
                  args=(max(0, q.offset - PAGE_SIZE),), width="stretch")
        p2.caption(f"Rows {q.offset + 1}–{q.offset + len(ids)} of {q.matching}")
        p3.button("Page ›", key="review_next_page", disabled=q.offset + PAGE_SIZE >= q.matching, on_click=_page,
                  args=(q.offset + PAGE_SIZE,), width="stretch")
    it = next(x for x in q.items if x.pair_id == selected)
    with right, st.container(border=True, key=f"review_item_{it.pair_id}"):
        st.markdown(f"**Query** {md(it.query)}" + ("  :red-badge[flagged]" if it.flagged else ""))
        st.markdown(f"**Item** {md(it.title)}")
        if it.text:
            st.caption(md(it.text[:600]))
        st.caption(f"Pair {it.pair_id} · segment {md(it.segment or '—')}")
        st.dataframe(frame(pd.DataFrame([{"annotator": v.annotator, "grade": grades[v.grade], "flag": v.flagged,
                                          "comment": v.comment or "", "at": v.at, "s": v.seconds_on_card}
                                         for v in it.votes])),
                     hide_index=True, key=f"review_votes_{it.pair_id}",
                     column_config={"at": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm"),
                                    "s": st.column_config.NumberColumn("s", help="Seconds on the card")})
        standing = f"majority now: {md(grades[it.majority])}, a tie goes to the lower grade"
        st.markdown(f"Votes: {md(_counts(it.votes))} ({standing}).")
        pred = it.prediction
        if pred is not None and pred.grade is not None:
            exp = f", expected grade {pred.expected:.2f} on 0–{len(grades) - 1}" if pred.expected is not None else ""
            st.markdown(f"Model {md(pred.version)} predicts **{md(grades[pred.grade])}**{exp}.")
        else:
            st.caption("No prediction: the project has no current model version, or it has not scored this pair.")
        sus = it.suspicion
        if sus is not None:
            st.markdown(f":orange-badge[suspected #{sus.rank}] Label check {sus.check_id}: the model, trained without "
                        f"this label, says **{md(grades[sus.model_grade])}** ({sus.model_prob:.0%} sure) and gives "
                        f"the label “{md(grades[sus.label])}” {sus.label_prob:.0%}.")
            _neighbours(it.pair_id)
        st.text_input("Comment (optional)", key=f"review_comment_{it.pair_id}")
        if sus is not None and sus.label < 9:
            st.caption(f"Confirm the label with **{sus.label + 1}** (“{md(grades[sus.label])}”), or correct it with "
                       "another grade's key.")
        st.caption("Decide with a click or a key: 1–9 the grade, J / K the next or previous pair.")
        st.toggle("Mark my decisions as gold", key="review_as_gold",
                  help="Each pair you decide becomes a gold pair: served to annotators as an ordinary card, their "
                       "answers scored against your grade (Agreement). Gold lists them all.")
        with st.container(horizontal=True, key="review_grades"):
            for g, name in enumerate(grades):  # all alike: the majority is a vote count above, not a default
                st.button(md(name), key=f"review_grade_{it.pair_id}_{g}", on_click=_decide, args=(it.pair_id, g),
                          shortcut=str(g + 1) if g < 9 else None, type="secondary")
        with st.container(horizontal=True):
            st.button("Previous pair", key="review_prev", shortcut="K", on_click=_move, args=(ids, -1, q.offset, q.matching),
                      icon=":material/arrow_upward:")
            st.button("Next pair", key="review_next", shortcut="J", on_click=_move, args=(ids, 1, q.offset, q.matching),
                      icon=":material/arrow_downward:")

elif view == "Queries":
    query_view(user, project, grades)

elif view == "Agreement":
    with db() as session:
        rep = review.agreement_report(session, user, project.id)
    for note in rep.notes:
        st.info(md(note))
    m1, m2 = st.columns(2)
    m1.metric("Krippendorff's α (ordinal)", _fmt(rep.alpha_overall))
    m2.metric("Pairs with ≥ 2 votes", rep.alpha_units)
    left, right = st.columns(2)
    if not rep.kappa_pairs.empty:
        both = pd.concat([rep.kappa_pairs, rep.kappa_pairs.rename(columns={"annotator_a": "annotator_b",
                                                                            "annotator_b": "annotator_a"})])
        grid = both.pivot_table(index="annotator_a", columns="annotator_b", values="kappa")
        fig = px.imshow(grid, zmin=-1, zmax=1, color_continuous_scale="RdBu", text_auto=".2f",
                        title="Quadratic-weighted κ per annotator pair")
        left.plotly_chart(safe_figure(fig), key="review_kappa_chart")
    if not rep.alpha_by_segment.empty:
        fig = px.bar(rep.alpha_by_segment, x="segment", y="alpha", hover_data=["units"], range_y=[-1, 1],
                     title="Krippendorff's α per segment")
        right.plotly_chart(safe_figure(fig), key="review_alpha_chart")
    if not rep.annotators.empty:
        a, b = st.columns(2)
        a.plotly_chart(safe_figure(px.bar(rep.annotators, x="annotator", y="labels_per_hour",
                                          hover_data=["labels", "median_seconds"],
                                          title="Throughput (labels per active hour)")), key="review_throughput_chart")
        b.plotly_chart(safe_figure(px.bar(rep.annotators, x="annotator", y="accuracy", hover_data=["adjudicated"],
                                          range_y=[0, 1], title="Accuracy on adjudicated pairs")),
                       key="review_accuracy_chart")
        st.dataframe(frame(rep.annotators), hide_index=True, key="review_annotators_table", column_config={
            "flag_rate": st.column_config.ProgressColumn("flag rate", format="percent", min_value=0, max_value=1,
                                                         help="Share of the annotator's standing votes they flagged"),
            "accuracy": st.column_config.NumberColumn(format="percent")})

    _quality(rep.quality)

elif view == "Gold":
    change = ss.pop("review_gold_change", None)
    with db() as session:
        gv = gold.gold_view(session, user, project.id, add=change[0] if change else (),
                            remove=change[1] if change else ())
    if change:
        st.toast(f"{gv.changed} pair(s) changed.", icon=":material/star:")
    st.caption(f"**{gv.gold_pairs}** gold pair(s) among {gv.adjudicated} adjudicated. {gv.share:.0%} of each "
               "annotator's new cards and list items are gold pairs (Settings), served like any other; never to whoever "
               "adjudicated the pair, and never twice to anyone. An answer is kept as a vote and scored on "
               "Agreement; the adjudicated grade stays final.")
    if gv.rows.empty:
        st.info("No adjudicated pair yet: decide some on Disagreements first (or there with 'Mark my decisions as "
                "gold').")
        st.stop()
    st.dataframe(frame(gv.rows), hide_index=True, key="review_gold_table", column_config={
        "gold": st.column_config.CheckboxColumn("gold"),
        "adjudicated_at": st.column_config.DatetimeColumn("adjudicated", format="YYYY-MM-DD HH:mm")})
    labels = {int(r.pair): f"{int(r.pair)} · {plain(str(r.query))[:40]} · {plain(str(r.item))[:40]}"
              for r in gv.rows.itertuples()}
    picked = st.multiselect("Pairs", list(labels), format_func=lambda p: labels.get(p, str(p)), key="review_gold_pick")
    with st.container(horizontal=True):
        if st.button("Mark as gold", key="review_gold_mark", icon=":material/star:", disabled=not picked):
            ss["review_gold_change"] = (picked, ())
            ss.pop("review_gold_pick", None)
            st.rerun()
        if st.button("Unmark", key="review_gold_unmark", icon=":material/star_border:", disabled=not picked):
            ss["review_gold_change"] = ((), picked)
            ss.pop("review_gold_pick", None)
            st.rerun()

elif view == "Settings":
    current = project_settings(project)
    with st.form("review_settings"):
        overlap = st.number_input("Annotators per pair (overlap k)", 1, 5, int(current["overlap"]), key="set_overlap")
        share = st.slider("Extra share of pairs graded twice (for agreement, when k = 1)", 0.0, 1.0,
                          float(current["agreement_share"]), 0.05, key="set_share")
        minutes = st.number_input("Lease minutes", 1, 240, int(current["lease_minutes"]), key="set_minutes")
        gold_share = st.number_input("Share of each annotator's cards (or list items) that are gold pairs", 0.0, 0.5,
                                     float(current["gold_share"]), 0.01, key="set_gold_share",
                                     help="0 to 0.5; gold pairs are marked on the Gold view. In list mode a gold "
                                          "list is one query's gold pairs with its ordinary open pairs")
        reasons = st.toggle("Show graders why a pair was picked (OOD score, cluster)", bool(current["show_reasons"]),
                            key="set_reasons", help="On by default (the Selection page has the same switch): knowing a "
                                                         "pair is 'unusual' can bias the grade.")
        modes = list(GRADING_MODES)
        mode = st.selectbox("How annotators grade", modes, format_func=GRADING_MODES.get, key="set_mode",
                            index=modes.index(current.get("annotation_mode", "card")))
        size = st.number_input("Results per list (list mode)", 2, 50, int(current.get("list_size", 10)),
                               key="set_list_size", help="A query's leased results shown and submitted together")
        saved = st.form_submit_button("Save", type="primary")
    if saved:
        with db() as session:
            annotation.update_annotation_settings(session, user, project.id, overlap=int(overlap),
                                                  agreement_share=float(share), lease_minutes=int(minutes),
                                                  show_reasons=bool(reasons), gold_share=float(gold_share),
                                                  annotation_mode=mode, list_size=int(size))
        st.success("Saved. The queue now follows the new settings.", icon=":material/check:")
