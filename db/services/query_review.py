"""Review per query (issue 24): one query's pairs with every annotator's grade side by side, and how
consistently each query is graded.

Reviewers (and the roles above) only. Votes are the standing ``label`` events (undone ones and what they
undid left out, as everywhere); the final grade is the project's (``db.services.labels.final_labels``:
the latest adjudication, else the votes' majority). Per query: the pairs with two or more votes (units),
the share of them whose votes are unanimous, and Krippendorff's alpha (ordinal) over them: low alpha means
the query's items are graded inconsistently (an unclear intent, or guidelines that do not cover it).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core import agreement
from darl_core.errors import NotFoundError
from darl_core.labels import Event, effective
from db.models import Item, LabelEvent, LabelKind, Pair, Project, Query, Role, User
from db.services.labels import final_labels
from db.services.users import require_role

COLUMNS = ["query_id", "query", "pairs", "votes", "unanimous", "alpha"]


@dataclass(frozen=True)
class QueryRow:
    pair_id: int
    title: str
    text: str | None
    grades: dict[str, int]  # annotator name -> standing vote
    flagged: bool
    final: int | None  # the grade that stands now (None: no vote yet)
    adjudicated: int | None  # the reviewer's decision, if any


@dataclass(frozen=True)
class QueryReview:
    query_id: int
    query: str
    annotators: tuple[str, ...]  # the columns, by name
    rows: tuple[QueryRow, ...]  # every pair of the query, in pair order
    pairs: int  # pairs with two or more votes
    unanimous: float  # share of those whose votes all agree (NaN when none)
    alpha: float  # Krippendorff's alpha (ordinal) over those pairs (NaN when undefined)


def query_agreement(votes: Mapping[int, Mapping[str, int]], query_of: Mapping[int, tuple[int, str]],
                    k: int) -> pd.DataFrame:
    """Per query: pairs with >= 2 votes, their votes, the unanimous share and alpha; worst first (alpha, where
    everyone used one grade counting as full agreement, then the unanimous share)."""
    units: dict[tuple[int, str], list[list[int]]] = defaultdict(list)
    for pid, by in votes.items():
        if len(by) >= 2 and pid in query_of:
            units[query_of[pid]].append(list(by.values()))
    rows = []
    for (qid, text), us in units.items():
        unanimous = sum(len(set(u)) == 1 for u in us) / len(us)
        rows.append({"query_id": qid, "query": text, "pairs": len(us), "votes": sum(map(len, us)),
                     "unanimous": unanimous, "alpha": agreement.krippendorff_alpha(us, k)})

    def worst_first(r: dict[str, Any]) -> tuple[float, float, int, int]:
        alpha = r["alpha"] if not math.isnan(r["alpha"]) else (1.0 if r["unanimous"] == 1 else 0.0)
        return alpha, r["unanimous"], -r["pairs"], r["query_id"]
    return pd.DataFrame(sorted(rows, key=worst_first), columns=COLUMNS)


def _find_query(session: Session, project_id: int, query: int | str) -> Query:
    stmt = select(Query).where(Query.project_id == project_id)
    found = session.scalar(stmt.where(Query.id == query) if isinstance(query, int) and not isinstance(query, bool)
                           else stmt.where(Query.text == str(query)))
    if found is None:
        raise NotFoundError(f"No query {query!r} in this project: give a query id or its exact text (the "
                            "per-query agreement table lists them).")
    return found


def query_review(session: Session, actor: User, project_id: int, query: int | str) -> QueryReview:
    """A query's pairs with every annotator's standing grade side by side, the final grade and the reviewer's
    decision, and the query's agreement figures. ``query`` is the query's id or its exact text."""
    require_role(actor, Role.reviewer)
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    q = _find_query(session, project_id, query)
    pairs = list(session.execute(select(Pair.id, Item.title, Item.text).join(Item, Item.id == Pair.item_id)
                                 .where(Pair.query_id == q.id).order_by(Pair.id)))
    ids = [p.id for p in pairs]
    events = session.execute(
        select(LabelEvent.id, LabelEvent.pair_id, LabelEvent.kind, LabelEvent.grade, LabelEvent.user_id,
               LabelEvent.supersedes_id, LabelEvent.created_at, LabelEvent.flagged, User.name)
        .outerjoin(User, User.id == LabelEvent.user_id).where(LabelEvent.pair_id.in_(ids)).order_by(LabelEvent.id)).all()
    by_pair: dict[int, list[Any]] = defaultdict(list)
    for e in events:
        by_pair[e.pair_id].append(e)
    votes: dict[int, dict[str, int]] = {}
    flagged: set[int] = set()
    decided: dict[int, int] = {}
    for pid, group in by_pair.items():
        alive = {e.id for e in effective([Event(r.id, r.kind.value, r.grade, r.user_id, r.supersedes_id, r.created_at)
                                          for r in group])}
        for r in group:
            if r.id not in alive:
                continue
            if r.kind == LabelKind.label:
                votes.setdefault(pid, {})[r.name or "someone"] = int(r.grade)
                if r.flagged:
                    flagged.add(pid)
            elif r.kind == LabelKind.adjudication:
                decided[pid] = int(r.grade)  # id order: the latest stands
    finals = final_labels(session, project_id, ids)
    names = tuple(sorted({n for by in votes.values() for n in by}))
    figures = query_agreement(votes, dict.fromkeys(ids, (q.id, q.text)), len(project.grades))
    fig = figures.iloc[0] if len(figures) else None
    rows = tuple(QueryRow(pair_id=p.id, title=p.title, text=p.text, grades=votes.get(p.id, {}),
                          flagged=p.id in flagged, final=finals[p.id].grade if p.id in finals else None,
                          adjudicated=decided.get(p.id)) for p in pairs)
    return QueryReview(query_id=q.id, query=q.text, annotators=names, rows=rows,
                       pairs=int(fig["pairs"]) if fig is not None else 0,
                       unanimous=float(fig["unanimous"]) if fig is not None else math.nan,
                       alpha=float(fig["alpha"]) if fig is not None else math.nan)
