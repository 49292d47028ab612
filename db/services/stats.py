"""Project statistics for the Overview page."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import LabelEvent, LabelKind, ModelVersion, Pair, Project, User
from db.services.labels import final_labels


@dataclass(frozen=True)
class Overview:
    pairs: int
    labelled: int
    annotators: int
    label_events: int
    versions: int
    grades: pd.DataFrame  # grade, count (final grades, scale order)
    segments: pd.DataFrame  # segment, pairs, labelled, labelled_share
    splits: pd.DataFrame  # split, pairs
    activity: pd.DataFrame  # day, labels (annotator votes per day)

    @property
    def labelled_share(self) -> float:
        return self.labelled / self.pairs if self.pairs else 0.0


def project_overview(session: Session, project: Project) -> Overview:
    pairs = pd.DataFrame(session.execute(select(Pair.id, Pair.segment, Pair.split)
                                         .where(Pair.project_id == project.id)).all(),
                         columns=["pair_id", "segment", "split"])
    labels = final_labels(session, project.id)
    pairs["grade"] = pairs["pair_id"].map(lambda p: labels[p].grade if p in labels else None)
    pairs["segment"] = pairs["segment"].fillna("(none)")
    pairs["split"] = pairs["split"].fillna("(none)")
    scale = list(project.grades)
    counts = pairs["grade"].dropna().astype(int).value_counts()
    grades = pd.DataFrame({"grade": scale, "count": [int(counts.get(i, 0)) for i in range(len(scale))]})
    seg = pairs.groupby("segment").agg(pairs=("pair_id", "size"), labelled=("grade", "count")).reset_index()
    seg["labelled_share"] = seg["labelled"] / seg["pairs"]
    splits = pairs.groupby("split").size().rename("pairs").reset_index()
    votes = (select(func.date(LabelEvent.created_at), func.count(LabelEvent.id))
             .join(Pair, Pair.id == LabelEvent.pair_id)
             .where(Pair.project_id == project.id, LabelEvent.kind == LabelKind.label)
             .group_by(func.date(LabelEvent.created_at)).order_by(func.date(LabelEvent.created_at)))
    activity = pd.DataFrame(session.execute(votes).all(), columns=["day", "labels"])
    annotators = session.scalar(select(func.count(func.distinct(LabelEvent.user_id)))
                                .join(Pair, Pair.id == LabelEvent.pair_id)
                                .where(Pair.project_id == project.id, LabelEvent.user_id.is_not(None))) or 0
    n_events = session.scalar(select(func.count(LabelEvent.id)).join(Pair, Pair.id == LabelEvent.pair_id)
                              .where(Pair.project_id == project.id)) or 0
    versions = session.scalar(select(func.count(ModelVersion.id)).where(ModelVersion.project_id == project.id)) or 0
    return Overview(pairs=len(pairs), labelled=len(labels), annotators=int(annotators), label_events=int(n_events),
                    versions=int(versions), grades=grades, segments=seg.sort_values("pairs", ascending=False),
                    splits=splits, activity=activity)


def user_count(session: Session) -> int:
    return int(session.scalar(select(func.count(User.id))) or 0)
