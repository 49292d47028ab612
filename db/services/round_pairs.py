"""One selection round opened up: its pairs with the query, the item, the OOD score, why DASA picked each
and who graded what so far, and the same rows as a CSV file.

Read-only, engineer role (the reasons and the votes of every annotator are the engineer's view; the
annotators see only their own card).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from darl_core.reasons import explain
from db.models import LabelEvent, LabelKind, Pair, Project, Role, User
from db.services.labels import final_labels
from db.services.rounds import get_round, round_items
from db.services.users import Actor, require_role

_FORMULA = ("=", "+", "-", "@")
COLUMNS = ("rank", "pair", "query", "item", "ood_score", "control", "reason", "grade", "graded_by")


def round_pairs(session: Session, round_id: int, *, actor: Actor | None) -> list[dict[str, Any]]:
    """The round's pairs in queue order: query, item, OOD score, the reasons in words, the standing grade
    (blank until there is one) and every effective vote as "name: grade" (reviewer decisions marked)."""
    require_role(actor, Role.engineer)
    rnd = get_round(session, round_id)
    project = session.get(Project, rnd.project_id)
    grades = list(project.grades) if project is not None else []
    items = round_items(session, round_id)
    ids = [ri.pair_id for ri in items]
    pairs = {p.id: p for p in session.scalars(select(Pair).where(Pair.id.in_(ids))
                                              .options(joinedload(Pair.query), joinedload(Pair.item)))}
    finals = final_labels(session, rnd.project_id, ids)
    votes = _votes(session, ids, grades)
    rows = []
    for ri in items:
        pair, reasons = pairs[ri.pair_id], ri.reasons or {}
        ood = reasons.get("ood_score", reasons.get("score", ri.score))
        final = finals.get(ri.pair_id)
        rows.append({"rank": ri.rank, "pair": ri.pair_id, "query": pair.query.text, "item": pair.item.title,
                     "ood_score": round(float(ood), 4) if isinstance(ood, int | float) else None,
                     "control": bool(ri.is_control), "reason": " ".join(explain(reasons, grades)),
                     "grade": _grade(final.grade, grades) if final is not None else "",
                     "graded_by": "; ".join(votes.get(ri.pair_id, []))})
    return rows


def round_csv(rows: list[dict[str, Any]]) -> bytes:
    """``round_pairs`` rows as a UTF-8 CSV. A text cell a spreadsheet would run as a formula (``= + - @``)
    gets a leading apostrophe, as the project export does (db/services/exports.py)."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("query", "item", "reason", "graded_by"):
        frame[col] = frame[col].map(lambda v: f"'{v}" if isinstance(v, str) and v.startswith(_FORMULA) else v)
    return frame.to_csv(index=False).encode("utf-8")


def _grade(grade: int | None, grades: list[str]) -> str:
    if grade is None:
        return ""
    return grades[grade] if 0 <= grade < len(grades) else str(grade)


def _votes(session: Session, pair_ids: list[int], grades: list[str]) -> dict[int, list[str]]:
    """pair id -> "name: grade" for each vote still standing (undone ones and what they undid left out)."""
    events = list(session.execute(select(LabelEvent.id, LabelEvent.pair_id, LabelEvent.kind, LabelEvent.grade,
                                         LabelEvent.supersedes_id, User.name)
                                  .outerjoin(User, User.id == LabelEvent.user_id)
                                  .where(LabelEvent.pair_id.in_(pair_ids)).order_by(LabelEvent.id)))
    undone = {e.supersedes_id for e in events if e.supersedes_id is not None}  # as darl_core.labels.effective
    out: dict[int, list[str]] = {}
    for e in events:
        if e.kind == LabelKind.undo or e.id in undone:
            continue
        who = {LabelKind.imported: "imported", LabelKind.adjudication: f"{e.name} (reviewer's decision)"}.get(
            e.kind, e.name or "someone")
        out.setdefault(e.pair_id, []).append(f"{who}: {_grade(e.grade, grades)}")
    return out
