"""Grading screen: one card at a time, keyboard first (1..K grade, S skip, U undo).

Widgets only record the action (button callbacks); the script then makes ONE service call — the action,
or ``next_card`` when there is none — and renders the card it returns.
"""

from __future__ import annotations

import time

import streamlit as st

from db.models import Role
from db.services import annotation
from pages._shared import db, require_role, selected_project
from pages._text import guidelines_md, md


def _act(kind: str, value: int | None = None) -> None:
    st.session_state["annotate_action"] = (kind, value)


user = require_role(Role.annotator)
project = selected_project()
grades: list[str] = list(project.grades)

action = st.session_state.pop("annotate_action", None)
lease_id = st.session_state.get("annotate_lease")
with db() as session:
    if action and action[0] == "grade" and lease_id is not None:
        started = st.session_state.get("annotate_started", time.time())
        step = annotation.submit_label(session, user, lease_id, int(action[1]), time.time() - started,
                                       flagged=bool(st.session_state.get("annotate_flag")),
                                       comment=st.session_state.get("annotate_comment") or None)
    elif action and action[0] == "skip" and lease_id is not None:
        step = annotation.skip(session, user, lease_id)
    elif action and action[0] == "undo":
        step = annotation.undo_last(session, user, project.id)
    else:
        step = annotation.next_card(session, user, project.id)

if action and action[0] in ("grade", "skip"):
    st.session_state["annotate_flag"] = False
    st.session_state["annotate_comment"] = ""
if step.message:
    st.toast(md(step.message), icon=":material/info:")

card = step.card
if card is not None and st.session_state.get("annotate_lease") != card.lease_id:
    st.session_state["annotate_lease"] = card.lease_id
    st.session_state["annotate_started"] = time.time()

main, side = st.columns([2.5, 1.5], gap="large")
with side:
    st.markdown("**Guidelines**")
    with st.container(height=520, border=True, key="annotate_guidelines"):
        st.markdown(guidelines_md(project.guidelines) if project.guidelines else "_No guidelines for this project yet._")
with main:
    p = step.progress
    m1, m2 = st.columns(2)
    m1.metric("Done today", p.done_today)
    m2.metric("Left in round", "—" if p.left_in_round is None else p.left_in_round,
              help=f"Pairs of {md(p.round_name)} that still need a vote." if p.round_name else "No round is open.")
    if card is None:
        st.success("Nothing left to grade in this project right now. Thank you!", icon=":material/task_alt:")
        st.button("Undo last", key="annotate_undo_empty", shortcut="U", on_click=_act, args=("undo",))
        st.stop()
    with st.container(border=True, key="annotate_card"):
        st.caption(f"Query · segment **{md(card.segment) or '—'}**")
        st.markdown(f"### {md(card.query)}")
        st.markdown(f"**{md(card.title)}**")
        if card.text:
            st.markdown(md(card.text))
        if card.reasons is not None:
            with st.expander("Why this pair was picked", expanded=False):
                st.json({"score": card.score, **card.reasons})
    with st.container(horizontal=True, key="annotate_grades"):  # wraps rather than truncating grade names
        for i, name in enumerate(grades):
            st.button(md(name), key=f"annotate_grade_{i}", shortcut=str(i + 1) if i < 9 else None,
                      on_click=_act, args=("grade", i), width="stretch")
    with st.container(horizontal=True, key="annotate_actions"):  # content-wide: labels never truncate
        st.button("Skip", key="annotate_skip", shortcut="S", on_click=_act, args=("skip",), icon=":material/skip_next:")
        st.button("Undo last", key="annotate_undo", shortcut="U", on_click=_act, args=("undo",), icon=":material/undo:")
    st.toggle("Flag this card for review", key="annotate_flag")
    if st.session_state.get("annotate_flag"):
        st.text_input("What is wrong with it?", key="annotate_comment", placeholder="e.g. image shows another brand")
    st.caption(f"Keys: 1–{min(len(grades), 9)} grade · S skip · U undo. The flag and comment go with the grade.")
