"""Vote aggregation: from an append-only list of label events to one final grade per pair.

Rules (documented in the README):
- an event is *effective* unless it is an undo or another event names it in ``supersedes``;
- votes are the effective ``label`` and ``imported`` events (one per annotator: a re-grade supersedes
  the annotator's earlier vote);
- the latest effective ``adjudication`` is final whatever the votes say;
- otherwise the majority grade is final, ties broken toward the lower grade (a conservative choice
  against the optimistic bias of relevance labels);
- agreement is the share of votes equal to the final grade.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    id: int
    kind: str  # label | imported | adjudication | undo
    grade: int | None
    user_id: int | None
    supersedes: int | None
    created_at: object = None


@dataclass(frozen=True)
class FinalLabel:
    grade: int
    source: str  # majority | adjudication
    votes: tuple[tuple[int | None, int], ...]  # (user_id or None for imported, grade)
    agreement: float
    first_at: object = None
    last_at: object = None
    vote_counts: dict[int, int] = field(default_factory=dict)

    @property
    def n_votes(self) -> int:
        return len(self.votes)


def effective(events: Iterable[Event]) -> list[Event]:
    events = list(events)
    superseded = {e.supersedes for e in events if e.supersedes is not None}
    return [e for e in events if e.kind != "undo" and e.id not in superseded]


def aggregate(events: Iterable[Event]) -> FinalLabel | None:
    """The final label of one pair's events, or None when no effective vote or adjudication exists."""
    events = sorted(events, key=lambda e: e.id)
    live = effective(events)
    votes = [e for e in live if e.kind in ("label", "imported")]
    adjudications = [e for e in live if e.kind == "adjudication"]
    if not votes and not adjudications:
        return None
    counts = Counter(int(e.grade) for e in votes if e.grade is not None)
    if adjudications:
        grade, source = int(adjudications[-1].grade), "adjudication"  # type: ignore[arg-type]
    else:
        top = max(counts.values())
        grade, source = min(g for g, c in counts.items() if c == top), "majority"
    stamps = [e.created_at for e in live if e.created_at is not None]
    return FinalLabel(
        grade=grade,
        source=source,
        votes=tuple((e.user_id, int(e.grade)) for e in votes if e.grade is not None),
        agreement=(counts.get(grade, 0) / len(votes)) if votes else 1.0,
        first_at=min(stamps) if stamps else None,
        last_at=max(stamps) if stamps else None,
        vote_counts=dict(counts),
    )
