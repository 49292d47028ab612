"""Annotate's list mode: one query, its leased items, graded by keyboard in the browser, submitted at once.

The list is a small browser component (``st.components.v2``): focus, grades, skips and undo live in the
page (and in the tab's ``sessionStorage`` under the list id, so a reload keeps them) until Enter submits,
so grading a list of N items costs one server round trip instead of N. A key only ever acts on the item
the page shows focused, since the same script moves the marker and applies the key. Once Enter is
pressed the list locks: later presses are dropped with a note until the next list is drawn.

The submit names the list it was drawn with (the component's key and payload carry the list id); the
service refuses a list that is no longer this annotator's open one (StaleCardError) and writes nothing,
and the page drops that press with a note. Text reaches the browser through ``plain`` and is set with
``textContent``: never parsed as HTML or Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import streamlit as st

from darl_core.errors import DarlError, StaleCardError
from darl_core.guidelines import grade_table
from db.models import Project, User
from db.services import annotation, lists
from db.services.projects import project_settings
from pages._shared import db
from pages._text import guidelines_md, md, plain

ACTION = "annotate_list_action"  # (list id, {lease id: grade or None}, seconds): set by the component
KEY_PREFIX = "annotate_list_"

# The component's style and script, as files so that editors and linters treat them as CSS and JavaScript.
_ASSETS = Path(__file__).with_name("_assets")
_CSS = (_ASSETS / "query_list.css").read_text()
_JS = (_ASSETS / "query_list.js").read_text()


_component = st.components.v2.component("darl_query_list", html='<div class="darl-list"></div>', css=_CSS, js=_JS,
                                        isolate_styles=False)


def _record(key: str) -> None:
    """Component callback: the submit as drawn (its list id and decisions), for the script's one service call."""
    payload = getattr(st.session_state[key], "submit", None)
    if isinstance(payload, Mapping):
        st.session_state[ACTION] = payload


def take_action() -> tuple[int, dict[int, int | None], float | None] | None:
    """The recorded submit, parsed: (list id, {lease id: grade or None for a skip}, seconds); None if none.

    A malformed payload (not from our component) is dropped rather than guessed at."""
    payload = st.session_state.pop(ACTION, None)
    try:
        list_id = int(payload["list_id"])
        decisions = {int(lease): (None if grade is None else int(grade)) for lease, grade in payload["decisions"]}
        seconds = payload.get("seconds")
        return list_id, decisions, float(seconds) if isinstance(seconds, (int, float)) else None
    except (TypeError, KeyError, ValueError):
        return None


def list_data(qlist: Any, grades: list[str], rev: int, lease_minutes: float) -> dict[str, Any]:
    """What the component draws: every text through ``plain`` (set as text in the browser, never markup).
    ``keepalive_s``: how often the page tells the server the list is still open (half the lease)."""
    k = min(len(grades), 9)
    return {"list_id": int(qlist.list_id), "rev": rev, "query": plain(qlist.query),
            "keepalive_s": max(15, int(lease_minutes * 30)),
            "caption": f"Query · {len(qlist.items)} results · read it once, then grade each result",
            "grades": [plain(g) for g in grades],
            "keys": f"Keys: ↑/↓ or J/K move · 1–{k} grade the marked result · S skip · U undo · Enter submits",
            "items": [{"lease": int(it.lease_id), "title": plain(it.title), "text": plain(it.text or ""),
                       "why": _why(it.why)} for it in qlist.items]}


def _why(why: str | tuple[str, ...] | None) -> list[str]:
    """The "why picked" sentences as plain text (one string or several)."""
    return [plain(why)] if isinstance(why, str) else [plain(w) for w in why or ()]


def show_list(qlist: Any, grades: list[str], lease_minutes: float) -> None:
    """Draw the list, keyed by its id: a new list is a new component, with no state of the one before.
    Its "alive" signal needs no callback: the rerun it causes calls ``next_list``, which extends the lease."""
    rev = st.session_state["annotate_list_rev"] = int(st.session_state.get("annotate_list_rev", 0)) + 1
    key = f"{KEY_PREFIX}{int(qlist.list_id)}"
    st.session_state["annotate_list_shown"] = int(qlist.list_id)
    _component(key=key, data=list_data(qlist, grades, rev, lease_minutes), on_submit_change=partial(_record, key),
               on_alive_change=_noop)


def _noop() -> None:
    """A callback for a trigger that only needs the rerun it causes."""


def submitted_note(decisions: Mapping[int, int | None]) -> str:
    skipped = sum(v is None for v in decisions.values())
    return f"List submitted: {len(decisions) - skipped} graded" + (f", {skipped} skipped." if skipped else ".")


def guidelines_panel(project: Project, grades: list[str]) -> None:
    """The grade table in button order (fits at 1400x1000), the full guidelines one click away."""
    with st.expander("Guidelines", expanded=True, icon=":material/menu_book:"):
        with st.container(height=720, border=False, key="annotate_guidelines"):
            for row in grade_table(project.guidelines, grades):
                named = f" — {md(row.name)}" if row.name and row.name.lower() != row.grade.lower() else ""
                st.markdown(f"**{row.key} · {md(row.grade)}**{named}")
                if row.rules:
                    st.caption("\n".join(f"- {md(rule)}" for rule in row.rules))
            if not project.guidelines:
                st.caption("No guidelines for this project yet.")
        if project.guidelines:
            with st.expander("Full guidelines"):
                st.markdown(guidelines_md(project.guidelines))



def progress_line(p: Any) -> None:
    """The round's progress (as on the card screen) above the list."""
    if p.round_total:
        graded = p.round_graded or 0
        st.progress(graded / p.round_total,
                    text=f"{md(p.round_name)}: {graded} of {p.round_total} pairs graded · "
                         f"yours in this round: {p.mine_in_round} · today: {p.done_today}")
    else:
        st.caption(f"No round is open · today: {p.done_today}")


def list_screen(user: User, project: Project, grades: list[str]) -> None:
    """List mode: ONE service call (the recorded submit, or the open/next list), then the list it returns."""
    action = take_action()
    on_screen = st.session_state.get("annotate_list_shown")
    dropped: str | None = None
    error: str | None = None
    with db() as session:
        try:
            if action is not None:
                list_id, decisions, seconds = action
                qlist = lists.submit_list(session, user, list_id, decisions, seconds=seconds)
            else:
                qlist = lists.next_list(session, user, project.id)
        except StaleCardError as err:  # a list that has left the screen, or expired: nothing was written
            session.rollback()
            dropped = str(err)
            qlist = lists.next_list(session, user, project.id)
        except DarlError as err:  # a bad map: nothing was written; the same list comes back to fix
            session.rollback()
            error = str(err)
            qlist = lists.next_list(session, user, project.id)
    if dropped and action is not None and action[0] != on_screen:
        st.toast("Submit ignored: it was meant for a list that is no longer on screen.", icon=":material/block:")
    elif dropped:  # the list on screen itself could not be saved (it expired): say why
        st.warning(md(dropped), icon=":material/timer_off:")
    elif error:
        st.error(md(error), icon=":material/error:")
    elif action is not None:
        st.toast(submitted_note(action[1]), icon=":material/task_alt:")
    main, side = st.columns([5, 3], gap="medium")
    with side:
        guidelines_panel(project, grades)
    with main:
        if qlist is None:
            with db() as session:
                progress_line(annotation.progress(session, user, project.id))
            st.success("Nothing left to grade in this project right now. Thank you!", icon=":material/task_alt:")
            return
        progress_line(qlist.progress)
        show_list(qlist, grades, float(project_settings(project)["lease_minutes"]))
