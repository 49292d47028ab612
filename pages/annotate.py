"""Grading screen: one card at a time, keyboard first (1..K grade, S skip, U undo); or, in list mode
(``pages/_list_ui.py``), one query with its results, graded in the browser and submitted as one.

Widgets only record the action (button callbacks); the script then makes ONE service call — the action,
or ``next_card`` when there is none — and renders the card it returns.

Every button's key carries the lease of the card it was drawn with, and its callback records that lease:
a key pressed while the next card loads still names the card that was on screen, and the service refuses
it (StaleCardError) instead of grading a card the annotator has not seen. The press is then dropped.
"""

from __future__ import annotations

import time

import streamlit as st
from sqlalchemy.orm import Session

from darl_core.errors import StaleCardError
from db.models import Role, User
from db.services import annotation, lists
from db.services.projects import project_settings
from pages._list_ui import guidelines_panel, list_screen, progress_line
from pages._shared import db, require_role, selected_project
from pages._text import md

MODES = {"card": "One card at a time", "list": "A query's results as a list"}


def _act(kind: str, lease_id: int | None, value: int | None = None) -> None:
    st.session_state["annotate_action"] = (kind, lease_id, value)


def _apply(session: Session, user: User, project_id: int,
           action: tuple[str, int | None, int | None] | None) -> annotation.Step:
    """The one service call of this run: the recorded action on the card it names, or the current card."""
    kind, lease_id, value = action or ("", None, None)
    if kind == "grade" and lease_id is not None and value is not None:
        started = st.session_state.get("annotate_started", time.time())
        return annotation.submit_label(session, user, lease_id, value, time.time() - started,
                                       flagged=bool(st.session_state.get("annotate_flag")),
                                       comment=st.session_state.get("annotate_comment") or None)
    if kind == "skip" and lease_id is not None:
        return annotation.skip(session, user, lease_id)
    if kind == "undo":
        return annotation.undo_last(session, user, project_id, lease_id)
    return annotation.next_card(session, user, project_id)


user = require_role(Role.annotator)
project = selected_project()
grades: list[str] = list(project.grades)

mode = str(project_settings(project).get("annotation_mode", "card"))
if mode == "both":  # the annotator chooses; their choice is kept per project
    with db() as session:
        mode = lists.annotation_mode_for(session, user, project.id)
    picked = st.segmented_control("Grade", list(MODES), default=mode, format_func=MODES.get, key="annotate_mode",
                                  label_visibility="collapsed")
    if picked in MODES and picked != mode:
        with db() as session:
            lists.set_list_preference(session, user, project.id, picked)
            shown = st.session_state.pop("annotate_list_shown", None)
            if picked == "card" and shown is not None:  # its pairs go back to the queue, ungraded
                lists.release_list(session, user, shown)
        mode = picked
if mode == "list":
    list_screen(user, project, grades)
    st.stop()

action = st.session_state.pop("annotate_action", None)
dropped = False
with db() as session:
    try:
        step = _apply(session, user, project.id, action)
    except StaleCardError:  # pressed on a card that has left the screen: nothing was written
        dropped = True
        step = annotation.next_card(session, user, project.id)

if action and action[0] in ("grade", "skip") and not dropped:
    st.session_state["annotate_flag"] = False
    st.session_state["annotate_comment"] = ""
if dropped:
    st.toast("Key press ignored: it was meant for the card before this one.", icon=":material/block:")
elif step.message:
    st.toast(md(step.message), icon=":material/info:")

card = step.card
lease = card.lease_id if card is not None else None
if card is not None and st.session_state.get("annotate_lease") != card.lease_id:
    st.session_state["annotate_lease"] = card.lease_id
    st.session_state["annotate_started"] = time.time()

main, side = st.columns([5, 4], gap="medium")
with side:
    guidelines_panel(project, grades)
with main:
    progress_line(step.progress)
    if card is None:
        st.success("Nothing left to grade in this project right now. Thank you!", icon=":material/task_alt:")
    else:
        with st.container(border=True, key="annotate_card"):
            st.caption(f"Query · segment **{md(card.segment) or '—'}**")
            st.markdown(f"### {md(card.query)}")
            st.markdown(f"**{md(card.title)}**")
            if card.text:
                st.markdown(md(card.text))
        if card.why:
            with st.container(key="annotate_why"):
                st.caption("**Why this pair was picked:** " + " ".join(md(s) for s in card.why))
        with st.container(horizontal=True, key="annotate_grades"):  # wraps rather than truncating grade names
            for i, name in enumerate(grades):
                st.button(md(name), key=f"annotate_grade_{i}_{lease}", shortcut=str(i + 1) if i < 9 else None,
                          on_click=_act, args=("grade", lease, i), width="stretch")
    with st.container(horizontal=True, key="annotate_actions"):  # content-wide: labels never truncate
        if card is not None:
            st.button("Skip", key=f"annotate_skip_{lease}", shortcut="S", on_click=_act, args=("skip", lease),
                      icon=":material/skip_next:")
        st.button("Undo last", key=f"annotate_undo_{lease}", shortcut="U", on_click=_act, args=("undo", lease),
                  icon=":material/undo:", disabled=step.previous is None)
        if card is not None:
            st.toggle("Flag for review", key="annotate_flag")
    if card is not None and st.session_state.get("annotate_flag"):
        st.text_input("What is wrong with it?", key="annotate_comment", placeholder="e.g. image shows another brand")
    prev = step.previous
    if prev is not None:
        grade_name = grades[prev.grade] if 0 <= prev.grade < len(grades) else str(prev.grade)
        with st.container(border=True, key="annotate_previous"):
            st.caption(f"Previous card · you graded **{md(grade_name)}** · U undoes it (up to "
                       f"{annotation.UNDO_DEPTH} cards back)")
            st.markdown(f"{md(prev.query)} → {md(prev.title)}")
    if card is not None:
        st.caption(f"Keys: 1–{min(len(grades), 9)} grade · S skip · U undo. The flag and comment go with the grade.")
