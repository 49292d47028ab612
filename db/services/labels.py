"""Reading labels: final grades per pair from the append-only label events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import groupby

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from darl_core.labels import Event, FinalLabel, aggregate
from db.models import LabelEvent, LabelKind, Pair

_CHUNK = 20_000
# Splits that never train: validation pairs score each epoch, test pairs only an evaluation.
VAL_SPLITS = ("val", "val_id")
TEST_SPLITS = ("test", "test_id", "test_ood")


def _events_query(project_id: int):  # type: ignore[no-untyped-def]
    return (
        select(LabelEvent.pair_id, LabelEvent.id, LabelEvent.kind, LabelEvent.grade, LabelEvent.user_id,
               LabelEvent.supersedes_id, LabelEvent.created_at)
        .join(Pair, Pair.id == LabelEvent.pair_id)
        .where(Pair.project_id == project_id)
    )


def iter_final_labels(session: Session, project_id: int,
                      pair_ids: Sequence[int] | None = None) -> Iterator[tuple[int, FinalLabel]]:
    """Yield (pair_id, final label) for every labelled pair of a project, in pair order, streaming."""
    if pair_ids is not None:
        ids = sorted(set(pair_ids))
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            stmt = _events_query(project_id).where(LabelEvent.pair_id.in_(chunk))
            yield from _aggregate_rows(session.execute(stmt.order_by(LabelEvent.pair_id, LabelEvent.id)))
        return
    stmt = _events_query(project_id).order_by(LabelEvent.pair_id, LabelEvent.id)
    yield from _aggregate_rows(session.execute(stmt.execution_options(yield_per=_CHUNK)))


def _aggregate_rows(rows) -> Iterator[tuple[int, FinalLabel]]:  # type: ignore[no-untyped-def]
    for pair_id, group in groupby(rows, key=lambda r: r[0]):
        final = aggregate(Event(id=r[1], kind=str(r[2].value if hasattr(r[2], "value") else r[2]), grade=r[3],
                                user_id=r[4], supersedes=r[5], created_at=r[6]) for r in group)
        if final is not None:
            yield pair_id, final


def final_labels(session: Session, project_id: int, pair_ids: Sequence[int] | None = None) -> dict[int, FinalLabel]:
    return dict(iter_final_labels(session, project_id, pair_ids))


def label_event_count(session: Session, project_id: int) -> int:
    stmt = select(func.count(LabelEvent.id)).join(Pair, Pair.id == LabelEvent.pair_id).where(Pair.project_id == project_id)
    return int(session.scalar(stmt) or 0)


def last_event_id(session: Session, project_id: int) -> int:
    stmt = select(func.max(LabelEvent.id)).join(Pair, Pair.id == LabelEvent.pair_id).where(Pair.project_id == project_id)
    return int(session.scalar(stmt) or 0)


def standing_pair_ids(session: Session, project_id: int) -> set[int]:
    """Pairs with a grade that stands: a vote, an imported grade or an adjudication not withdrawn by undo."""
    undo = aliased(LabelEvent)
    withdrawn = exists().where(undo.supersedes_id == LabelEvent.id, undo.kind == LabelKind.undo)
    return set(session.scalars(select(LabelEvent.pair_id).join(Pair, Pair.id == LabelEvent.pair_id)
                               .where(Pair.project_id == project_id, LabelEvent.kind != LabelKind.undo, ~withdrawn)
                               .distinct()))
