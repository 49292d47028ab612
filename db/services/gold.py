"""Gold pairs: adjudicated pairs served back to annotators as control tasks, and what their answers say.

Rules the service keeps:
- only a pair with an adjudication can be gold, and only a reviewer (or a role above) marks or unmarks it;
- a share ``gold_share`` of each annotator's new cards (project setting, default 0.05, 0..0.5) is a gold
  pair, drawn per card from a hash of (annotator, how many cards they were leased in the project), so
  the pattern is fixed per person but not guessable by counting; a gold card is served only while the
  ordinary queue has work for them, so nobody grades gold alone once the queue is empty;
- in list mode (``db.services.lists``) a list is one query, so gold comes as a list: the least-served query
  with gold pairs open to the annotator, its gold pairs mixed (in pair order) with that query's ordinary open
  pairs, drawn per list with chance ``gold_share * m / g`` (``g`` its gold pairs, ``m`` the annotator's mean
  list length) so that gold is about the same share of the pairs graded as on cards; with reasons shown, a
  gold item shows those of the round that last picked it, as a gold card does;
- a gold card is an ordinary lease and shows what an ordinary card shows: the annotator is not told.
  Served while a round is open, it is leased under that round, so the answer counts in "yours in this
  round" like the card it stands in for; when the project shows reasons it shows those of the round
  that last picked the pair (a gold pair no round ever picked has none: the one visible difference,
  while round cards around it have reasons);
- a gold pair is never served to anyone who adjudicated it, nor to anyone who already voted on it or
  was leased it (``uq_leases_pair_user``: nobody gets the same gold pair twice);
- a gold answer is a normal ``label`` event (undo, flags and comments work as on any card), so nothing
  is lost; the pair's latest adjudication stays its final grade (``darl_core.labels``: an adjudication
  outranks every vote, however late);
- the labels on a gold pair after ``after_event_id`` (the project's last label event when it was
  marked) are gold answers, scored against the pair's latest adjudication.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from darl_core import agreement
from darl_core.errors import ConfigError, NotFoundError
from db.models import (
    GoldPair,
    Item,
    LabelCheck,
    LabelCheckItem,
    LabelEvent,
    LabelKind,
    Lease,
    LeaseStatus,
    Pair,
    Project,
    Query,
    Role,
    User,
)
from db.services.labels import last_event_id
from db.services.projects import project_settings
from db.services.users import require_role

MAX_SHARE = 0.5


def gold_share(project: Project) -> float:
    """The project's ``gold_share``, checked (0..0.5)."""
    return check_share(project_settings(project).get("gold_share", 0.05))


def check_share(raw: object) -> float:
    """``raw`` as a gold share, or a ConfigError that quotes it and says the range."""
    share = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else math.nan
    if not 0 <= share <= MAX_SHARE:
        raise ConfigError(f"`gold_share` must be a share of the queue from 0 to {MAX_SHARE} (e.g. 0.05 for 5%), "
                          f"got {raw!r}. Fix it on the Review page (Settings).")
    return share


def _adjudicated(session: Session, pair_ids: Sequence[int]) -> dict[int, int]:
    """Pair id -> its latest adjudicated grade, for the pairs that have one."""
    latest = (select(LabelEvent.pair_id, func.max(LabelEvent.id).label("id"))
              .where(LabelEvent.kind == LabelKind.adjudication, LabelEvent.pair_id.in_(pair_ids))
              .group_by(LabelEvent.pair_id).subquery())
    rows = session.execute(select(LabelEvent.pair_id, LabelEvent.grade).join(latest, latest.c.id == LabelEvent.id))
    return {int(p): int(g) for p, g in rows}


def mark_gold(session: Session, actor: User, project_id: int, pair_ids: Sequence[int], gold: bool = True) -> int:
    """Mark adjudicated pairs as gold (``gold=False``: unmark them); reviewer role. Returns how many changed.
    A pair that is not in the project or has no adjudication is refused, naming it, and nothing changes."""
    require_role(actor, Role.reviewer)
    ids = sorted({int(p) for p in pair_ids})
    known = set(session.scalars(select(Pair.id).where(Pair.project_id == project_id, Pair.id.in_(ids))))
    missing = [p for p in ids if p not in known]
    if missing:
        raise NotFoundError(f"No pair {missing[0]} in this project; nothing was marked.")
    current = set(session.scalars(select(GoldPair.pair_id).where(GoldPair.pair_id.in_(ids))))
    if not gold:
        session.execute(delete(GoldPair).where(GoldPair.pair_id.in_(ids)))
        return len(current)
    adjudicated = _adjudicated(session, ids)
    bare = [p for p in ids if p not in adjudicated]
    if bare:
        raise ConfigError(f"Pair {bare[0]} has no adjudication: only a pair a reviewer adjudicated can be gold. "
                          "Decide its grade first (Review), then mark it; nothing was marked.")
    after = last_event_id(session, project_id)
    session.add_all(GoldPair(project_id=project_id, pair_id=p, after_event_id=after, created_by=actor.id)
                    for p in ids if p not in current)
    session.flush()
    return len([p for p in ids if p not in current])


