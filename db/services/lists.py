"""Query lists: one query's pairs leased, shown and submitted as one unit (the search rater's screen).

Rules, on top of the card rules of ``db.services.annotation`` (the same overlap, agreement share, queue
order and lease minutes apply to every pair of a list):
- a list is ONE query and up to ``list_size`` (project setting, default 10) of its pairs that the annotator
  may take; the pairs of the newest open round come first (a round's queries in rank order, each with its
  round pairs in rank order: a by-query round is served query by query), then open pool pairs by priority;
- all the list's pair leases are claimed in one transaction, share one expiry and carry the list id (the id
  of the list's first lease); nobody is leased a pair twice, in a list or on a card (``uq_leases_pair_user``);
- an annotator has at most one open list per project: ``next_list`` returns it again (its expiry refreshed)
  until it is submitted or released;
- ``submit_list`` needs a decision (grade or skip) for every open item, all of them the actor's; it checks
  everything first and then writes all grades (``label`` events, as ``submit_label`` does) and skips in the
  same transaction, or raises and writes nothing;
- a list whose leases expired (``expire_leases`` expires a list's open leases together) is refused with
  ``StaleCardError``: its pairs went back to the queue and may be someone else's now. A list past its expiry
  that nobody has expired yet is still the annotator's, and is accepted (as a late card label is);
- releasing or expiring a list gives its slots back; the annotator is not offered those pairs again;
- gold pairs (``db.services.gold``) come as a list of one query: its gold pairs the annotator may see, mixed
  with its ordinary open pairs, shown like any list.

A lease in a list is never the card on screen (``annotation._CURRENT``), and card actions on it are refused;
an undo from the card screen that reaches a grade given in a list re-opens that pair as a card.

Concurrency: as for cards (``annotation``'s docstring): on SQLite every transaction is BEGIN IMMEDIATE; on
PostgreSQL the query row is locked first (SKIP LOCKED: another annotator is leasing that query's list, so take
the next query; concurrent claims do not break one query into many short lists), then its candidate pair rows
(SKIP LOCKED: a card claim holds one), and the leases are counted by the next statement, whose snapshot
includes every claim committed before the locks were granted. So nobody takes a slot that is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import JSON, DateTime, bindparam, column, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, NotFoundError, StaleCardError
from darl_core.reasons import explain
from db.models import AnnotationPref, GoldPair, Lease, LeaseStatus, Project, Role, User, utcnow
from db.services import annotation as ann
from db.services import cards, gold
from db.services.projects import project_settings
from db.services.users import require_role
from db.session import is_sqlite

Mode = Literal["card", "list"]


@dataclass(frozen=True)
class ListItem:
    lease_id: int
    pair_id: int
    title: str
    text: str | None
    why: str | None  # why DASA picked it, in words (None unless the project shows reasons)


@dataclass(frozen=True)
class QueryList:
    list_id: int
    query: str
    items: tuple[ListItem, ...]
    expires_at: datetime
    progress: cards.Progress


_NOT_MINE = ann._NOT_MINE.format(col="p.id")
_FREE = f"{ann._TAKEN_SQL.format(col='p.id')} < {ann._NEED.format(col='p.id')}"
_SQL_OPEN_LIST = text(
    "SELECT l.list_id FROM leases l JOIN pairs p ON p.id = l.pair_id WHERE l.user_id = :uid AND l.status = 'active' "
    "AND l.list_id IS NOT NULL AND p.project_id = :pid ORDER BY l.list_id LIMIT 1")
_SQL_EXTEND_LIST = text("UPDATE leases SET expires_at = :exp WHERE list_id = :lid AND status = 'active'").bindparams(
    bindparam("exp", type_=DateTime))
_SQL_SET_LIST = text("UPDATE leases SET list_id = :lid WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
# Candidate queries in queue order (leaving out those tried already), then one query's candidate pairs.
_SQL_ROUND_QUERIES = text(
    "SELECT p.query_id FROM round_items ri JOIN pairs p ON p.id = ri.pair_id WHERE ri.round_id = :rid "
    f"AND p.query_id NOT IN :tried AND {_NOT_MINE} AND {_FREE} ORDER BY ri.rank LIMIT :n").bindparams(
    bindparam("tried", expanding=True))
_SQL_ROUND_PAIRS = text(
    "SELECT p.id FROM round_items ri JOIN pairs p ON p.id = ri.pair_id WHERE ri.round_id = :rid "
    f"AND p.query_id = :qid AND {_NOT_MINE} AND {_FREE} ORDER BY ri.rank LIMIT :n")
_SQL_POOL_QUERIES = text(
    f"SELECT p.query_id FROM pairs p WHERE p.project_id = :pid AND p.queue_open = TRUE AND {_NOT_MINE} "
    "AND p.query_id NOT IN :tried ORDER BY p.priority DESC, p.id LIMIT :n").bindparams(
    bindparam("tried", expanding=True))
# PostgreSQL: one claimer per query at a time (SKIP LOCKED: take the next query), so that concurrent claims do
# not split a query's pairs into many short lists. SQLite transactions are serial anyway.
_SQL_LOCK_QUERY = text("SELECT id FROM queries WHERE id = :qid FOR UPDATE SKIP LOCKED")
# A query's candidates are claimed in a handful of set statements (a list is ten pairs: ten claims one by one
# cost ten times the statements). PostgreSQL locks them first (SKIP LOCKED: a card claimer has one now), and
# counts their leases in the next statement, whose snapshot includes every claim committed before the locks.
_SQL_LOCK_PAIRS = text("SELECT p.id FROM pairs p WHERE p.id IN :ids FOR UPDATE OF p SKIP LOCKED").bindparams(
    bindparam("ids", expanding=True))
_SQL_CHECK_PAIRS = text(
    f"SELECT p.id, {ann._TAKEN_SQL.format(col='p.id')} AS taken, {ann._NEED.format(col='p.id')} AS needed, "
    f"{ann._GRADED} AS graded, p.split, p.queue_open FROM pairs p WHERE p.id IN :ids").bindparams(
    bindparam("ids", expanding=True))
_SQL_CLOSE_HINTS = text("UPDATE pairs SET queue_open = FALSE WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True))
# The open-pair test is written as an expression so that SQLite looks the query's pairs up by (project, query)
# instead of walking the queue index in order (ix_pairs_queue): a query has ten pairs, the queue a million, and
# the walk only stops at the LIMIT (seconds per list at 1M pairs, bench/annotate_latency.py).
_SQL_POOL_PAIRS = text(
    "SELECT p.id FROM pairs p WHERE p.project_id = :pid AND p.query_id = :qid "
    f"AND (CASE WHEN p.queue_open THEN 1 ELSE 0 END) = 1 AND {_NOT_MINE} ORDER BY p.priority DESC, p.id LIMIT :n")
# The list as shown: its open items in claim (queue) order, each with the reasons of the round that picked it.
_SQL_ITEMS = text(
    "SELECT l.id, l.pair_id, l.expires_at, q.text AS query, i.title, i.text AS body, ri.reasons, ps.probs, "
    "ri.id AS round_item FROM leases l JOIN pairs p ON p.id = l.pair_id JOIN queries q ON q.id = p.query_id "
    "JOIN items i ON i.id = p.item_id "
    "LEFT JOIN round_items ri ON ri.round_id = l.round_id AND ri.pair_id = l.pair_id "
    "LEFT JOIN selection_rounds r ON r.id = ri.round_id "
    "LEFT JOIN pair_scores ps ON ps.model_version_id = r.model_version_id AND ps.pair_id = l.pair_id "
    "WHERE l.list_id = :lid AND l.status = 'active' ORDER BY l.id").columns(
    column("id"), column("pair_id"), column("expires_at", DateTime), column("query"), column("title"),
    column("body"), column("reasons", JSON), column("probs", JSON), column("round_item"))
_SQL_LIST_LEASES = ("SELECT l.id, l.user_id, l.status, l.pair_id, l.round_id, p.project_id FROM leases l "
                    "JOIN pairs p ON p.id = l.pair_id WHERE l.list_id = :lid ORDER BY l.id")
_SQL_CLOSE = text("UPDATE leases SET status = :status WHERE id IN :ids AND status = 'active'").bindparams(
    bindparam("ids", expanding=True))
_SQL_REOPEN = text("UPDATE pairs SET queue_open = TRUE WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))


def _list_size(project: Project, size: int | None) -> int:
    size = project_settings(project)["list_size"] if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= ann.MAX_LIST_SIZE:
        raise ConfigError(f"A list holds 1..{ann.MAX_LIST_SIZE} pairs; `size` was {size!r}.")
    return size


def _claim_list(session: Session, actor: User, project_id: int, round_id: int | None, size: int,
                params: dict[str, Any], now: datetime, minutes: int) -> int | None:
    """Lease up to ``size`` pairs of the first query that has any for the actor; returns the list id."""
    sources: list[tuple[Any, Any, dict[str, Any], int | None, bool]] = []
    if round_id is not None:
        sources.append((_SQL_ROUND_QUERIES, _SQL_ROUND_PAIRS, {"rid": round_id}, round_id, False))
    sources.append((_SQL_POOL_QUERIES, _SQL_POOL_PAIRS, {"pid": project_id}, None, True))
    lock = not is_sqlite(session)
    for queries_sql, pairs_sql, where, rid, open_only in sources:
        tried: set[int] = set()
        for _ in range(64):  # each pass closes the stale hints it meets, so this ends quickly
            queries = list(dict.fromkeys(session.scalars(
                queries_sql, {**params, **where, "n": ann._BATCH, "tried": sorted(tried) or [-1]})))
            if not queries:
                break
            for qid in queries:
                tried.add(qid)
                if lock and session.execute(_SQL_LOCK_QUERY, {"qid": qid}).first() is None:
                    continue  # another annotator is leasing this query's pairs right now
                ids = list(session.scalars(pairs_sql, {**params, **where, "qid": qid, "n": size + ann._BATCH}))
                claimed = _claim_pairs(session, actor, ids, rid, open_only, size, params, now, minutes, lock)
                if claimed:
                    session.execute(_SQL_SET_LIST, {"lid": claimed[0], "ids": claimed})
                    return claimed[0]
    return None


def _claim_pairs(session: Session, actor: User, candidates: list[int], round_id: int | None, open_only: bool,
                 size: int, params: dict[str, Any], now: datetime, minutes: int, lock: bool) -> list[int]:
    """Lease the first ``size`` free candidates, in order; the rules of ``annotation._try_claim``. Lease ids."""
    take = _free_pairs(session, candidates, round_id is not None, open_only, size, params, lock)
    return _lease(session, actor, [(p, round_id) for p in take], now, minutes)


def _free_pairs(session: Session, candidates: list[int], in_round: bool, open_only: bool, size: int,
                params: dict[str, Any], lock: bool) -> list[int]:
    """The first ``size`` candidates the actor may be leased now, in order; stale queue hints are closed."""
    if not candidates or size <= 0:
        return []
    free = set(session.scalars(_SQL_LOCK_PAIRS, {"ids": candidates})) if lock else set(candidates)
    rows = {r.id: r for r in session.execute(_SQL_CHECK_PAIRS, {**params, "ids": [c for c in candidates if c in free]})}
    take: list[int] = []
    close: list[int] = []
    for pair_id in candidates:
        r = rows.get(pair_id)
        if r is None or (open_only and not r.queue_open) or len(take) == size:
            continue  # locked by a claimer now, closed meanwhile, or enough
        eligible = in_round or not (r.graded or (r.split or "").startswith("test"))
        if r.taken >= r.needed or not eligible:
            close.append(pair_id)  # correct a stale hint
            continue
        take.append(pair_id)
        if r.taken + 1 >= r.needed:
            close.append(pair_id)
    if close:
        session.execute(_SQL_CLOSE_HINTS, {"ids": close})
    return take


def _lease(session: Session, actor: User, pairs: list[tuple[int, int | None]], now: datetime,
           minutes: int) -> list[int]:
    """Lease (pair, round) in the given order, one statement; the lease ids in that order."""
    if not pairs:
        return []
    exp = now + timedelta(minutes=minutes)
    made = session.execute(insert(Lease).values([
        {"pair_id": p, "user_id": actor.id, "round_id": rid, "status": LeaseStatus.active, "expires_at": exp,
         "created_at": now} for p, rid in pairs]).returning(Lease.id, Lease.pair_id)).all()
    lease_of = {int(pair_id): int(lease_id) for lease_id, pair_id in made}
    return [lease_of[p] for p, _ in pairs]


def _claim_gold_list(session: Session, actor: User, project: Project, round_id: int | None, size: int,
                     params: dict[str, Any], now: datetime, minutes: int, has_work: Any) -> int | None:
    """A gold list when the draw says so (``gold.gold_list_due``): the query's gold pairs, leased under the open
    round as gold cards are, mixed in pair order with that query's ordinary open pool pairs up to ``size``.
    Returns the list id, or None (an ordinary list is due; nothing was written)."""
    due = gold.gold_list_due(session, actor, project, size, has_work)
    if due is None:
        return None
    lock = not is_sqlite(session)
    try:
        with session.begin_nested():  # a second tab of the same annotator may lease one of them this instant
            if lock and session.execute(_SQL_LOCK_QUERY, {"qid": due.query_id}).first() is None:
                return None  # another annotator is leasing this query's pairs right now
            room = size - len(due.pair_ids)
            pool = session.scalars(_SQL_POOL_PAIRS, {**params, "pid": project.id, "qid": due.query_id,
                                                     "n": room + len(due.pair_ids) + ann._BATCH}) if room > 0 else []
            fill = _free_pairs(session, [p for p in pool if p not in due.pair_ids], False, True, room, params, lock)
            pairs = sorted([(p, round_id) for p in due.pair_ids] + [(p, None) for p in fill])
            leases = _lease(session, actor, pairs, now, minutes)
            session.execute(_SQL_SET_LIST, {"lid": leases[0], "ids": leases})
    except IntegrityError:
        return None
    return leases[0]


def _shown(session: Session, project: Project, list_id: int, progress: cards.Progress) -> QueryList | None:
    rows = session.execute(_SQL_ITEMS, {"lid": list_id}).all()
    if not rows:
        return None
    grades, show = list(project.grades), bool(project_settings(project).get("show_reasons"))
    reasons = {int(r.pair_id): (r.reasons, r.probs) for r in rows if show and r.round_item is not None}
    if show:  # a gold pair shows the reasons of the latest round that picked it, as a gold card does (cards.py)
        outside = [int(r.pair_id) for r in rows if r.round_item is None]
        for pair_id in (session.scalars(select(GoldPair.pair_id).where(GoldPair.pair_id.in_(outside))) if outside
                        else []):
            ri = cards.gold_reasons(session, pair_id)
            if ri is not None:
                reasons[int(pair_id)] = (ri.reasons, ri.probs)
    items = tuple(ListItem(lease_id=int(r.id), pair_id=int(r.pair_id), title=r.title, text=r.body,
                           why=(" ".join(explain(reasons[int(r.pair_id)][0] or {}, grades,
                                                 probs=reasons[int(r.pair_id)][1])) or None)
                           if int(r.pair_id) in reasons else None) for r in rows)
    return QueryList(list_id=list_id, query=rows[0].query, items=items, expires_at=rows[0].expires_at,
                     progress=progress)


def next_list(session: Session, actor: User, project_id: int, *, size: int | None = None,
              now: datetime | None = None) -> QueryList | None:
    """The actor's open list in the project (its expiry refreshed), else a newly leased one of up to ``size``
    pairs (default: the project's ``list_size``); None when nothing is left for the actor."""
    require_role(actor, Role.annotator)
    project = ann._project(session, project_id)
    if project_settings(project)["annotation_mode"] == "card":
        raise ConfigError("This project grades one card at a time: an engineer can set `annotation_mode` to "
                          "'list' or 'both' in the annotation settings.")
    return _next_list(session, actor, project, size, now or utcnow())


def _next_list(session: Session, actor: User, project: Project, size: int | None, now: datetime) -> QueryList | None:
    project_id = project.id
    overlap, share, minutes = ann._annotation_settings(project)
    size = _list_size(project, size)
    state = ann._state(session, actor, project_id, overlap, share, now)
    exp = now + timedelta(minutes=minutes)
    list_id = session.scalar(_SQL_OPEN_LIST, {"uid": actor.id, "pid": project_id})
    if list_id is not None:
        session.execute(_SQL_EXTEND_LIST, {"exp": exp, "lid": list_id})  # still on it
    else:
        if state.stale is not None:
            ann.expire_leases(session, now)
        if project_settings(project).get("queue_basis") != [overlap, share, int(state.max_pair or 0)]:
            ann._sync_locked(session, project, overlap, share)
        params = ann._params(actor, overlap, share)
        list_id = _claim_gold_list(session, actor, project, state.round_id, size, params, now, minutes,
                                   has_work=lambda: ann._has_work(session, actor, project_id, state.round_id, overlap,
                                                                  share))  # gold only beside ordinary work
        if list_id is None:
            list_id = _claim_list(session, actor, project_id, state.round_id, size, params, now, minutes)
    if list_id is None:
        return None
    return _shown(session, project, int(list_id), ann._progress(state))


def _list_leases(session: Session, actor: User, list_id: int) -> list[Any]:
    """The list's leases, locked (PostgreSQL; SQLite transactions are immediate); refused unless the actor's."""
    sql = _SQL_LIST_LEASES if is_sqlite(session) else _SQL_LIST_LEASES + " FOR UPDATE OF l"
    rows = list(session.execute(text(sql), {"lid": list_id}))
    if not rows:
        raise NotFoundError(f"No query list {list_id}; reload the page to get a fresh list.")
    if any(r.user_id != actor.id for r in rows):
        raise StaleCardError(f"List {list_id} is leased to another annotator; nothing was saved. "
                             "Grade the list now on your screen.")
    return rows


def _grade_of(lease_id: int, grade: Any, scale: list[str]) -> int | None:
    if grade is None:
        return None
    if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade < len(scale):
        raise ConfigError(f"Lease {lease_id}: a decision is a grade 0..{len(scale) - 1} ({', '.join(scale)}) or "
                          f"None to skip, got {grade!r}. Nothing was saved.")
    return grade


def submit_list(session: Session, actor: User, list_id: int, decisions: Mapping[int, int | None], *,
                seconds: float | None = None, now: datetime | None = None) -> QueryList | None:
    """Save a decision for every open item of the list (lease id -> grade, or None to skip) in one go, then
    return the actor's next list. ``seconds`` (time on the list) is shared evenly among its items. Checks all
    decisions first: a missing, unknown or bad one, or a list that is closed, expired or someone else's,
    raises and writes nothing. None when nothing is left (or the project went back to card mode meanwhile)."""
    require_role(actor, Role.annotator)
    now = now or utcnow()
    rows = _list_leases(session, actor, list_id)
    by_id = {int(r.id): r for r in rows}
    status = {r.status for r in rows}
    if "expired" in status:
        raise StaleCardError(f"List {list_id} expired and its pairs went back to the queue; nothing was saved. "
                             "Grade the list now on your screen.")
    open_ids = [lid for lid, r in by_id.items() if r.status == "active"]
    if not open_ids:
        raise StaleCardError(f"List {list_id} was already submitted or released; nothing was saved. "
                             "Grade the list now on your screen.")
    if not isinstance(decisions, Mapping):
        raise ConfigError("`decisions` maps each lease id of the list to a grade or None (skip).")
    unknown = sorted(k for k in decisions if k not in by_id)
    if unknown:
        raise ConfigError(f"Lease(s) {unknown} are not part of list {list_id}; nothing was saved.")
    closed = sorted(k for k in decisions if by_id[k].status != "active")
    if closed:
        raise StaleCardError(f"Lease(s) {closed} of list {list_id} are already closed; nothing was saved.")
    missing = sorted(set(open_ids) - set(decisions))
    if missing:
        raise ConfigError(f"Every item of list {list_id} needs a grade or a skip; lease(s) {missing} have none. "
                          "Nothing was saved.")
    project = ann._project(session, rows[0].project_id)
    scale = list(project.grades)
    grades = {lid: _grade_of(lid, decisions[lid], scale) for lid in open_ids}
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0):
        raise ConfigError(f"`seconds` is the time spent on the list, 0 or more; got {seconds!r}.")
    per_item = None if seconds is None else float(seconds) / len(open_ids)
    graded = [lid for lid in open_ids if grades[lid] is not None]
    skipped = [lid for lid in open_ids if grades[lid] is None]
    for ids, new in ((graded, "done"), (skipped, "skipped")):
        if ids and session.execute(_SQL_CLOSE, {"status": new, "ids": ids}).rowcount != len(ids):
            raise StaleCardError(f"List {list_id} changed while it was saved; nothing was saved.")
    if graded:
        session.execute(ann._SQL_INSERT_LABEL, [
            {"pair_id": by_id[lid].pair_id, "uid": actor.id, "grade": grades[lid], "seconds": per_item,
             "flagged": False, "comment": None, "rid": by_id[lid].round_id, "now": now} for lid in graded])
    if skipped:  # the slot goes back to the queue for someone else
        session.execute(_SQL_REOPEN, {"ids": [by_id[lid].pair_id for lid in skipped]})
    if project_settings(project)["annotation_mode"] == "card":  # switched meanwhile: the grades still count
        return None
    return _next_list(session, actor, project, None, now)


