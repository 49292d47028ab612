"""Review: the queue of pairs whose votes disagree (or were flagged), adjudication, agreement report.

Reviewers (and the roles above) only. An adjudication is an append-only ``adjudication`` event; the
latest one is the pair's final grade whatever the votes say (``darl_core.labels``).

- A pair is *pending* until adjudicated when its standing votes (label or imported, not superseded)
  disagree or any of them is flagged; a withdrawn (undone) vote neither flags nor disagrees.
- ``suspected``: the open suspects of the project's latest label check (``db.services.label_check``),
  most suspect first, instead of the disagreements; a suspect leaves the list once adjudicated after
  that check (confirmed or corrected), and the other filters narrow it as they narrow the queue.
- The queue is filtered in SQL (flagged only, disagreements only, segment, round, annotator, a vote of a
  grade) and paged in pair order, so every pending pair is reachable, whatever comes before it; the
  counts (matching, pending, flagged, disagreements) come from the same statements as the page.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Integer, Select, case, cast, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from darl_core import agreement
from darl_core.errors import ConfigError, NotFoundError
from darl_core.labels import Event, effective
from db.models import (
    Item,
    LabelCheck,
    LabelCheckItem,
    LabelEvent,
    LabelKind,
    ModelVersion,
    Pair,
    PairScore,
    Project,
    Query,
    Role,
    RoundItem,
    User,
    utcnow,
)
from db.services import query_review
from db.services.labels import final_labels
from db.services.limits import check_comment
from db.services.projects import filter_choices
from db.services.users import require_role


@dataclass(frozen=True)
class Vote:
    annotator: str
    grade: int
    flagged: bool
    comment: str | None
    seconds_on_card: float | None
    at: datetime | None = None


@dataclass(frozen=True)
class Prediction:
    """The current model version's score for a pair (``project.current_version_id``)."""
    version: str
    grade: int | None
    expected: float | None  # expected grade index under the model's probabilities
    probs: list[float] | None


@dataclass(frozen=True)
class Suspicion:
    """Why the latest label check suspects a pair's label: the model's out-of-fold grade and confidence."""
    check_id: int
    rank: int
    label: int  # the grade the check saw
    model_grade: int
    model_prob: float
    label_prob: float
    reason: str


@dataclass(frozen=True)
class CheckInfo:
    """The latest label check, as the Review page names it."""
    id: int
    created_at: datetime
    version: str
    method: str
    pairs: int
    suspects: int


@dataclass(frozen=True)
class ReviewItem:
    pair_id: int
    query: str
    title: str
    text: str | None
    segment: str | None
    votes: list[Vote]
    majority: int  # the grade that stands now (majority, ties toward the lower grade)
    flagged: bool
    prediction: Prediction | None = None
    suspicion: Suspicion | None = None

    @property
    def disagree(self) -> bool:
        return len({v.grade for v in self.votes}) > 1


@dataclass(frozen=True)
class ReviewFilters:
    """Narrow the queue. ``annotator`` and ``grade`` keep pairs with a standing vote by / of them."""
    flagged_only: bool = False
    disagreements_only: bool = False
    segment: str | None = None
    round_id: int | None = None
    annotator: str | None = None
    grade: int | None = None
    suspected: bool = False  # the latest label check's open suspects instead of the disagreements
    query_id: int | None = None  # one query's pairs (db.services.query_review shows its list side by side)


@dataclass(frozen=True)
class ReviewQueue:
    items: list[ReviewItem]  # this page, in pair order
    matching: int  # pending pairs that pass the filters
    pending: int  # pending pairs in total (votes disagree or a standing vote is flagged)
    flagged: int  # pending pairs with a flag
    disagreements: int  # pending pairs whose votes disagree
    offset: int  # where this page starts (clamped to the last page)
    limit: int
    segments: list[str] = field(default_factory=list)  # choices for the filter widgets
    rounds: list[tuple[int, str]] = field(default_factory=list)
    annotators: list[str] = field(default_factory=list)
    check: CheckInfo | None = None  # the latest label check, if any
    suspected: int = 0  # its suspects not adjudicated since


