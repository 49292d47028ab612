"""The Export page's service: the role check, the filter choices, and one prepared download.

The table itself comes from ``db.services.exports`` (the same code as ``python -m darl_core export``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.errors import NotFoundError
from db.models import Pair, Project, Role, SelectionRound, User
from db.services.exports import ExportFilters, export_frame, to_bytes
from db.services.users import require_role

MIME = {"csv": "text/csv", "jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet"}


@dataclass(frozen=True)
class Download:
    rows: int
    preview: pd.DataFrame
    data: bytes
    file_name: str
    mime: str


def export_choices(session: Session, actor: User, project_id: int) -> tuple[list[tuple[int, str]], list[str]]:
    """(rounds as (id, label), newest first; segments) for the filter widgets. Engineer role."""
    require_role(actor, Role.engineer)
    rounds = [(rid, f"#{rid} {name or ''}".strip()) for rid, name in session.execute(
        select(SelectionRound.id, SelectionRound.name).where(SelectionRound.project_id == project_id)
        .order_by(SelectionRound.id.desc()))]
    segments = [s for s in session.scalars(select(Pair.segment).where(Pair.project_id == project_id)
                                           .where(Pair.segment.is_not(None)).distinct().order_by(Pair.segment))]
    return rounds, segments


def prepare_download(session: Session, actor: User, project_id: int, filters: ExportFilters, fmt: str,
                     preview_rows: int = 20) -> Download:
    """Build the export table and serialise it (engineer role)."""
    require_role(actor, Role.engineer)
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    frame = export_frame(session, project, filters)
    data = to_bytes(frame, fmt)
    return Download(rows=len(frame), preview=frame.head(preview_rows), data=data,
                    file_name=f"{project.name}-labels.{fmt}", mime=MIME.get(fmt, "application/octet-stream"))
