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

_CSS = """
.darl-list { font-family: var(--st-font, "Source Sans Pro", sans-serif); color: var(--st-text-color, #31333f); }
.darl-list .dl-head { border: 1px solid rgba(49,51,63,.2); border-radius: .5rem; padding: .5rem 1rem; margin-bottom: .5rem;
  position: sticky; top: 0; z-index: 2; background: var(--st-background-color, #fff); display: flex; gap: 1rem;
  align-items: flex-end; }
.darl-list .dl-head > div:first-child { flex: 1; min-width: 0; }
.darl-list .dl-cap { font-size: .85rem; opacity: .65; }
.darl-list .dl-query { font-size: 1.45rem; font-weight: 600; line-height: 1.3; margin-top: .1rem; }
.darl-list ol { list-style: none; margin: 0; padding: 0; }
.darl-list li { display: flex; gap: .75rem; align-items: flex-start; padding: .35rem .7rem; margin-bottom: .25rem;
  border: 1px solid rgba(49,51,63,.15); border-left: 4px solid rgba(49,51,63,.12); border-radius: .4rem;
  cursor: pointer; }
.darl-list li.dl-focus { border-color: var(--st-primary-color, #ff4b4b); border-left-color: var(--st-primary-color, #ff4b4b);
  background: rgba(255,75,75,.06); }
.darl-list .dl-n { width: 1.6rem; text-align: right; opacity: .55; font-variant-numeric: tabular-nums; padding-top: .05rem; }
.darl-list .dl-body { flex: 1; min-width: 0; }
.darl-list .dl-title { font-weight: 600; }
.darl-list .dl-text, .darl-list .dl-why { font-size: .88rem; overflow: hidden; display: -webkit-box;
  -webkit-line-clamp: 1; -webkit-box-orient: vertical; }
.darl-list .dl-why { opacity: .65; display: none; }
.darl-list li.dl-focus .dl-text { -webkit-line-clamp: 6; }
/* an unfocused result is one line, title then text, like a results page; the focused one opens up */
.darl-list li:not(.dl-focus) .dl-body { display: flex; gap: .6rem; align-items: baseline; }
.darl-list li:not(.dl-focus) .dl-title { flex: 0 1 auto; max-width: 72%; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.darl-list li:not(.dl-focus) .dl-text { flex: 1 1 0; display: block; white-space: nowrap; text-overflow: ellipsis;
  opacity: .75; }
.darl-list li.dl-focus .dl-why { display: -webkit-box; -webkit-line-clamp: 4; }
.darl-list .dl-grade { min-width: 7.5rem; text-align: center; font-size: .85rem; padding: .15rem .5rem; border-radius: 1rem;
  background: rgba(49,51,63,.06); white-space: nowrap; }
.darl-list .dl-grade.dl-set { font-weight: 600; }
.darl-list .dl-grade.dl-skip { background: rgba(250,202,43,.22); }
.darl-list .dl-bar { display: flex; flex-wrap: wrap; gap: .4rem; align-items: center; margin-top: .6rem; }
.darl-list button { font: inherit; font-size: .9rem; padding: .3rem .8rem; border-radius: .5rem; cursor: pointer;
  border: 1px solid rgba(49,51,63,.25); background: transparent; color: inherit; }
.darl-list button.dl-submit { background: var(--st-primary-color, #ff4b4b); color: #fff; border-color: transparent; font-weight: 600; }
.darl-list button:disabled { opacity: .45; cursor: default; }
.darl-list .dl-status { font-size: .9rem; white-space: nowrap; padding-bottom: .2rem; }
.darl-list .dl-note { font-size: .85rem; color: #b35c00; min-height: 1.2rem; margin-top: .3rem; }
.darl-list .dl-keys { font-size: .82rem; opacity: .65; margin-top: .2rem; }
"""