def gold_pair_ids(session: Session, project_id: int) -> set[int]:
    """The project's gold pairs."""
    return set(session.scalars(select(GoldPair.pair_id).where(GoldPair.project_id == project_id)))


@dataclass(frozen=True)
class GoldView:
    """The Review page's Gold view: the latest adjudicated pairs, which of them are gold, and the share served."""
    rows: pd.DataFrame  # pair, query, item, grade, adjudicated_by, adjudicated_at, gold
    gold_pairs: int
    adjudicated: int
    share: float
    changed: int = 0


def gold_view(session: Session, actor: User, project_id: int, add: Sequence[int] = (), remove: Sequence[int] = (),
              limit: int = 200) -> GoldView:
    """Mark ``add`` and unmark ``remove`` (reviewer role; see ``mark_gold``), then list the ``limit`` latest
    adjudicated pairs with their final grade and whether each is gold."""
    require_role(actor, Role.reviewer)
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    changed = (mark_gold(session, actor, project_id, add) if add else 0) + \
        (mark_gold(session, actor, project_id, remove, gold=False) if remove else 0)
    latest = (select(LabelEvent.pair_id, func.max(LabelEvent.id).label("id")).join(Pair, Pair.id == LabelEvent.pair_id)
              .where(Pair.project_id == project_id, LabelEvent.kind == LabelKind.adjudication)
              .group_by(LabelEvent.pair_id).subquery())
    total = int(session.scalar(select(func.count()).select_from(latest)) or 0)
    gold = gold_pair_ids(session, project_id)
    grades = list(project.grades)
    rows = session.execute(
        select(Pair.id, Query.text, Item.title, LabelEvent.grade, User.name, LabelEvent.created_at)
        .join(latest, latest.c.pair_id == Pair.id).join(LabelEvent, LabelEvent.id == latest.c.id)
        .join(Query, Query.id == Pair.query_id).join(Item, Item.id == Pair.item_id)
        .join(User, User.id == LabelEvent.user_id, isouter=True).order_by(latest.c.id.desc()).limit(limit))
    frame = pd.DataFrame([{"pair": pid, "query": q, "item": t, "grade": grades[g], "adjudicated_by": who or "",
                           "adjudicated_at": at, "gold": pid in gold} for pid, q, t, g, who, at in rows],
                         columns=["pair", "query", "item", "grade", "adjudicated_by", "adjudicated_at", "gold"])
    return GoldView(rows=frame, gold_pairs=len(gold), adjudicated=total, share=gold_share(project), changed=changed)


