"""Importing pair files: streamed, validated in full before anything is written, set-based inserts.

Guarantees:
- all-or-nothing: pass 1 validates every row (and in-file conflicts) without touching the database;
  pass 2 writes inside one transaction, so any failure rolls everything back;
- idempotent: queries, items and pairs are keyed (sha1) and inserted with ON CONFLICT DO NOTHING; a pair's
  imported grades are appended only when the file's multiset of grades for it differs from the pair's
  standing imported votes (imported events no later event supersedes);
- append-only: a changed pair gets new ``imported`` events, the k-th superseding the pair's k-th standing
  imported vote; a standing vote left over (the file now has fewer rows for the pair) is withdrawn by an
  ``undo`` event, so every old standing imported vote is superseded exactly once (the unique
  ``supersedes_id`` makes a concurrent double import fail rather than double-count);
- duplicates with different grades (``on_conflict``): ``error`` refuses the file naming the row (the file's
  grades for a pair are then one grade, whatever the number of rows); ``votes`` keeps every labelled row
  as a separate imported vote, so the final-grade rule of ``darl_core.labels`` decides (majority, a tie
  to the lower grade, an adjudication over all);
- bounded memory and disk: both passes stream chunks of at most ``chunk_rows`` rows and about 2 MB of
  text (Parquet read by batches smaller than a row group); pass 2 moves each chunk through a temporary
  staging table and lets the database join keys to ids. Pass 1 spools the normalised chunks of a CSV or
  JSONL file (about the file's size) so pass 2 need not parse it again; a Parquet file is compressed, its
  text can be a thousand times its size on disk, so pass 2 reads it again instead (and refuses to go on
  if the file changed in between). A pair's rows may lie in different chunks, so each chunk only adds its
  graded rows, as (pair id, grade, row), to a staging table; the votes are compared and written by a few
  set-based statements once the last chunk is in.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from darl_core.data import ColumnMap, detect_format, read_pairs
from darl_core.errors import ConfigError, ImportFileError, NotFoundError
from db.models import Project, Role, utcnow
from db.services.limits import check_name
from db.services.projects import create_project, get_project, parse_grades
from db.services.users import Actor, require_role
from db.session import is_sqlite

Progress = Callable[[int], None]
ON_CONFLICT = ("error", "votes")


@dataclass
class ImportSummary:
    project: str
    project_created: bool = False
    rows: int = 0
    pairs_new: int = 0
    pairs_existing: int = 0
    labelled_rows: int = 0
    labels_new: int = 0
    labels_changed: int = 0
    labels_withdrawn: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.rows:,} rows -> {self.pairs_new:,} new pairs ({self.pairs_existing:,} already there), "
                f"{self.labels_new:,} new grades, {self.labels_changed:,} changed grades"
                + (f", {self.labels_withdrawn:,} imported votes withdrawn" if self.labels_withdrawn else "")
                + (f"; project '{self.project}' created" if self.project_created else ""))


def validate_file(path: Path, scale: list[str], columns: ColumnMap, fmt: str | None, grade_base: int,
                  chunk_rows: int, progress: Progress | None = None, spool: Path | None = None,
                  undo_export_escaping: bool = False, on_conflict: str = "error") -> int:
    """Pass 1: read every row; raise ImportFileError on the first bad one or (``on_conflict="error"``) on
    conflicting duplicates.

    With ``spool`` (a directory), each normalised chunk is also written there as a pickle, so the
    write pass reads them back instead of parsing and validating the file a second time.
    """
    hashes: list[np.ndarray] = []
    grades: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    total = 0
    for chunk in read_pairs(path, scale, columns, fmt, chunk_rows, grade_base, undo_export_escaping):
        labelled = chunk[chunk["grade"] >= 0]
        if spool is not None:
            chunk.to_pickle(spool / f"{len(rows):06d}.pkl")
        hashes.append(np.fromiter((hash(q[:16] + i[:16]) for q, i in zip(labelled["qkey"].tolist(),
                                                                           labelled["ikey"].tolist(), strict=True)),
                                  dtype=np.int64, count=len(labelled)))
        grades.append(labelled["grade"].to_numpy(np.int16))
        rows.append(labelled["row"].to_numpy(np.int64))
        total += len(chunk)
        if progress:
            progress(len(chunk))
    if hashes and on_conflict == "error":
        _check_conflicts(np.concatenate(hashes), np.concatenate(grades), np.concatenate(rows), scale)
    return total


def _check_conflicts(keys: np.ndarray, grades: np.ndarray, rows: np.ndarray, scale: list[str]) -> None:
    """Two rows for the same pair with different grades: ambiguous, so the import is refused."""
    if len(keys) < 2:
        return
    order = np.lexsort((rows, keys))
    k, g, r = keys[order], grades[order], rows[order]
    same = (k[1:] == k[:-1]) & (g[1:] != g[:-1])
    if same.any():
        hits = np.flatnonzero(same)
        i = int(hits[np.argmin(r[hits + 1])])  # report the earliest offending row, deterministically
        raise ImportFileError(
            f"the same query and item appear again with a different grade ({scale[g[i + 1]]!r} here, "
            f"{scale[g[i]]!r} at row {r[i]}); keep one grade per pair, or import with --on-conflict votes to keep "
            "each row as a separate vote", row=int(r[i + 1]))


_STAGE_COLUMNS = "row_no, qkey, query, ikey, ext_id, title, body, segment, split, grade, attributes"


_TEMP_TABLES = ("import_stage", "import_resolved", "import_votes", "import_want", "import_old", "import_changed")


def _create_stage(session: Session) -> None:
    """Per-import temp tables: the raw chunk, the chunk resolved to query/item ids, its graded pairs."""
    suffix = "" if is_sqlite(session) else " ON COMMIT DROP"
    if is_sqlite(session):  # a bigger page cache for the duration: random-key index inserts at 1M+ rows
        session.execute(text("PRAGMA cache_size=-131072"))
    session.execute(text(
        "CREATE TEMP TABLE import_stage (row_no INTEGER, qkey VARCHAR(40), query TEXT, ikey VARCHAR(40), "
        f"ext_id VARCHAR(200), title TEXT, body TEXT, segment VARCHAR(100), split VARCHAR(32), grade INTEGER, attributes TEXT){suffix}"))
    session.execute(text("CREATE TEMP TABLE import_resolved (row_no INTEGER, query_id INTEGER, item_id INTEGER, "
                         f"segment VARCHAR(100), split VARCHAR(32), grade INTEGER){suffix}"))
    # The whole file's graded rows, then the votes it wants, the standing imported votes, the changed pairs.
    session.execute(text(f"CREATE TEMP TABLE import_votes (pair_id INTEGER, grade INTEGER, row_no INTEGER){suffix}"))
    session.execute(text(f"CREATE TEMP TABLE import_want (pair_id INTEGER, grade INTEGER, rnk INTEGER){suffix}"))
    session.execute(text("CREATE TEMP TABLE import_old (pair_id INTEGER, event_id INTEGER, grade INTEGER, "
                         f"rnk INTEGER){suffix}"))
    session.execute(text(f"CREATE TEMP TABLE import_changed (pair_id INTEGER PRIMARY KEY){suffix}"))


def _drop_stage(session: Session) -> None:
    if is_sqlite(session):
        for table in _TEMP_TABLES:
            session.execute(text(f"DROP TABLE IF EXISTS temp.{table}"))
        session.execute(text("PRAGMA cache_size=-2000"))  # back to SQLite's default


def _stage_chunk(session: Session, chunk: pd.DataFrame) -> None:
    session.execute(text("DELETE FROM import_stage"))
    has_attrs = "attributes" in chunk.columns
    cols = {c: chunk[c].tolist() for c in ("row", "qkey", "query", "ikey", "item_id", "title", "text", "segment",
                                            "split", "grade")}
    attrs = [json.dumps(a, default=str) for a in chunk["attributes"].tolist()] if has_attrs else [None] * len(chunk)
    records = list(zip(
        cols["row"], cols["qkey"], cols["query"], cols["ikey"], [v or None for v in cols["item_id"]], cols["title"],
        [v or None for v in cols["text"]], [v or None for v in cols["segment"]], [v or None for v in cols["split"]],
        [g if g >= 0 else None for g in cols["grade"]], attrs, strict=True))
    # Straight to the driver: SQLAlchemy's per-row parameter handling would cost more than the insert.
    dbapi = session.connection().connection.dbapi_connection
    if is_sqlite(session):
        dbapi.executemany(f"INSERT INTO import_stage ({_STAGE_COLUMNS}) VALUES ({', '.join('?' * 11)})", records)
    else:  # psycopg: COPY is the bulk path on PostgreSQL
        with dbapi.cursor() as cur, cur.copy(f"COPY import_stage ({_STAGE_COLUMNS}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(record)


def _merge_stage(session: Session, project_id: int, summary: ImportSummary) -> None:
    p = {"pid": project_id, "now": utcnow()}
    json_cast = "MIN(s.attributes)" if is_sqlite(session) else "CAST(MIN(s.attributes) AS JSON)"
    # "WHERE true" lets SQLite parse INSERT ... SELECT ... ON CONFLICT unambiguously.
    session.execute(text(
        "INSERT INTO queries (project_id, key, text) SELECT :pid, s.qkey, MIN(s.query) FROM import_stage s "
        "WHERE true GROUP BY s.qkey ORDER BY MIN(s.row_no) ON CONFLICT (project_id, key) DO NOTHING"), p)
    session.execute(text(
        f"INSERT INTO items (project_id, key, external_id, title, text, attributes) SELECT :pid, s.ikey, "
        f"MIN(s.ext_id), MIN(s.title), "
        f"MIN(s.body), {json_cast} FROM import_stage s WHERE true GROUP BY s.ikey ORDER BY MIN(s.row_no) "
        "ON CONFLICT (project_id, key) DO NOTHING"), p)
    # Resolve the chunk to ids once; the pair, count and label statements read that small table.
    session.execute(text("DELETE FROM import_resolved"))
    session.execute(text(
        "INSERT INTO import_resolved (row_no, query_id, item_id, segment, split, grade) "
        "SELECT s.row_no, q.id, i.id, s.segment, s.split, s.grade FROM import_stage s "
        "JOIN queries q ON q.project_id = :pid AND q.key = s.qkey "
        "JOIN items i ON i.project_id = :pid AND i.key = s.ikey"), p)
    distinct_pairs = session.execute(text(
        "SELECT COUNT(*) FROM (SELECT DISTINCT query_id, item_id FROM import_resolved) d")).scalar_one()
    new = session.execute(text(
        "INSERT INTO pairs (project_id, query_id, item_id, segment, split, priority, created_at) "
        "SELECT :pid, r.query_id, r.item_id, MIN(r.segment), COALESCE(MIN(r.split), CASE WHEN MAX(r.grade) IS NULL "
        "THEN 'pool' ELSE 'train' END), 0, :now FROM import_resolved r WHERE true GROUP BY r.query_id, r.item_id "
        "ORDER BY MIN(r.row_no) ON CONFLICT (project_id, query_id, item_id) DO NOTHING"), p).rowcount
    summary.pairs_new += new
    summary.pairs_existing += int(distinct_pairs) - new
    session.execute(text(
        "INSERT INTO import_votes (pair_id, grade, row_no) SELECT p.id, r.grade, r.row_no FROM import_resolved r "
        "JOIN pairs p ON p.project_id = :pid AND p.query_id = r.query_id AND p.item_id = r.item_id "
        "WHERE r.grade IS NOT NULL"), p)
    summary.labelled_rows += int(session.execute(
        text("SELECT COUNT(*) FROM import_stage WHERE grade IS NOT NULL")).scalar_one())


def _merge_votes(session: Session, on_conflict: str, summary: ImportSummary) -> None:
    """Compare the file's multiset of grades per pair with the pair's standing imported votes; for each pair
    where they differ, supersede every standing imported vote and append the file's (see the docstring)."""
    now = {"now": utcnow()}
    session.execute(text("CREATE INDEX ix_import_votes ON import_votes (pair_id)"))
    if on_conflict == "votes":  # every labelled row is a vote
        session.execute(text(
            "INSERT INTO import_want (pair_id, grade, rnk) SELECT pair_id, grade, "
            "ROW_NUMBER() OVER (PARTITION BY pair_id ORDER BY grade, row_no) FROM import_votes"))
    else:  # pass 1 made sure a pair has one grade, however many rows repeat it
        session.execute(text("INSERT INTO import_want (pair_id, grade, rnk) SELECT pair_id, MIN(grade), 1 "
                             "FROM import_votes GROUP BY pair_id"))
    session.execute(text(
        "INSERT INTO import_old (pair_id, event_id, grade, rnk) SELECT e.pair_id, e.id, e.grade, "
        "ROW_NUMBER() OVER (PARTITION BY e.pair_id ORDER BY e.id) FROM label_events e "
        "WHERE e.pair_id IN (SELECT DISTINCT pair_id FROM import_want) AND e.kind = 'imported' "
        "AND NOT EXISTS (SELECT 1 FROM label_events later WHERE later.supersedes_id = e.id)"))
    session.execute(text("CREATE INDEX ix_import_want ON import_want (pair_id, rnk)"))
    session.execute(text("CREATE INDEX ix_import_old ON import_old (pair_id, rnk)"))
    want = "SELECT pair_id, grade, COUNT(*) AS n FROM import_want GROUP BY pair_id, grade"
    old = "SELECT pair_id, grade, COUNT(*) AS n FROM import_old GROUP BY pair_id, grade"
    session.execute(text(
        f"INSERT INTO import_changed (pair_id) SELECT a.pair_id FROM ({want} EXCEPT {old}) a "
        f"UNION SELECT b.pair_id FROM ({old} EXCEPT {want}) b"))
    insert = ("INSERT INTO label_events (pair_id, kind, grade, supersedes_id, flagged, created_at) "
              "SELECT w.pair_id, 'imported', w.grade, o.event_id, false, :now FROM import_want w "
              "JOIN import_changed c ON c.pair_id = w.pair_id "
              "LEFT JOIN import_old o ON o.pair_id = w.pair_id AND o.rnk = w.rnk "
              "WHERE {} EXISTS (SELECT 1 FROM import_old x WHERE x.pair_id = w.pair_id) ORDER BY w.pair_id, w.rnk")
    summary.labels_new += session.execute(text(insert.format("NOT")), now).rowcount
    summary.labels_changed += session.execute(text(insert.format("")), now).rowcount
    summary.labels_withdrawn += session.execute(text(
        "INSERT INTO label_events (pair_id, kind, grade, supersedes_id, flagged, created_at) "
        "SELECT o.pair_id, 'undo', NULL, o.event_id, false, :now FROM import_old o "
        "JOIN import_changed c ON c.pair_id = o.pair_id "
        "WHERE NOT EXISTS (SELECT 1 FROM import_want w WHERE w.pair_id = o.pair_id AND w.rnk = o.rnk) "
        "ORDER BY o.pair_id, o.rnk"), now).rowcount