@dataclass
class AgreementReport:
    grades: list[str]
    kappa_pairs: pd.DataFrame  # annotator_a, annotator_b, n, kappa
    alpha_overall: float
    alpha_units: int  # pairs with at least two votes
    alpha_by_segment: pd.DataFrame  # segment, units, alpha
    # annotator, labels, labels_per_hour, median_seconds, adjudicated, accuracy, flagged, flag_rate
    annotators: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    # query_id, query, pairs (with >= 2 votes), votes, unanimous (share), alpha; worst first
    by_query: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=query_review.COLUMNS))


MAX_PAGE = 500


def _project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    return project


def _standing(ev: Any) -> tuple[Any, ...]:
    """Conditions for a standing vote: a label or imported grade that no later event supersedes."""
    later = aliased(LabelEvent)
    return (ev.kind.in_((LabelKind.label, LabelKind.imported)), ~exists().where(later.supersedes_id == ev.id))


def _pending(project_id: int, filters: ReviewFilters) -> Select[Any]:
    """One row per pending pair (pair_id, flag, spread), filtered; pending = not adjudicated, and its
    standing votes disagree or one of them is flagged."""
    flag = func.max(cast(LabelEvent.flagged, Integer))
    spread = func.count(func.distinct(LabelEvent.grade))
    adjudicated = select(LabelEvent.pair_id).where(LabelEvent.kind == LabelKind.adjudication)
    stmt = (select(LabelEvent.pair_id, flag.label("flag"), spread.label("spread"))
            .join(Pair, Pair.id == LabelEvent.pair_id)
            .where(Pair.project_id == project_id, *_standing(LabelEvent), LabelEvent.pair_id.not_in(adjudicated))
            .group_by(LabelEvent.pair_id).having(or_(spread > 1, flag > 0)))
    if filters.flagged_only:
        stmt = stmt.having(flag > 0)
    if filters.disagreements_only:
        stmt = stmt.having(spread > 1)
    return _narrow(stmt, LabelEvent.pair_id, filters)


def _narrow(stmt: Select[Any], pair_id: Any, filters: ReviewFilters) -> Select[Any]:
    """The segment, round, annotator and grade filters on a statement over ``pair_id`` joined to Pair."""
    if filters.segment:
        stmt = stmt.where(Pair.segment == filters.segment)
    if filters.query_id is not None:
        stmt = stmt.where(Pair.query_id == filters.query_id)
    if filters.round_id is not None:
        stmt = stmt.where(pair_id.in_(select(RoundItem.pair_id).where(RoundItem.round_id == filters.round_id)))
    if filters.annotator or filters.grade is not None:
        vote = aliased(LabelEvent)
        by = select(vote.pair_id).where(*_standing(vote))
        if filters.annotator:
            by = by.join(User, User.id == vote.user_id).where(User.name == filters.annotator)
        if filters.grade is not None:
            by = by.where(vote.grade == filters.grade)
        stmt = stmt.where(pair_id.in_(by))
    return stmt


def _latest_check(session: Session, project_id: int) -> LabelCheck | None:
    return session.scalar(select(LabelCheck).where(LabelCheck.project_id == project_id)
                          .order_by(LabelCheck.id.desc()).limit(1))


def _suspects(check: LabelCheck, filters: ReviewFilters) -> Select[Any]:
    """One row per open suspect of ``check`` (rank), filtered: suspected and not adjudicated since the check.
    With "flagged only" or "disagreements only" as well, only suspects that are also pending."""
    reviewed = select(LabelEvent.pair_id).where(LabelEvent.kind == LabelKind.adjudication,
                                                LabelEvent.id > check.last_event_id)
    stmt = (select(LabelCheckItem.pair_id, LabelCheckItem.rank).join(Pair, Pair.id == LabelCheckItem.pair_id)
            .where(LabelCheckItem.check_id == check.id, LabelCheckItem.suspect.is_(True),
                   LabelCheckItem.pair_id.not_in(reviewed)))
    if filters.flagged_only or filters.disagreements_only:
        pending = _pending(check.project_id, ReviewFilters(flagged_only=filters.flagged_only,
                                                           disagreements_only=filters.disagreements_only)).subquery()
        stmt = stmt.where(LabelCheckItem.pair_id.in_(select(pending.c.pair_id)))
    return _narrow(stmt, LabelCheckItem.pair_id, filters)