def _draw(user_id: int, n: int) -> float:
    """A fixed, evenly spread number in [0, 1) for the annotator's ``n``-th card."""
    digest = hashlib.sha256(f"gold:{user_id}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def _open_to(actor: User) -> tuple[Any, ...]:
    """Where-clauses: the gold pair is one the actor never leased, voted on or adjudicated."""
    seen = aliased(LabelEvent)
    return (~exists().where(Lease.pair_id == GoldPair.pair_id, Lease.user_id == actor.id),
            ~exists().where(seen.pair_id == GoldPair.pair_id, seen.user_id == actor.id))


def _served() -> Any:
    """How often the gold pair was leased to anyone: least-served first spreads gold over the pairs."""
    return select(func.count(Lease.id)).where(Lease.pair_id == GoldPair.pair_id).scalar_subquery()


def _next_draw(session: Session, actor: User, project: Project) -> float | None:
    """The draw for the actor's next card or list (None: the project serves no gold)."""
    share = gold_share(project)
    if share <= 0 or session.scalar(select(GoldPair.id).where(GoldPair.project_id == project.id).limit(1)) is None:
        return None
    leased = int(session.scalar(select(func.count(Lease.id)).join(Pair, Pair.id == Lease.pair_id)
                                .where(Lease.user_id == actor.id, Pair.project_id == project.id)) or 0)
    return _draw(actor.id, leased)


def claim_gold(session: Session, actor: User, project: Project, now: datetime, minutes: int,
               has_work: Callable[[], bool], round_id: int | None = None) -> int | None:
    """If the draw for the actor's next card says gold, and ``has_work()`` (the ordinary queue has a card for
    them), lease them a gold pair they may see (annotator role), under ``round_id`` (the open round they work
    on, so the answer counts as theirs in it like the card it stands in for). Returns the lease id, or None:
    an ordinary card is due (or no gold pair is left for them)."""
    require_role(actor, Role.annotator)
    draw = _next_draw(session, actor, project)
    if draw is None or draw >= gold_share(project) or not has_work():
        return None
    candidates = session.scalars(
        select(GoldPair.pair_id).where(GoldPair.project_id == project.id, *_open_to(actor))
        .order_by(_served(), GoldPair.id).limit(8)).all()
    for pair_id in candidates:
        try:
            with session.begin_nested():  # a second tab of the same annotator may take it this instant
                lease = Lease(pair_id=pair_id, user_id=actor.id, round_id=round_id, status=LeaseStatus.active,
                              expires_at=now + timedelta(minutes=minutes), created_at=now)
                session.add(lease)
        except IntegrityError:
            continue
        return int(lease.id)
    return None


@dataclass(frozen=True)
class GoldList:
    """The gold part of the actor's next query list: one query and its gold pairs the actor may see."""
    query_id: int
    pair_ids: tuple[int, ...]


def gold_list_due(session: Session, actor: User, project: Project, size: int,
                  has_work: Callable[[], bool]) -> GoldList | None:
    """Whether the actor's next query list is a gold list, and which (annotator role; ``lists.next_list``).

    The least-served query with gold pairs open to the actor is drawn with chance ``gold_share * m / g``
    (at most 1), ``g`` its gold pairs (up to ``size``) and ``m`` the actor's mean list length so far
    (``size`` before their first list), so that gold is about ``gold_share`` of the pairs an annotator grades
    in list mode as on cards; the list is then filled with that query's ordinary open pairs.
    None: an ordinary list is due, no gold pair is left for the actor, or the ordinary queue has no work
    (``has_work``), since nobody grades gold alone."""
    require_role(actor, Role.annotator)
    draw = _next_draw(session, actor, project)
    if draw is None:
        return None
    first = session.scalar(
        select(Pair.query_id).join(GoldPair, GoldPair.pair_id == Pair.id)
        .where(GoldPair.project_id == project.id, *_open_to(actor)).order_by(_served(), GoldPair.id).limit(1))
    if first is None:
        return None
    ids = tuple(int(p) for p in session.scalars(
        select(GoldPair.pair_id).join(Pair, Pair.id == GoldPair.pair_id)
        .where(GoldPair.project_id == project.id, Pair.query_id == first, *_open_to(actor))
        .order_by(GoldPair.pair_id).limit(size)))
    lists, leased = session.execute(
        select(func.count(func.distinct(Lease.list_id)), func.count(Lease.id)).join(Pair, Pair.id == Lease.pair_id)
        .where(Lease.user_id == actor.id, Pair.project_id == project.id, Lease.list_id.is_not(None))).one()
    per_list = leased / lists if lists else size  # lists are often shorter than `size`: a query has few pairs
    if draw >= min(1.0, gold_share(project) * per_list / len(ids)) or not has_work():
        return None
    return GoldList(query_id=int(first), pair_ids=ids)


@dataclass
class QualityReport:
    """Each annotator against gold and against the latest label check, overall and per week (Monday)."""
    gold_pairs: int
    share: float
    check_id: int | None
    # annotator, gold_answers, gold_correct, gold_accuracy, gold_kappa, checked_votes, suspected_votes, suspected_share
    annotators: pd.DataFrame
    # annotator, week, gold_answers, gold_accuracy, checked_votes, suspected_share
    weekly: pd.DataFrame


ANNOTATOR_COLUMNS = ["annotator", "gold_answers", "gold_correct", "gold_accuracy", "gold_kappa", "checked_votes",
                     "suspected_votes", "suspected_share"]
WEEKLY_COLUMNS = ["annotator", "week", "gold_answers", "gold_accuracy", "checked_votes", "suspected_share"]


def _standing_labels() -> tuple[Any, ...]:
    later = aliased(LabelEvent)
    return (LabelEvent.kind == LabelKind.label, ~exists().where(later.supersedes_id == LabelEvent.id))


def _week(at: datetime) -> datetime:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def gold_answers(session: Session, project_id: int) -> list[tuple[str, int, int, datetime]]:
    """Every standing gold answer: (annotator, their grade, the adjudicated grade, when), in event order."""
    gold = {int(p): int(after) for p, after in session.execute(
        select(GoldPair.pair_id, GoldPair.after_event_id).where(GoldPair.project_id == project_id))}
    if not gold:
        return []
    reference = _adjudicated(session, list(gold))
    rows = session.execute(select(LabelEvent.id, LabelEvent.pair_id, LabelEvent.grade, LabelEvent.created_at, User.name)
                           .join(User, User.id == LabelEvent.user_id)
                           .where(LabelEvent.pair_id.in_(list(gold)), *_standing_labels()).order_by(LabelEvent.id))
    return [(name, int(grade), reference[pid], at) for eid, pid, grade, at, name in rows
            if eid > gold[pid] and pid in reference]


def _suspected_votes(session: Session, check: LabelCheck) -> list[tuple[str, bool, datetime]]:
    """(annotator, suspected, when) for each standing vote the check saw: suspected when the check suspects
    the pair's label and the vote gave that grade."""
    rows = session.execute(
        select(User.name, LabelEvent.grade, LabelEvent.created_at, LabelCheckItem.suspect, LabelCheckItem.label)
        .join(User, User.id == LabelEvent.user_id)
        .join(LabelCheckItem, LabelCheckItem.pair_id == LabelEvent.pair_id)
        .where(LabelCheckItem.check_id == check.id, LabelEvent.id <= check.last_event_id, *_standing_labels()))
    return [(name, bool(suspect) and int(grade) == int(label), at) for name, grade, at, suspect, label in rows]


def quality_report(session: Session, project: Project) -> QualityReport:
    """Per annotator: accuracy and quadratic-weighted kappa against gold (with counts), and the share of their
    votes that the latest label check suspects; overall and per week."""
    k = len(project.grades)
    answers = gold_answers(session, project.id)
    check = session.scalar(select(LabelCheck).where(LabelCheck.project_id == project.id)
                           .order_by(LabelCheck.id.desc()).limit(1))
    votes = _suspected_votes(session, check) if check is not None else []
    by_person: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {"gold": [], "votes": []})
    for name, grade, ref, at in answers:
        by_person[name]["gold"].append((grade, ref, at))
    for name, suspected, at in votes:
        by_person[name]["votes"].append((suspected, at))
    people, weeks = [], []
    for name, d in sorted(by_person.items()):
        people.append({"annotator": name, **_scores(d["gold"], d["votes"], k, kappa=True)})
        stamps = sorted({_week(at) for *_, at in d["gold"]} | {_week(at) for _, at in d["votes"]})
        for week in stamps:
            row = _scores([g for g in d["gold"] if _week(g[2]) == week],
                          [v for v in d["votes"] if _week(v[1]) == week], k, kappa=False)
            weeks.append({"annotator": name, "week": week, **{c: row[c] for c in WEEKLY_COLUMNS[2:]}})
    return QualityReport(gold_pairs=len(gold_pair_ids(session, project.id)), share=gold_share(project),
                         check_id=None if check is None else check.id,
                         annotators=pd.DataFrame(people, columns=ANNOTATOR_COLUMNS),
                         weekly=pd.DataFrame(weeks, columns=WEEKLY_COLUMNS))


def _scores(gold: list[tuple[int, int, datetime]], votes: list[tuple[bool, datetime]], k: int,
            kappa: bool) -> dict[str, Any]:
    correct = sum(g == r for g, r, _ in gold)
    suspected = sum(s for s, _ in votes)
    return {"gold_answers": len(gold), "gold_correct": correct,
            "gold_accuracy": correct / len(gold) if gold else math.nan,
            "gold_kappa": agreement.qwk([g for g, _, _ in gold], [r for _, r, _ in gold], k) if kappa else math.nan,
            "checked_votes": len(votes), "suspected_votes": suspected,
            "suspected_share": suspected / len(votes) if votes else math.nan}
