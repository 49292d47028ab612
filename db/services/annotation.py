"""Annotation: claiming cards under leases, grading, skipping, undo and flags, progress.

Rules (the README's "Annotation" section):
- queue order: the newest open round's pairs in rank order, then open pairs by priority (desc) and id;
  pairs in test splits or with an imported grade are offered only when they are in a round;
- a pair needs ``overlap`` distinct annotators; with overlap 1, a deterministic ``agreement_share`` of
  pairs needs a second one (for the agreement dashboard);
- a claim is a lease (default 10 minutes); active and done leases count towards the pair's need, an
  expired or skipped one gives the slot back; nobody is ever leased the same pair twice (unique
  constraint on pair + user);
- labels are append-only events; undo appends an ``undo`` event superseding the label and re-opens the
  annotator's lease, so the card comes back;
- a label on a lease that expired meanwhile is still saved (nothing typed is lost): the pair may get
  one vote more than it needed.

Concurrency: on SQLite every transaction is BEGIN IMMEDIATE, so claims serialise. On PostgreSQL the
candidate pair row is locked with ``FOR UPDATE SKIP LOCKED`` first, and its leases are counted by the
next statement: under READ COMMITTED that statement's snapshot includes every claim committed before the
lock was granted (a count read in the locking statement itself could predate one, and double-assign the
pair). So two annotators never both take the last slot; the other one moves on without waiting.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    DateTime,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from darl_core.errors import ConfigError, ConflictError, NotFoundError, PermissionDeniedError, StaleCardError
from db.models import (
    LabelEvent,
    LabelKind,
    Lease,
    LeaseStatus,
    Pair,
    Project,
    Role,
    User,
    utcnow,
)
from db.services import cards
from db.services.cards import Progress, Step
from db.services.limits import check_comment
from db.services.projects import project_settings, update_settings
from db.services.users import require_role
from db.session import is_sqlite

_BATCH = 16  # candidates fetched per claim query; locked/full ones are skipped in order
_TAKEN = (LeaseStatus.active, LeaseStatus.done)
_SAMPLE_MOD = 10_000
MODES = ("card", "list", "both")  # project setting ``annotation_mode``: the grading screens annotators get
MAX_LIST_SIZE = 50


# --- who needs how many votes -------------------------------------------------------------------

def needed_votes(pair_id: int, overlap: int, agreement_share: float) -> int:
    """Distinct annotators a pair needs. With overlap 1 a fixed share of pairs (by id) needs two."""
    extra = overlap == 1 and ((pair_id % _SAMPLE_MOD) * 7919) % _SAMPLE_MOD < round(agreement_share * _SAMPLE_MOD)
    return overlap + int(extra)


def _needed_sql(pair_id_col: Any, overlap: int, share: float) -> Any:
    # Same formula as needed_votes, kept in int4 range for PostgreSQL integer ids.
    if overlap != 1 or share <= 0:
        return literal(overlap)
    sampled = ((pair_id_col % _SAMPLE_MOD) * 7919) % _SAMPLE_MOD < round(share * _SAMPLE_MOD)
    return literal(1) + case((sampled, 1), else_=0)


def _taken_sql(pair_id_col: Any, statuses: tuple[LeaseStatus, ...] = _TAKEN) -> Any:
    return (select(func.count(Lease.id)).where(Lease.pair_id == pair_id_col, Lease.status.in_(statuses))
            .scalar_subquery())


def _annotation_settings(project: Project) -> tuple[int, float, int]:
    s = project_settings(project)
    overlap, share, minutes = int(s["overlap"]), float(s["agreement_share"]), int(s["lease_minutes"])
    if overlap < 1 or not 0 <= share <= 1 or minutes < 1:
        raise ConfigError(f"Annotation settings out of range: overlap {overlap} (>= 1), agreement_share "
                          f"{share} (0..1), lease_minutes {minutes} (>= 1). Fix them on the Review page.")
    mode, size = s["annotation_mode"], s["list_size"]
    if mode not in MODES:
        raise ConfigError(f"Setting `annotation_mode` must be one of {', '.join(MODES)}, got {mode!r}.")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_LIST_SIZE:
        raise ConfigError(f"Setting `list_size` must be a whole number 1..{MAX_LIST_SIZE}, got {size!r}.")
    return overlap, share, minutes


def _project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    return project


# --- the open-pair hint ------------------------------------------------------------------------

def sync_queue(session: Session, project_id: int) -> None:
    """Recompute ``pairs.queue_open`` for a whole project (after settings changes or imports)."""
    project = _project(session, project_id)
    overlap, share, _ = _annotation_settings(project)
    graded = exists().where(LabelEvent.pair_id == Pair.id,
                            LabelEvent.kind.in_((LabelKind.imported, LabelKind.adjudication)))
    is_open = and_(or_(Pair.split.is_(None), ~Pair.split.like("test%")), ~graded,
                   _taken_sql(Pair.id) < _needed_sql(Pair.id, overlap, share))
    session.execute(update(Pair).where(Pair.project_id == project_id)
                    .values(queue_open=case((is_open, True), else_=False)))
    project.settings = {**project_settings(project), "queue_basis": _basis(session, overlap, share)}
    session.flush()


def _basis(session: Session, overlap: int, share: float) -> list[Any]:
    # New pairs (an import) or changed need change the basis; max(id) is an O(1) index lookup.
    return [overlap, share, int(session.scalar(_SQL_MAX_PAIR) or 0)]


def _sync_locked(session: Session, project: Project, overlap: int, share: float) -> None:
    # Lock the project row so that concurrent claims do not all recompute (no-op on SQLite).
    session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    session.refresh(project)
    if project_settings(project).get("queue_basis") != _basis(session, overlap, share):
        sync_queue(session, project.id)


def expire_leases(session: Session, now: datetime | None = None) -> int:
    """Mark active leases past their expiry as expired and re-open their pairs. Returns how many."""
    now = now or utcnow()
    active = Lease.status == LeaseStatus.active
    lists = list(session.scalars(select(Lease.list_id).where(active, Lease.expires_at < now,
                                                             Lease.list_id.is_not(None)).distinct()))
    # A query list's open leases go together, even if one was extended apart from the others.
    stale = and_(active, or_(Lease.expires_at < now, Lease.list_id.in_(lists)))
    pair_ids = list(session.scalars(select(Lease.pair_id).where(stale)))
    if not pair_ids:
        return 0
    session.execute(update(Pair).where(Pair.id.in_(pair_ids)).values(queue_open=True))
    result = session.execute(update(Lease).where(stale).values(status=LeaseStatus.expired))
    return int(result.rowcount or 0)


# --- claiming ------------------------------------------------------------------------------------
# The hot path (submit -> next card) is a dozen short statements, written as SQL text with bound
# parameters: building SQLAlchemy expressions per call cost more than running them.

_NEED = ("(:overlap + CASE WHEN :overlap = 1 AND ((({col} % 10000) * 7919) % 10000) < :share_bp "
         "THEN 1 ELSE 0 END)")
_TAKEN_SQL = "(SELECT count(*) FROM leases t WHERE t.pair_id = {col} AND t.status IN ('active', 'done'))"
_NOT_MINE = "NOT EXISTS (SELECT 1 FROM leases m WHERE m.pair_id = {col} AND m.user_id = :uid)"
_GRADED = ("EXISTS (SELECT 1 FROM label_events e WHERE e.pair_id = p.id "
           "AND e.kind IN ('imported', 'adjudication'))")

_SQL_EXTEND = text("UPDATE leases SET expires_at = :exp WHERE id = :id").bindparams(bindparam("exp", type_=DateTime))
_SQL_MAX_PAIR = text("SELECT max(id) FROM pairs")
_SQL_ROUND_CANDIDATES = text(
    f"SELECT ri.pair_id FROM round_items ri WHERE ri.round_id = :rid AND {_NOT_MINE.format(col='ri.pair_id')} "
    f"AND {_TAKEN_SQL.format(col='ri.pair_id')} < {_NEED.format(col='ri.pair_id')} ORDER BY ri.rank LIMIT :n")
_SQL_POOL_CANDIDATES = text(
    f"SELECT p.id FROM pairs p WHERE p.project_id = :pid AND p.queue_open = TRUE "
    f"AND {_NOT_MINE.format(col='p.id')} ORDER BY p.priority DESC, p.id LIMIT :n")
_CHECK = (f"SELECT p.id, {_TAKEN_SQL.format(col='p.id')}, {_NEED.format(col='p.id')}, {_GRADED}, p.split "
          "FROM pairs p WHERE p.id = :id")
_SQL_SET_OPEN = text("UPDATE pairs SET queue_open = :open WHERE id = :id")
_SQL_INSERT_LEASE = text(
    "INSERT INTO leases (pair_id, user_id, round_id, status, expires_at, created_at) "
    "VALUES (:pair_id, :uid, :rid, 'active', :exp, :now) RETURNING id").bindparams(
    bindparam("exp", type_=DateTime), bindparam("now", type_=DateTime))


_SQL_CHECK = text(_CHECK)
_SQL_CHECK_OPEN = text(_CHECK + " AND p.queue_open = TRUE")
# PostgreSQL: lock the candidate row (SKIP LOCKED: someone is claiming it now), then count in a new statement.
_SQL_LOCK = text("SELECT p.id FROM pairs p WHERE p.id = :id FOR UPDATE OF p SKIP LOCKED")
_SQL_LOCK_OPEN = text("SELECT p.id FROM pairs p WHERE p.id = :id AND p.queue_open = TRUE FOR UPDATE OF p SKIP LOCKED")


def _params(actor: User, overlap: int, share: float) -> dict[str, Any]:
    return {"uid": actor.id, "overlap": overlap, "share_bp": round(share * _SAMPLE_MOD) if overlap == 1 else 0}


def _try_claim(session: Session, actor: User, candidates: list[int], round_id: int | None, open_only: bool,
               params: dict[str, Any], now: datetime, minutes: int) -> tuple[int | None, int]:
    """Claim the first free candidate. Returns (lease id or None, how many were locked by others)."""
    check = _SQL_CHECK_OPEN if open_only else _SQL_CHECK
    lock = None if is_sqlite(session) else (_SQL_LOCK_OPEN if open_only else _SQL_LOCK)
    locked = 0
    for pair_id in candidates:
        if lock is not None and session.execute(lock, {"id": pair_id}).first() is None:
            locked += 1  # being claimed by someone else right now (or closed meanwhile)
            continue
        row = session.execute(check, {**params, "id": pair_id}).first()
        if row is None:
            locked += 1
            continue
        _, taken, needed, graded, split = row
        eligible = round_id is not None or not (graded or (split or "").startswith("test"))
        if taken >= needed or not eligible:
            session.execute(_SQL_SET_OPEN, {"open": False, "id": pair_id})  # correct a stale hint
            continue
        if taken + 1 >= needed:
            session.execute(_SQL_SET_OPEN, {"open": False, "id": pair_id})
        lease_id = session.execute(_SQL_INSERT_LEASE, {"pair_id": pair_id, "uid": actor.id, "rid": round_id,
                                                       "exp": now + timedelta(minutes=minutes), "now": now}).scalar_one()
        return int(lease_id), locked
    return None, locked


def _claim(session: Session, actor: User, project_id: int, round_id: int | None, overlap: int, share: float,
           now: datetime, minutes: int) -> int | None:
    params = _params(actor, overlap, share)
    if round_id is not None:
        ids = list(session.scalars(_SQL_ROUND_CANDIDATES, {**params, "rid": round_id, "n": _BATCH}))
        lease_id, _ = _try_claim(session, actor, ids, round_id, False, params, now, minutes)
        if lease_id is not None:
            return lease_id
    for _ in range(64):  # each pass closes the stale candidates it meets, so this ends quickly
        ids = list(session.scalars(_SQL_POOL_CANDIDATES, {**params, "pid": project_id, "n": _BATCH}))
        if not ids:
            return None
        lease_id, locked = _try_claim(session, actor, ids, None, True, params, now, minutes)
        if lease_id is not None:
            return lease_id
        if locked == len(ids) and len(ids) < _BATCH:
            return None  # only pairs that others are claiming this instant are left
    return None


_SQL_DONE_TODAY = text(
    "SELECT count(*) FROM label_events e JOIN pairs p ON p.id = e.pair_id WHERE e.user_id = :uid "
    "AND e.kind = 'label' AND e.created_at >= :since AND p.project_id = :pid "
    "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.supersedes_id = e.id)").bindparams(
    bindparam("since", type_=DateTime))


_NEWEST_ROUND = ("(SELECT id FROM selection_rounds WHERE project_id = :pid AND status = 'open' "
                 "ORDER BY id DESC LIMIT 1)")
# The card on the annotator's screen: their active lease in the project that expires last (an undo re-opens
# an older card with a fresh expiry, so it comes before the card that was showing when U was pressed). A
# lease that is part of a query list (db/services/lists.py) is never a card.
_CURRENT = ("(SELECT c.id FROM leases c JOIN pairs cp ON cp.id = c.pair_id WHERE c.user_id = {uid} "
            "AND c.status = 'active' AND c.list_id IS NULL AND cp.project_id = {pid} "
            "ORDER BY c.expires_at DESC, c.id DESC LIMIT 1)")
_STANDING = "NOT EXISTS (SELECT 1 FROM label_events u WHERE u.supersedes_id = e.id)"
# Everything next_card needs to know before claiming, in one round trip.
_SQL_STATE = text(
    f"SELECT {_CURRENT.format(uid=':uid', pid=':pid')} AS lease_id, "
    "(SELECT 1 FROM leases WHERE status = 'active' AND expires_at < :now LIMIT 1) AS stale, "
    "(SELECT max(id) FROM pairs) AS max_pair, "
    f"{_NEWEST_ROUND} AS round_id, "
    "(SELECT name FROM selection_rounds WHERE id = " + _NEWEST_ROUND + ") AS round_name, "
    f"({_SQL_DONE_TODAY.text}) AS done_today, "
    "(SELECT count(*) FROM round_items WHERE round_id = " + _NEWEST_ROUND + ") AS round_total, "
    "(SELECT count(*) FROM label_events e WHERE e.user_id = :uid AND e.kind = 'label' AND e.round_id = "
    + _NEWEST_ROUND + f" AND {_STANDING}) AS mine_in_round, "
    "(SELECT count(*) FROM round_items ri WHERE ri.round_id = " + _NEWEST_ROUND + " AND "
    "(SELECT count(*) FROM leases t WHERE t.pair_id = ri.pair_id AND t.status = 'done') < "
    + _NEED.format(col="ri.pair_id") + ") AS left_in_round").bindparams(
    bindparam("now", type_=DateTime), bindparam("since", type_=DateTime))


def _state(session: Session, actor: User, project_id: int, overlap: int, share: float, now: datetime) -> Any:
    since = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return session.execute(_SQL_STATE, {**_params(actor, overlap, share), "pid": project_id, "now": now,
                                        "since": since}).one()


def _progress(state: Any) -> Progress:
    has_round = state.round_id is not None
    return Progress(done_today=int(state.done_today or 0),
                    left_in_round=int(state.left_in_round or 0) if has_round else None,
                    round_name=(state.round_name or f"round {state.round_id}") if has_round else None,
                    round_total=int(state.round_total or 0) if has_round else None,
                    mine_in_round=int(state.mine_in_round or 0))


def progress(session: Session, actor: User, project_id: int, now: datetime | None = None) -> Progress:
    """Labels the actor gave today (UTC, minus undone ones), and the open round: its size, the pairs that
    still need votes, and the actor's own standing labels in it."""
    require_role(actor, Role.annotator)
    overlap, share, _ = _annotation_settings(_project(session, project_id))
    return _progress(_state(session, actor, project_id, overlap, share, now or utcnow()))