def import_file(session: Session, path: str | Path, project_name: str, *, create: bool = False,
                grades: str | list[str] | None = None, guidelines: str | None = None,
                columns: ColumnMap | None = None, fmt: str | None = None, grade_base: int = 1,
                chunk_rows: int = 50_000, progress: Callable[[str, int], None] | None = None,
                undo_export_escaping: bool = False, on_conflict: str = "error",
                actor: Actor | None) -> ImportSummary:
    """Import a pair file into a project (engineer role). Writes nothing unless every row is valid.

    ``undo_export_escaping`` (CSV only): drop the apostrophe DaRL's CSV export puts before formula-like
    cells; without it a leading apostrophe is data.

    ``on_conflict``: what rows of one pair with different grades mean: ``error`` (the default) refuses the
    file naming the row; ``votes`` keeps each row as a separate imported vote (the majority decides, a tie
    goes to the lower grade). Re-importing the same file adds nothing either way.

    ``progress(phase, rows)`` is called per chunk with phase ``validate`` or ``write``.
    The caller owns the transaction (``session_scope`` commits on success and rolls back on error).
    """
    require_role(actor, Role.engineer)
    if on_conflict not in ON_CONFLICT:
        raise ConfigError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
    path = Path(path)
    fmt = detect_format(path, fmt)
    columns = columns or ColumnMap()
    project = _resolve_project(session, project_name, create, grades)
    scale = list(project.grades) if project else parse_grades(grades)
    summary = ImportSummary(project=project_name)
    reread = fmt == "parquet"  # see the module docstring: bounded disk on compressed input
    with tempfile.TemporaryDirectory(prefix="darl-import-") as spool:
        stamp = _stamp(path) if reread else None
        summary.rows = validate_file(path, scale, columns, fmt, grade_base, chunk_rows,
                                     (lambda n: progress("validate", n)) if progress else None,
                                     None if reread else Path(spool), undo_export_escaping, on_conflict)
        if reread and _stamp(path) != stamp:
            raise ImportFileError(f"'{path.name}' changed while it was being imported; nothing was written, "
                                  "import it again")
        if project is None:
            project = create_project(session, project_name, grades=scale, guidelines=guidelines or "", actor=actor)
            summary.project_created = True
        elif guidelines is not None:
            project.guidelines = guidelines
        _create_stage(session)
        try:
            chunks = (read_pairs(path, scale, columns, fmt, chunk_rows, grade_base) if reread
                      else (pd.read_pickle(f) for f in sorted(Path(spool).glob("*.pkl"))))
            for chunk in chunks:
                _stage_chunk(session, chunk)
                _merge_stage(session, project.id, summary)
                if progress:
                    progress("write", len(chunk))
            _merge_votes(session, on_conflict, summary)
        finally:
            _drop_stage(session)
    session.flush()
    return summary


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None  # validate_file names the missing file
    return info.st_size, info.st_mtime_ns


def _resolve_project(session: Session, name: str, create: bool, grades: str | list[str] | None) -> Project | None:
    try:
        project = get_project(session, name)
    except NotFoundError:
        if not create:
            raise
        check_name(name, "Project name")  # before validating a whole file for a project that cannot exist
        return None
    if grades is not None and parse_grades(grades) != list(project.grades):
        raise ConfigError(f"Project '{name}' already has the scale {', '.join(project.grades)}; "
                          f"--grades {grades!r} does not match it.")
    return project
