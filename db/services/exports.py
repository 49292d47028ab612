"""Exporting a project: one row per pair with its final grade, every vote, agreement, flags and comments,
and the current model version's prediction.

The CLI (`python -m darl_core export`) and the Export page call the same two functions:
``export_frame`` builds the table, ``write_export`` / ``to_bytes`` serialise it. CSV cells that start
with ``= + - @``, TAB or CR (OWASP's formula-injection list) get a leading apostrophe, and so does a cell
that already looks escaped (``'=`` -> ``''=``), so that an import with ``undo_export_escaping`` gives back exactly
the original text. JSONL and Parquet are written raw.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from darl_core.data import detect_format
from darl_core.errors import ImportFileError
from darl_core.readers import needs_formula_escape
from db.models import Item, LabelEvent, LabelKind, Pair, PairScore, Project, Query, RoundItem, User
from db.services.labels import final_labels

COLUMNS = [
    "pair_id", "query", "title", "text", "item_id", "segment", "split", "grade", "grade_index", "grade_source",
    "votes", "vote_count", "agreement", "flagged", "comments", "first_label_at", "last_label_at", "predicted_grade",
    "predicted_score",
]
_CHUNK = 5_000  # pair ids per IN (...) list


@dataclass(frozen=True)
class ExportFilters:
    round_id: int | None = None
    segment: str | None = None
    min_votes: int = 0
    since: datetime | None = None  # on the last label time
    until: datetime | None = None
    labelled_only: bool = False


def export_frame(session: Session, project: Project, filters: ExportFilters | None = None) -> pd.DataFrame:
    """The export table of a project (see COLUMNS), in pair order."""
    filters = filters or ExportFilters()
    stmt = (select(Pair.id, Query.text, Item.title, Item.text, Item.external_id, Pair.segment, Pair.split)
            .join(Query, Query.id == Pair.query_id).join(Item, Item.id == Pair.item_id)
            .where(Pair.project_id == project.id).order_by(Pair.id))
    if filters.round_id is not None:
        stmt = stmt.join(RoundItem, RoundItem.pair_id == Pair.id).where(RoundItem.round_id == filters.round_id)
    if filters.segment:
        stmt = stmt.where(Pair.segment == filters.segment)
    base = pd.DataFrame(session.execute(stmt).all(),
                        columns=["pair_id", "query", "title", "text", "item_id", "segment", "split"])
    labels = final_labels(session, project.id, base["pair_id"].tolist() if filters.round_id or filters.segment else None)
    names = dict(session.execute(select(User.id, User.name)).all())
    scale = list(project.grades)
    rows = []
    for pid in base["pair_id"].tolist():
        final = labels.get(pid)
        if final is None:
            rows.append((None, None, None, [], 0, None, None, None))
            continue
        votes = [{"annotator": names.get(uid, "import") if uid is not None else "import", "grade": scale[g]}
                 for uid, g in final.votes]
        rows.append((scale[final.grade], final.grade, final.source, votes, final.n_votes, round(final.agreement, 4),
                     final.first_at, final.last_at))
    label_cols = pd.DataFrame(rows, columns=["grade", "grade_index", "grade_source", "votes", "vote_count",
                                             "agreement", "first_label_at", "last_label_at"])
    frame = pd.concat([base, label_cols], axis=1)
    frame["grade_index"] = frame["grade_index"].astype("Int64")
    frame = _add_flags_and_comments(session, frame)
    frame = _add_predictions(session, project, frame)
    keep = pd.Series(True, index=frame.index)
    if filters.labelled_only or filters.min_votes > 0:
        keep &= frame["grade"].notna() & (frame["vote_count"] >= filters.min_votes)
    last = pd.to_datetime(frame["last_label_at"])
    if filters.since is not None:
        keep &= last >= pd.Timestamp(filters.since)
    if filters.until is not None:
        keep &= last <= pd.Timestamp(filters.until)
    return frame[keep].reset_index(drop=True)[COLUMNS]


def _add_flags_and_comments(session: Session, frame: pd.DataFrame) -> pd.DataFrame:
    """``flagged``: any standing vote is flagged; ``comments``: "name: text" of the standing votes and the
    latest standing adjudication (marked "(review)"), joined with " | ", in the order they were written."""
    frame["flagged"] = False
    frame["comments"] = ""
    if frame.empty:
        return frame
    later = aliased(LabelEvent)
    ids = frame["pair_id"].tolist()
    flagged: set[int] = set()
    notes: dict[int, list[str]] = {}
    adjudication: dict[int, str | None] = {}
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(LabelEvent.pair_id, LabelEvent.kind, LabelEvent.flagged, LabelEvent.comment, User.name)
            .join(User, User.id == LabelEvent.user_id, isouter=True)
            .where(LabelEvent.pair_id.in_(ids[start:start + _CHUNK]), LabelEvent.kind != LabelKind.undo,
                   ~exists().where(later.supersedes_id == LabelEvent.id))
            .order_by(LabelEvent.id))
        for pid, kind, flag, comment, name in rows:
            text = f"{name or 'import'}: {comment.strip()}" if comment and comment.strip() else None
            if kind == LabelKind.adjudication:
                adjudication[pid] = f"{name or 'import'} (review): {comment.strip()}" if text else None
                continue
            flagged.update([pid] if flag else [])
            if text:
                notes.setdefault(pid, []).append(text)
    frame["flagged"] = [pid in flagged for pid in ids]
    frame["comments"] = [" | ".join(notes.get(pid, []) + ([adjudication[pid]] if adjudication.get(pid) else []))
                         for pid in ids]
    return frame


def _add_predictions(session: Session, project: Project, frame: pd.DataFrame) -> pd.DataFrame:
    frame["predicted_grade"] = None
    frame["predicted_score"] = None
    if project.current_version_id is None or frame.empty:
        return frame
    scores = dict(
        (pid, (pred, exp)) for pid, pred, exp in session.execute(
            select(PairScore.pair_id, PairScore.predicted_grade, PairScore.expected_grade)
            .where(PairScore.model_version_id == project.current_version_id)))
    scale = list(project.grades)
    frame["predicted_grade"] = [scale[scores[p][0]] if p in scores and scores[p][0] is not None else None
                                for p in frame["pair_id"]]
    frame["predicted_score"] = [scores[p][1] if p in scores else None for p in frame["pair_id"]]
    return frame


def _escape_formula(value: object) -> object:
    if isinstance(value, str) and needs_formula_escape(value):
        return "'" + value
    return value


def _serialisable(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    out = frame.copy()
    for col in ("first_label_at", "last_label_at"):
        out[col] = pd.to_datetime(out[col])
    if fmt == "csv":
        out["votes"] = [json.dumps(v, ensure_ascii=False) for v in out["votes"]]
        for col in out.columns:
            if not pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_datetime64_any_dtype(out[col]):
                out[col] = out[col].map(_escape_formula).astype(object)
    elif fmt == "jsonl":
        for col in ("first_label_at", "last_label_at"):
            out[col] = out[col].map(lambda t: t.isoformat() if pd.notna(t) else None).astype(object)
    return out


def to_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """Serialise an export table to CSV, JSONL or Parquet bytes (for a download button)."""
    out = _serialisable(frame, fmt)
    if fmt == "csv":
        # CRLF rows (RFC 4180): the csv writer quotes a cell holding any character of the line terminator,
        # so with "\n" alone a bare CR in a cell went out unquoted and split the row for every reader.
        return out.to_csv(index=False, lineterminator="\r\n").encode("utf-8")
    if fmt == "jsonl":
        return out.to_json(orient="records", lines=True, force_ascii=False).encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        out.to_parquet(buf, index=False)
        return buf.getvalue()
    raise ImportFileError(f"unknown export format {fmt!r}; use csv, jsonl or parquet")


def write_export(frame: pd.DataFrame, path: str | Path, fmt: str | None = None) -> str:
    """Write an export table; returns the format used (from ``fmt`` or the file extension)."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_bytes(frame, fmt)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    tmp.replace(path)  # a crash never leaves a half-written export under the final name
    return fmt