def _check_filters(filters: ReviewFilters, scale: list[str], offset: int, limit: int) -> None:
    if filters.grade is not None and (isinstance(filters.grade, bool) or not isinstance(filters.grade, int)
                                      or not 0 <= filters.grade < len(scale)):
        raise ConfigError(f"Filter `grade` must be 0..{len(scale) - 1} ({', '.join(scale)}), got {filters.grade!r}.")
    if not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"`offset` must be 0 or more, got {offset!r}.")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ConfigError(f"`limit` must be 1..{MAX_PAGE}, got {limit!r}.")


def _annotators(session: Session, project_id: int) -> list[str]:
    """Everyone with a vote in the project, by name (the choices of the annotator filter)."""
    return list(session.scalars(
        select(User.name).join(LabelEvent, LabelEvent.user_id == User.id).join(Pair, Pair.id == LabelEvent.pair_id)
        .where(Pair.project_id == project_id, LabelEvent.kind == LabelKind.label).distinct().order_by(User.name)))


def _predictions(session: Session, project: Project, ids: list[int]) -> dict[int, Prediction]:
    if project.current_version_id is None or not ids:
        return {}
    version = session.get(ModelVersion, project.current_version_id)
    name = version.name if version is not None else f"#{project.current_version_id}"
    rows = session.execute(select(PairScore.pair_id, PairScore.predicted_grade, PairScore.expected_grade, PairScore.probs)
                           .where(PairScore.model_version_id == project.current_version_id,
                                  PairScore.pair_id.in_(ids)).order_by(PairScore.id))
    return {pid: Prediction(name, grade, expected, list(probs) if probs else None)
            for pid, grade, expected, probs in rows}


def _items(session: Session, project: Project, page: list[int], check: LabelCheck | None) -> list[ReviewItem]:
    finals = final_labels(session, project.id, page)
    page = [pid for pid in page if pid in finals]
    votes: dict[int, list[Vote]] = defaultdict(list)
    rows = session.execute(
        select(LabelEvent.pair_id, User.name, LabelEvent.grade, LabelEvent.flagged, LabelEvent.comment,
               LabelEvent.seconds_on_card, LabelEvent.created_at)
        .join(User, User.id == LabelEvent.user_id, isouter=True)
        .where(LabelEvent.pair_id.in_(page), *_standing(LabelEvent)).order_by(LabelEvent.id))
    for pid, name, grade, flagged, comment, secs, at in rows:
        votes[pid].append(Vote(name or "import", int(grade), bool(flagged), comment, secs, at))
    cards = {r[0]: r for r in session.execute(
        select(Pair.id, Query.text, Item.title, Item.text, Pair.segment)
        .join(Query, Query.id == Pair.query_id).join(Item, Item.id == Pair.item_id).where(Pair.id.in_(page)))}
    predictions = _predictions(session, project, page)
    suspicions = _suspicions(session, check, page) if check is not None else {}
    return [ReviewItem(pair_id=pid, query=cards[pid][1], title=cards[pid][2], text=cards[pid][3],
                       segment=cards[pid][4], votes=votes[pid], majority=finals[pid].grade,
                       flagged=any(v.flagged for v in votes[pid]), prediction=predictions.get(pid),
                       suspicion=suspicions.get(pid)) for pid in page]


def _suspicions(session: Session, check: LabelCheck, ids: list[int]) -> dict[int, Suspicion]:
    rows = session.scalars(select(LabelCheckItem).where(LabelCheckItem.check_id == check.id,
                                                        LabelCheckItem.suspect.is_(True),
                                                        LabelCheckItem.pair_id.in_(ids)))
    return {r.pair_id: Suspicion(check.id, r.rank, r.label, r.model_grade, r.model_prob, r.label_prob, r.reason)
            for r in rows}