def release_list(session: Session, actor: User, list_id: int) -> None:
    """Give the list's open pairs back to the queue (e.g. the annotator switches to cards); nothing is graded.
    The annotator is not offered those pairs again. A list already closed is left as it is."""
    require_role(actor, Role.annotator)
    rows = _list_leases(session, actor, list_id)
    open_rows = [r for r in rows if r.status == "active"]
    if open_rows:
        session.execute(_SQL_CLOSE, {"status": "expired", "ids": [int(r.id) for r in open_rows]})
        session.execute(_SQL_REOPEN, {"ids": [int(r.pair_id) for r in open_rows]})


def annotation_mode_for(session: Session, actor: User, project_id: int) -> Mode:
    """The grading screen the actor gets in the project: the project's mode, or in a project whose mode is
    ``both`` the actor's choice (cards until they choose)."""
    require_role(actor, Role.annotator)
    mode = project_settings(ann._project(session, project_id))["annotation_mode"]
    if mode != "both":
        return "list" if mode == "list" else "card"
    chosen = session.scalar(select(AnnotationPref.mode).where(AnnotationPref.user_id == actor.id,
                                                              AnnotationPref.project_id == project_id))
    return "list" if chosen == "list" else "card"


def set_list_preference(session: Session, actor: User, project_id: int, mode: Mode) -> Mode:
    """Record the actor's choice of card or list mode in a project whose annotation mode is ``both``."""
    require_role(actor, Role.annotator)
    if mode not in ("card", "list"):
        raise ConfigError(f"The grading screen is 'card' or 'list', got {mode!r}.")
    project_mode = project_settings(ann._project(session, project_id))["annotation_mode"]
    if project_mode != "both":
        raise ConfigError(f"This project uses {project_mode} mode for everyone; an engineer can set "
                          "`annotation_mode` to 'both' to let each annotator choose.")
    pref = session.scalar(select(AnnotationPref).where(AnnotationPref.user_id == actor.id,
                                                       AnnotationPref.project_id == project_id))
    if pref is None:
        session.add(AnnotationPref(user_id=actor.id, project_id=project_id, mode=mode, updated_at=utcnow()))
    else:
        pref.mode, pref.updated_at = mode, utcnow()
    session.flush()
    return mode