_JS = r"""
export default function ({ parentElement, data, setTriggerValue }) {
  const root = parentElement.querySelector(".darl-list") || parentElement;
  const store = "darl-list-" + data.list_id;
  const items = data.items, K = Math.min(data.grades.length, 9);
  const saved = JSON.parse(window.sessionStorage.getItem(store) || "null");
  // decisions: lease id -> grade index, or null for a skip; history: lease ids in the order decided (U pops).
  const st = saved || { decisions: {}, history: [], focus: 0, started: Date.now(), locked: null };
  if (!saved) {  // a new list: forget the lists before it
    Object.keys(window.sessionStorage).filter((k) => k.startsWith("darl-list-") && k !== store)
      .forEach((k) => window.sessionStorage.removeItem(k));
  }
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text; return e; };
  const save = () => window.sessionStorage.setItem(store, JSON.stringify(st));
  const decided = (i) => Object.prototype.hasOwnProperty.call(st.decisions, items[i].lease);
  const done = () => items.every((_, i) => decided(i));
  const locked = () => st.locked === data.rev;  // a submit of this very render is on its way
  root.replaceChildren();
  root.setAttribute("data-list-id", String(data.list_id));
  const head = el("div", "dl-head");
  const status = el("div", "dl-status"), titleBox = el("div");
  titleBox.append(el("div", "dl-cap", data.caption), el("div", "dl-query", data.query));
  head.append(titleBox, status);
  const list = el("ol"), rows = [];
  items.forEach((it, i) => {
    const li = el("li"), body = el("div", "dl-body");
    li.dataset.lease = String(it.lease);
    body.append(el("div", "dl-title", it.title));
    if (it.text) body.append(el("div", "dl-text", it.text));
    if (it.why.length) body.append(el("div", "dl-why", "Why picked: " + it.why.join(" ")));
    const badge = el("div", "dl-grade");
    li.append(el("div", "dl-n", String(i + 1)), body, badge);
    li.addEventListener("click", () => { if (!locked()) { st.focus = i; paint(); } });
    list.append(li); rows.push([li, badge]);
  });
  const bar = el("div", "dl-bar");
  const gradeButtons = data.grades.slice(0, K).map((g, k) => {
    const b = el("button", "dl-g", (k + 1) + " · " + g); b.type = "button";
    b.addEventListener("click", () => act(String(k + 1))); return b; });
  const skip = el("button", "dl-skip", "S · skip"), undo = el("button", "dl-undo", "U · undo");
  const submit = el("button", "dl-submit", "Submit list ⏎");
  [skip, undo, submit].forEach((b) => { b.type = "button"; });
  skip.addEventListener("click", () => act("s")); undo.addEventListener("click", () => act("u"));
  submit.addEventListener("click", () => act("Enter"));
  const note = el("div", "dl-note"), keys = el("div", "dl-keys", data.keys);
  bar.append(...gradeButtons, skip, undo, submit);
  root.append(head, list, bar, note, keys);

  function paint() {
    rows.forEach(([li, badge], i) => {
      const d = st.decisions[items[i].lease];
      li.classList.toggle("dl-focus", i === st.focus);
      li.setAttribute("aria-current", i === st.focus ? "true" : "false");
      badge.className = "dl-grade" + (d === null ? " dl-skip" : d !== undefined ? " dl-set" : "");
      // worst grade red, best green: a query's grades can be compared at a glance
      badge.style.background = d === null || d === undefined ? "" :
        "hsla(" + Math.round(120 * d / Math.max(data.grades.length - 1, 1)) + ", 70%, 45%, .2)";
      badge.textContent = d === null ? "skipped" : d !== undefined ? data.grades[d] : "—";
    });
    const n = items.filter((_, i) => decided(i)).length;
    status.textContent = locked() ? "Submitting…" : n + " of " + items.length + " decided"
      + (n === items.length ? " · Enter submits" : "");
    submit.disabled = !done() || locked();
    undo.disabled = !st.history.length || locked();
    rows[st.focus][0].scrollIntoView({ block: "nearest" });
    save();
  }
  function nextOpen(from) {  // the next undecided item after ``from``, wrapping; ``from`` if none is left
    for (let s = 1; s <= items.length; s++) { const i = (from + s) % items.length; if (!decided(i)) return i; }
    return from;
  }
  function decide(value) {
    const lease = items[st.focus].lease;
    st.decisions[lease] = value;
    st.history = st.history.filter((l) => l !== lease).concat([lease]);
    st.focus = nextOpen(st.focus);
  }
  function act(key) {
    if (locked()) { note.textContent = "Key ignored: this list is being submitted."; return true; }
    note.textContent = "";
    const k = key.length === 1 ? key.toLowerCase() : key;
    if (k === "ArrowDown" || k === "j") st.focus = Math.min(st.focus + 1, items.length - 1);
    else if (k === "ArrowUp" || k === "k") st.focus = Math.max(st.focus - 1, 0);
    else if (/^[1-9]$/.test(k) && Number(k) <= K) decide(Number(k) - 1);
    else if (k === "s") decide(null);
    else if (k === "u") {
      const lease = st.history.pop();
      if (lease === undefined) return true;
      delete st.decisions[lease];
      st.focus = items.findIndex((it) => it.lease === lease);
    } else if (k === "Enter") {
      if (!done()) { note.textContent = "Grade or skip every item first."; paint(); return true; }
      st.locked = data.rev;
      const decisions = items.map((it) => [it.lease, st.decisions[it.lease]]);
      save();
      setTriggerValue("submit", { list_id: data.list_id, decisions: decisions,
                                  seconds: (Date.now() - st.started) / 1000 });
    } else return false;
    paint();
    return true;
  }
  const onKey = (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    if (!document.body.contains(root)) return;
    if (act(e.key)) { e.preventDefault(); e.stopPropagation(); }
  };
  if (window.__darlListKeys) window.removeEventListener("keydown", window.__darlListKeys, true);
  window.__darlListKeys = onKey;
  window.addEventListener("keydown", onKey, true);
  paint();
  // Grading happens here, without the server: every so often (half the lease) tell it the list is still
  // being worked on, so its leases do not expire under a slow, careful annotator. Not while submitting.
  const alive = window.setInterval(() => { if (!locked()) setTriggerValue("alive", data.list_id); },
                                   data.keepalive_s * 1000);
  return () => { window.clearInterval(alive); window.removeEventListener("keydown", onKey, true);
                 if (window.__darlListKeys === onKey) window.__darlListKeys = null; };
}
"""

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