def next_card(session: Session, actor: User, project_id: int, now: datetime | None = None) -> Step:
    """The actor's current card (an active lease) or a newly claimed one, with progress and the previous card."""
    require_role(actor, Role.annotator)
    now = now or utcnow()
    project = _project(session, project_id)
    overlap, share, minutes = _annotation_settings(project)
    state = _state(session, actor, project_id, overlap, share, now)
    lease_id = state.lease_id
    if lease_id is not None:
        session.execute(_SQL_EXTEND, {"exp": now + timedelta(minutes=minutes), "id": lease_id})  # still on it
    else:
        if state.stale is not None:
            expire_leases(session, now)
        if project_settings(project).get("queue_basis") != [overlap, share, int(state.max_pair or 0)]:
            _sync_locked(session, project, overlap, share)
        lease_id = _claim(session, actor, project_id, state.round_id, overlap, share, now, minutes)
    shown = None if lease_id is None else cards.card(session, project, lease_id)
    return Step(card=shown, progress=_progress(state), previous=cards.previous(session, actor.id, project_id))


# --- acting on a card ----------------------------------------------------------------------------
# Every action names the lease of the card that was on screen when it was pressed. A press that arrives
# after the screen moved on (a second key while the next card loads) names a lease that is done, skipped
# or no longer the current one: it is refused with StaleCardError before anything is written, so it can
# never land on a card the annotator has not seen.

