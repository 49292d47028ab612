"""Review: the queue of pairs whose votes disagree (or were flagged), adjudication, agreement report.

Reviewers (and the roles above) only. An adjudication is an append-only ``adjudication`` event; the
latest one is the pair's final grade whatever the votes say (``darl_core.labels``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Integer, cast, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from darl_core import agreement
from darl_core.errors import ConfigError, NotFoundError
from darl_core.labels import Event, effective
from db.models import Item, LabelEvent, LabelKind, Pair, Project, Query, Role, User, utcnow
from db.services.labels import final_labels
from db.services.limits import check_comment
from db.services.users import require_role


@dataclass(frozen=True)
class Vote:
    annotator: str
    grade: int
    flagged: bool
    comment: str | None
    seconds_on_card: float | None


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


@dataclass
class AgreementReport:
    grades: list[str]
    kappa_pairs: pd.DataFrame  # annotator_a, annotator_b, n, kappa
    alpha_overall: float
    alpha_units: int  # pairs with at least two votes
    alpha_by_segment: pd.DataFrame  # segment, units, alpha
    annotators: pd.DataFrame  # annotator, labels, labels_per_hour, median_seconds, adjudicated, accuracy
    notes: list[str] = field(default_factory=list)


def _project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    return project


def review_queue(session: Session, actor: User, project_id: int, limit: int = 50) -> tuple[list[ReviewItem], int]:
    """Pairs awaiting adjudication: effective votes disagree, or a vote was flagged. Returns (items, total)."""
    require_role(actor, Role.reviewer)
    project = _project(session, project_id)
    undo = aliased(LabelEvent)
    live_vote = (LabelEvent.kind.in_((LabelKind.label, LabelKind.imported)),
                 ~exists().where(undo.supersedes_id == LabelEvent.id))
    adjudicated = select(LabelEvent.pair_id).where(LabelEvent.kind == LabelKind.adjudication)
    candidates = (select(LabelEvent.pair_id).join(Pair, Pair.id == LabelEvent.pair_id)
                  .where(Pair.project_id == project.id, *live_vote, LabelEvent.pair_id.not_in(adjudicated))
                  .group_by(LabelEvent.pair_id)
                  .having(or_(func.count(func.distinct(LabelEvent.grade)) > 1,
                              func.max(cast(LabelEvent.flagged, Integer)) > 0))
                  .order_by(LabelEvent.pair_id))
    ids = list(session.scalars(candidates))
    finals = final_labels(session, project.id, ids[:limit])
    page = [pid for pid in ids[:limit] if pid in finals]
    votes: dict[int, list[Vote]] = defaultdict(list)
    rows = session.execute(
        select(LabelEvent.pair_id, User.name, LabelEvent.grade, LabelEvent.flagged, LabelEvent.comment,
               LabelEvent.seconds_on_card)
        .join(User, User.id == LabelEvent.user_id, isouter=True)
        .where(LabelEvent.pair_id.in_(page), *live_vote).order_by(LabelEvent.id))
    for pid, name, grade, flagged, comment, secs in rows:
        votes[pid].append(Vote(name or "import", int(grade), bool(flagged), comment, secs))
    cards = {r[0]: r for r in session.execute(
        select(Pair.id, Query.text, Item.title, Item.text, Pair.segment)
        .join(Query, Query.id == Pair.query_id).join(Item, Item.id == Pair.item_id).where(Pair.id.in_(page)))}
    items = [ReviewItem(pair_id=pid, query=cards[pid][1], title=cards[pid][2], text=cards[pid][3],
                        segment=cards[pid][4], votes=votes[pid], majority=finals[pid].grade,
                        flagged=any(v.flagged for v in votes[pid])) for pid in page]
    return items, len(ids)


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
                        limit: int = 50) -> tuple[list[ReviewItem], int]:
    """Apply a reviewer's decision (pair id, grade, comment), if any, then return the review queue."""
    if decision is not None:
        adjudicate(session, actor, decision[0], decision[1], decision[2])
    return review_queue(session, actor, project_id, limit)


def _annotator_votes(session: Session, project_id: int) -> tuple[dict[int, dict[str, int]], dict[int, int],
                                                                  dict[int, str | None], list[Any]]:
    """Effective annotator votes per pair, adjudicated grades, segments, and raw label rows."""
    rows = session.execute(
        select(LabelEvent.pair_id, LabelEvent.id, LabelEvent.kind, LabelEvent.grade, LabelEvent.user_id,
               LabelEvent.supersedes_id, LabelEvent.created_at, LabelEvent.seconds_on_card, User.name, Pair.segment)
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
    """Pairwise QWK, Krippendorff's alpha (overall, per segment), throughput and accuracy per annotator."""
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
    acc = agreement.accuracy(votes, reference)
    per_user: dict[str, list[Any]] = defaultdict(list)
    for r in labels:
        per_user[r.name].append(r)
    people = []
    for name, rs in sorted(per_user.items()):
        per_hour, med = agreement.throughput([r.created_at for r in rs], [r.seconds_on_card for r in rs])
        n_ref, share = acc.get(name, (0, math.nan))
        people.append({"annotator": name, "labels": len(rs), "labels_per_hour": per_hour, "median_seconds": med,
                       "adjudicated": n_ref, "accuracy": share})
    notes = []
    if not multi:
        notes.append("No pair has two annotator votes yet: set an overlap of 2 or an agreement share "
                     "(Review → Settings) to measure agreement.")
    return AgreementReport(
        grades=list(project.grades), kappa_pairs=kappas, alpha_overall=alpha, alpha_units=len(multi),
        alpha_by_segment=pd.DataFrame(seg_rows, columns=["segment", "units", "alpha"]),
        annotators=pd.DataFrame(people, columns=["annotator", "labels", "labels_per_hour", "median_seconds",
                                                 "adjudicated", "accuracy"]),
        notes=notes)
