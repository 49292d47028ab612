"""What the grading screen shows around a leased card: the card itself with why it was picked (in words),
the round's progress, and the annotator's previous card (the one ``U`` withdraws).

Read-only helpers for ``db.services.annotation``; they never claim or write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, column, text
from sqlalchemy.orm import Session

from darl_core.reasons import explain
from db.models import Project
from db.services.projects import project_settings


@dataclass(frozen=True)
class Card:
    lease_id: int
    pair_id: int
    query: str
    title: str
    text: str | None
    segment: str | None
    split: str | None
    round_id: int | None
    expires_at: datetime
    reasons: dict[str, Any] | None = None  # why it was picked; None unless the project shows reasons
    score: float | None = None
    why: tuple[str, ...] = ()  # ``reasons`` in words an annotator can use


@dataclass(frozen=True)
class Progress:
    done_today: int
    left_in_round: int | None  # None when no round is open
    round_name: str | None
    round_total: int | None = None  # pairs in the open round
    mine_in_round: int = 0  # the annotator's standing labels in that round

    @property
    def round_graded(self) -> int | None:
        """Pairs of the round that have all the votes they need."""
        if self.round_total is None or self.left_in_round is None:
            return None
        return self.round_total - self.left_in_round


@dataclass(frozen=True)
class Previous:
    """The annotator's latest standing label in the project: what ``U`` withdraws next."""

    label_id: int
    pair_id: int
    query: str
    title: str
    grade: int


@dataclass(frozen=True)
class Step:
    """What the grading screen shows next: a card (None when the queue is empty) and progress."""

    card: Card | None
    progress: Progress
    message: str | None = None
    previous: Previous | None = None


_SQL_CARD = text(
    "SELECT p.id AS id, p.segment AS segment, p.split AS split, q.text AS query, i.title AS title, "
    "i.text AS body, l.round_id AS round_id, l.expires_at AS expires_at FROM leases l "
    "JOIN pairs p ON p.id = l.pair_id JOIN queries q ON q.id = p.query_id JOIN items i ON i.id = p.item_id "
    "WHERE l.id = :id").columns(column("id"), column("segment"), column("split"), column("query"),
                                 column("title"), column("body"), column("round_id"),
                                 column("expires_at", DateTime))
# The round item's stored reasons, and the model's grade probabilities from the version that picked it.
_SQL_REASONS = text(
    "SELECT ri.reasons, ri.score, ps.probs FROM round_items ri JOIN selection_rounds r ON r.id = ri.round_id "
    "LEFT JOIN pair_scores ps ON ps.model_version_id = r.model_version_id AND ps.pair_id = ri.pair_id "
    "WHERE ri.round_id = :rid AND ri.pair_id = :pair_id").columns(
    column("reasons", JSON), column("score"), column("probs", JSON))
# A gold card has no round of its own: it shows the reasons of the latest round that picked the pair, as a
# card from that round would (db/services/gold.py: a gold card looks like any other).
_SQL_GOLD_ROUND = text("SELECT max(ri.round_id) FROM round_items ri JOIN gold_pairs g ON g.pair_id = ri.pair_id "
                       "WHERE ri.pair_id = :pair_id")
_SQL_PREVIOUS = text(
    "SELECT e.id, e.pair_id, e.grade, q.text, i.title FROM label_events e JOIN pairs p ON p.id = e.pair_id "
    "JOIN queries q ON q.id = p.query_id JOIN items i ON i.id = p.item_id WHERE e.user_id = :uid "
    "AND e.kind = 'label' AND p.project_id = :pid "
    "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.supersedes_id = e.id) "
    "ORDER BY e.created_at DESC, e.id DESC LIMIT 1")


def gold_reasons(session: Session, pair_id: int) -> Any:
    """A gold pair's reasons (``reasons``, ``score``, ``probs``) from the latest round that picked it; None for a
    pair that is not gold or that no round picked. Gold cards and gold list items show these."""
    gold_round = session.scalar(_SQL_GOLD_ROUND, {"pair_id": pair_id})
    return session.execute(_SQL_REASONS, {"rid": gold_round, "pair_id": pair_id}).first() \
        if gold_round is not None else None


def card(session: Session, project: Project, lease_id: int) -> Card:
    """The card of a lease; with the reasons (and their words) when the project shows them."""
    r = session.execute(_SQL_CARD, {"id": lease_id}).one()
    reasons = score = None
    why: tuple[str, ...] = ()
    shows = bool(project_settings(project).get("show_reasons"))
    ri = session.execute(_SQL_REASONS, {"rid": r.round_id, "pair_id": r.id}).first() \
        if shows and r.round_id is not None else None
    if shows and ri is None:  # a gold card (leased under a round it is not in, or none)
        ri = gold_reasons(session, r.id)
    if ri is not None:
        reasons, score = ri.reasons or {}, ri.score
        why = tuple(explain(reasons, list(project.grades), probs=ri.probs))
    return Card(lease_id=lease_id, pair_id=r.id, segment=r.segment, split=r.split, query=r.query, title=r.title,
                text=r.body, round_id=r.round_id, expires_at=r.expires_at, reasons=reasons, score=score, why=why)


def previous(session: Session, user_id: int, project_id: int) -> Previous | None:
    """The user's latest label in the project that is still standing (not undone), or None."""
    row = session.execute(_SQL_PREVIOUS, {"uid": user_id, "pid": project_id}).first()
    if row is None:
        return None
    return Previous(label_id=int(row[0]), pair_id=int(row[1]), grade=int(row[2]), query=str(row[3]),
                    title=str(row[4]))