UNDO_DEPTH = 10  # U withdraws the actor's grades newest first, back to their 10th-latest card

_SQL_OWN_LEASE = text("SELECT l.user_id, l.status, l.round_id, l.pair_id, p.project_id, l.list_id, "
                      f"{_CURRENT.format(uid='l.user_id', pid='p.project_id')} AS current_id FROM leases l "
                      "JOIN pairs p ON p.id = l.pair_id WHERE l.id = :id")
_SQL_CURRENT = text(f"SELECT {_CURRENT.format(uid=':uid', pid=':pid')}")
_SQL_CLOSE_LEASE = text("UPDATE leases SET status = :status WHERE id = :id AND status IN ('active', 'expired')")
_SQL_INSERT_LABEL = text(
    "INSERT INTO label_events (pair_id, user_id, kind, grade, seconds_on_card, flagged, comment, round_id, "
    "created_at) VALUES (:pair_id, :uid, 'label', :grade, :seconds, :flagged, :comment, :rid, :now)").bindparams(
    bindparam("now", type_=DateTime))


def _shown_lease(session: Session, actor: User, lease_id: int) -> Any:
    """The (locked) lease of the card the action was pressed on; refused unless it is still that card."""
    sql = _SQL_OWN_LEASE if is_sqlite(session) else text(_SQL_OWN_LEASE.text + " FOR UPDATE OF l")
    lease = session.execute(sql, {"id": lease_id}).first()
    if lease is None:
        raise NotFoundError(f"No lease {lease_id}; reload the page to get a fresh card.")
    if lease.user_id != actor.id:
        raise PermissionDeniedError("This card is leased to another annotator.")
    if lease.status == LeaseStatus.done.value:
        raise StaleCardError("That card was already graded; the key press was not applied to any other card. "
                             "Grade the card now on screen.")
    if lease.status == LeaseStatus.skipped.value:
        raise StaleCardError("This card was skipped; it cannot be graded any more. Grade the card now on screen.")
    if lease.list_id is not None:
        raise StaleCardError("That pair is part of a query list; nothing was saved. Grade it on the list screen, "
                             "or release the list to go back to cards.")
    if lease.current_id is not None and lease.current_id != lease_id:
        raise StaleCardError("That card is no longer the one on your screen (another card was opened since); "
                             "nothing was saved. Grade the card now on screen.")
    return lease