def review_queue(session: Session, actor: User, project_id: int, filters: ReviewFilters | None = None,
                 offset: int = 0, limit: int = 50) -> ReviewQueue:
    """Pairs awaiting adjudication (standing votes disagree, or one is flagged), filtered and paged in pair
    order, with the counts (matching, pending, flagged, disagreements) and the filter choices; with
    ``filters.suspected``, the latest label check's open suspects instead, most suspect first."""
    require_role(actor, Role.reviewer)
    project = _project(session, project_id)
    filters = filters or ReviewFilters()
    _check_filters(filters, list(project.grades), offset, limit)
    everything = _pending(project.id, ReviewFilters()).subquery()
    pending, flagged, disagreements = session.execute(select(
        func.count(), func.coalesce(func.sum(case((everything.c.flag > 0, 1), else_=0)), 0),
        func.coalesce(func.sum(case((everything.c.spread > 1, 1), else_=0)), 0)).select_from(everything)).one()
    check = _latest_check(session, project.id)
    suspected = (int(session.scalar(select(func.count()).select_from(_suspects(check, ReviewFilters()).subquery()))
                     or 0) if check is not None else 0)
    if filters.suspected:  # most suspect first
        stmt = _suspects(check, filters) if check is not None else None
        ordered = stmt.with_only_columns(LabelCheckItem.pair_id).order_by(LabelCheckItem.rank) if stmt is not None else None
    else:
        stmt = _pending(project.id, filters)
        ordered = stmt.with_only_columns(LabelEvent.pair_id).order_by(LabelEvent.pair_id)
    matching = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0) if stmt is not None else 0
    if offset >= matching > 0:  # the last page emptied (adjudicated): show the page before it
        offset = (matching - 1) // limit * limit
    ids = list(session.scalars(ordered.offset(offset).limit(limit))) if ordered is not None else []
    rounds, segments = filter_choices(session, project.id)
    return ReviewQueue(items=_items(session, project, ids, check), matching=matching, pending=int(pending),
                       flagged=int(flagged), disagreements=int(disagreements), offset=offset, limit=limit,
                       segments=segments, rounds=rounds, annotators=_annotators(session, project.id),
                       check=None if check is None else CheckInfo(
                           check.id, check.created_at, str((check.params or {}).get("model_version", "")),
                           check.method, check.pairs, check.suspects),
                       suspected=suspected)


def adjudicate(session: Session, actor: User, pair_id: int, grade: int, comment: str | None = None,
               now: datetime | None = None) -> LabelEvent:
    """Record the reviewer's final grade for a pair (an append-only ``adjudication`` event)."""
    require_role(actor, Role.reviewer)
    comment = check_comment(comment)
    pair = session.get(Pair, pair_id)
    if pair is None:
        raise NotFoundError(f"No pair with id {pair_id}.")
    scale = list(_project(session, pair.project_id).grades)
    if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade < len(scale):
        raise ConfigError(f"Grade must be 0..{len(scale) - 1} ({', '.join(scale)}), got {grade!r}.")
    event = LabelEvent(pair_id=pair_id, user_id=actor.id, kind=LabelKind.adjudication, grade=grade,
                       comment=comment, created_at=now or utcnow())
    session.add(event)
    session.flush()
    return event


def adjudicate_and_list(session: Session, actor: User, project_id: int, decision: tuple[int, int, str | None] | None,
                        filters: ReviewFilters | None = None, offset: int = 0, limit: int = 50) -> ReviewQueue:
    """Apply a reviewer's decision (pair id, grade, comment), if any, then return the review queue."""
    require_role(actor, Role.reviewer)
    if decision is not None:
        adjudicate(session, actor, decision[0], decision[1], decision[2])
    return review_queue(session, actor, project_id, filters, offset, limit)


