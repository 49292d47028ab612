"""The Export page's service: the role check, the filter choices, and one prepared download.

The table itself comes from ``db.services.exports`` (the same code as ``python -m darl_core export``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from darl_core.errors import NotFoundError
from db.models import ModelVersion, PairScore, Project, Role, User
from db.services.exports import ExportFilters, export_frame, to_bytes
from db.services.projects import filter_choices
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
    return filter_choices(session, project_id)


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


def prediction_note(session: Session, actor: User, project_id: int) -> str:
    """Where the export's ``predicted_grade`` / ``predicted_score`` come from, or why they are empty."""
    require_role(actor, Role.engineer)
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    if project.current_version_id is None:
        return ("The prediction columns are empty: the project has no current model version "
                "(make one current on the Training page).")
    version = session.get(ModelVersion, project.current_version_id)
    scored = session.scalar(select(func.count(PairScore.pair_id)).where(
        PairScore.model_version_id == project.current_version_id, PairScore.predicted_grade.is_not(None))) or 0
    name = version.name if version is not None else str(project.current_version_id)
    if not scored:
        return (f"The prediction columns are empty: the current version {name} has not scored any pair yet "
                "(a DASA round or a map with it scores the pool).")
    return f"Prediction columns: the current version {name}, which has scored {scored:,} pairs."