def _close_lease(session: Session, lease_id: int, status: LeaseStatus) -> None:
    # Conditional update; the lease row is locked (or the transaction immediate), so this always matches.
    if not session.execute(_SQL_CLOSE_LEASE, {"status": status.value, "id": lease_id}).rowcount:
        raise StaleCardError("That card was already closed; nothing was saved. Grade the card now on screen.")


def submit_label(session: Session, actor: User, lease_id: int, grade: int, seconds_on_card: float | None = None,
                 *, flagged: bool = False, comment: str | None = None, now: datetime | None = None) -> Step:
    """Save the actor's grade for the card of ``lease_id`` (the one on screen) and return the next card."""
    require_role(actor, Role.annotator)
    comment = check_comment(comment)
    now = now or utcnow()
    lease = _shown_lease(session, actor, lease_id)
    project = _project(session, lease.project_id)
    scale = list(project.grades)
    if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade < len(scale):
        raise ConfigError(f"Grade must be 0..{len(scale) - 1} ({', '.join(scale)}), got {grade!r}.")
    _close_lease(session, lease_id, LeaseStatus.done)
    seconds = None if seconds_on_card is None else max(0.0, float(seconds_on_card))
    session.execute(_SQL_INSERT_LABEL, {"pair_id": lease.pair_id, "uid": actor.id, "grade": grade,
                                        "seconds": seconds, "flagged": bool(flagged),
                                        "comment": (comment or "").strip() or None, "rid": lease.round_id, "now": now})
    return next_card(session, actor, project.id, now)