def _annotator_votes(session: Session, project_id: int) -> tuple[dict[int, dict[str, int]], dict[int, int],
                                                                  dict[int, str | None], list[Any]]:
    """Effective annotator votes per pair, adjudicated grades, segments, and raw label rows."""
    rows = session.execute(
        select(LabelEvent.pair_id, LabelEvent.id, LabelEvent.kind, LabelEvent.grade, LabelEvent.user_id,
               LabelEvent.supersedes_id, LabelEvent.created_at, LabelEvent.seconds_on_card, LabelEvent.flagged,
               User.name, Pair.segment)
        .join(Pair, Pair.id == LabelEvent.pair_id).join(User, User.id == LabelEvent.user_id, isouter=True)
        .where(Pair.project_id == project_id,
               LabelEvent.kind.in_((LabelKind.label, LabelKind.undo, LabelKind.adjudication)))
        .order_by(LabelEvent.pair_id, LabelEvent.id)).all()
    by_pair: dict[int, list[Any]] = defaultdict(list)
    for r in rows:
        by_pair[r.pair_id].append(r)
    votes: dict[int, dict[str, int]] = {}
    reference: dict[int, int] = {}
    segments: dict[int, str | None] = {}
    live_labels: list[Any] = []
    for pid, group in by_pair.items():
        events = [Event(r.id, r.kind.value, r.grade, r.user_id, r.supersedes_id, r.created_at) for r in group]
        alive = {e.id for e in effective(events)}
        names = {r.id: r for r in group if r.id in alive}
        for r in names.values():
            if r.kind == LabelKind.label:
                votes.setdefault(pid, {})[r.name] = int(r.grade)
                live_labels.append(r)
            elif r.kind == LabelKind.adjudication:
                reference[pid] = int(r.grade)  # rows are in id order: the latest wins
        segments[pid] = group[0].segment
    return votes, reference, segments, live_labels


def agreement_report(session: Session, actor: User, project_id: int) -> AgreementReport:
    """Pairwise QWK, Krippendorff's alpha (overall, per segment, per query), throughput, accuracy and flag rate
    per annotator."""
    require_role(actor, Role.reviewer)
    project = _project(session, project_id)
    k = len(project.grades)
    votes, reference, segments, labels = _annotator_votes(session, project.id)
    kappas = pd.DataFrame([{"annotator_a": p.rater_a, "annotator_b": p.rater_b, "n": p.n, "kappa": p.kappa}
                           for p in agreement.pairwise_qwk(votes, k)],
                          columns=["annotator_a", "annotator_b", "n", "kappa"])
    multi = {pid: list(v.values()) for pid, v in votes.items() if len(v) >= 2}
    alpha = agreement.krippendorff_alpha(multi.values(), k)
    seg_rows = []
    for seg in sorted({segments[p] or "—" for p in multi}):
        units = [g for p, g in multi.items() if (segments[p] or "—") == seg]
        seg_rows.append({"segment": seg, "units": len(units), "alpha": agreement.krippendorff_alpha(units, k)})
    query_of = {pid: (qid, text) for pid, qid, text in session.execute(
        select(Pair.id, Query.id, Query.text).join(Query, Query.id == Pair.query_id)
        .where(Pair.project_id == project.id, Pair.id.in_(list(multi))))} if multi else {}
    acc = agreement.accuracy(votes, reference)
    per_user: dict[str, list[Any]] = defaultdict(list)
    for r in labels:
        per_user[r.name].append(r)
    flags = agreement.flag_rates({name: [bool(r.flagged) for r in rs] for name, rs in per_user.items()})
    people = []
    for name, rs in sorted(per_user.items()):
        per_hour, med = agreement.throughput([r.created_at for r in rs], [r.seconds_on_card for r in rs])
        n_ref, share = acc.get(name, (0, math.nan))
        people.append({"annotator": name, "labels": len(rs), "labels_per_hour": per_hour, "median_seconds": med,
                       "adjudicated": n_ref, "accuracy": share, "flagged": flags[name][0],
                       "flag_rate": flags[name][1]})
    notes = []
    if not multi:
        notes.append("No pair has two annotator votes yet: set an overlap of 2 or an agreement share "
                     "(Review → Settings) to measure agreement.")
    return AgreementReport(
        grades=list(project.grades), kappa_pairs=kappas, alpha_overall=alpha, alpha_units=len(multi),
        alpha_by_segment=pd.DataFrame(seg_rows, columns=["segment", "units", "alpha"]),
        annotators=pd.DataFrame(people, columns=["annotator", "labels", "labels_per_hour", "median_seconds",
                                                 "adjudicated", "accuracy", "flagged", "flag_rate"]),
        notes=notes, by_query=query_review.query_agreement(votes, query_of, k))