def skip(session: Session, actor: User, lease_id: int, now: datetime | None = None) -> Step:
    """Give the card of ``lease_id`` back for someone else (the actor will not see it again); the next card."""
    require_role(actor, Role.annotator)
    now = now or utcnow()
    lease = _shown_lease(session, actor, lease_id)
    _close_lease(session, lease_id, LeaseStatus.skipped)
    session.execute(_SQL_SET_OPEN, {"open": True, "id": lease.pair_id})
    return next_card(session, actor, lease.project_id, now)


def undo_last(session: Session, actor: User, project_id: int, lease_id: int | None,
              now: datetime | None = None) -> Step:
    """Withdraw the actor's latest standing label in this project (an ``undo`` event) and show that card again.

    ``lease_id`` is the card on screen when U was pressed (None: the queue was empty); a press from a screen
    that has moved on is refused, so two quick presses never withdraw a grade the actor did not see come back.
    Repeated presses reach back to the actor's ``UNDO_DEPTH`` latest cards.
    """
    require_role(actor, Role.annotator)
    now = now or utcnow()
    project = _project(session, project_id)
    _, _, minutes = _annotation_settings(project)
    if lease_id is not None:
        _shown_lease(session, actor, lease_id)
    elif session.scalar(_SQL_CURRENT, {"uid": actor.id, "pid": project_id}) is not None:
        raise StaleCardError("Undo was pressed on a screen that has moved on to a card; nothing was undone. "
                             "Press U again to undo.")
    undone = aliased(LabelEvent)
    mine = (select(LabelEvent).join(Pair, Pair.id == LabelEvent.pair_id)
            .where(LabelEvent.user_id == actor.id, LabelEvent.kind == LabelKind.label, Pair.project_id == project_id))
    last = session.scalar(mine.where(~exists().where(undone.supersedes_id == LabelEvent.id))
                          .order_by(LabelEvent.id.desc()).limit(1))
    if last is None:
        raise ConflictError("Nothing to undo: you have no label in this project that is still standing.")
    recent = session.scalars(mine.with_only_columns(LabelEvent.pair_id).group_by(LabelEvent.pair_id)
                             .order_by(func.max(LabelEvent.id).desc()).limit(UNDO_DEPTH))
    if last.pair_id not in set(recent):
        raise ConflictError(f"Undo reaches back to your last {UNDO_DEPTH} cards; older grades stand. "
                            "A reviewer can change them on the Review page.")
    try:
        session.add(LabelEvent(pair_id=last.pair_id, user_id=actor.id, kind=LabelKind.undo, grade=None,
                               supersedes_id=last.id, round_id=last.round_id, created_at=now))
        session.flush()
    except IntegrityError as exc:  # uq_label_events_supersedes_id: a concurrent undo won
        raise ConflictError("That label was already undone.") from exc
    lease = session.scalar(select(Lease).where(Lease.pair_id == last.pair_id, Lease.user_id == actor.id))
    if lease is None:  # labels come with leases; be safe for hand-made data
        lease = Lease(pair_id=last.pair_id, user_id=actor.id, round_id=last.round_id, created_at=now)
        session.add(lease)
    lease.status = LeaseStatus.active
    lease.expires_at = now + timedelta(minutes=minutes)
    lease.list_id = None  # a grade given in a list comes back as a card
    session.flush()
    return Step(card=cards.card(session, project, lease.id), progress=progress(session, actor, project_id, now),
                message="Label withdrawn; grade the card again.", previous=cards.previous(session, actor.id, project_id))


def update_annotation_settings(session: Session, actor: User, project_id: int, **changes: Any) -> Project:
    """Change overlap, agreement_share, lease_minutes, show_reasons, annotation_mode (card, list, both) or
    list_size (engineer role); re-syncs the queue."""
    require_role(actor, Role.engineer)
    project = _project(session, project_id)
    allowed = {"overlap", "agreement_share", "lease_minutes", "show_reasons", "annotation_mode", "list_size"}
    if set(changes) - allowed:
        raise ConfigError(f"Not an annotation setting: {', '.join(sorted(set(changes) - allowed))}.")
    update_settings(session, project, actor=actor, **changes)
    _annotation_settings(project)  # validates the ranges before anything commits
    sync_queue(session, project_id)
    return project
