"""Data subcommands: migrate, import, export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from darl_core.data import FORMATS, ColumnMap
from darl_core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="upgrade the database at DATABASE_URL to the latest schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("import", help="import pairs from CSV, JSONL or Parquet (all-or-nothing, idempotent)")
    p.add_argument("path", type=Path)
    p.add_argument("--project", required=True)
    p.add_argument("--create", action="store_true", help="create the project if it does not exist")
    p.add_argument("--grades", help="grade names, lowest first, e.g. irrelevant,weak,strong (with --create)")
    p.add_argument("--grade-base", type=int, default=1, choices=(0, 1),
                   help="integer ratings: 1 = lowest grade (default) or 0 = lowest grade")
    p.add_argument("--guidelines", type=Path, help="a Markdown/text file with the raters' guidelines")
    p.add_argument("--format", choices=FORMATS, help="override the format guessed from the extension")
    for name in ("query", "title", "text", "grade", "segment", "split", "item-id"):
        p.add_argument(f"--{name}-column", default=name.replace("-", "_"),
                       help=f"column holding the {name} (default: {name.replace('-', '_')})")
    p.add_argument("--attribute-columns", default="", help="comma-separated columns kept as item attributes")
    p.add_argument("--undo-export-escaping", action="store_true",
                   help="CSV from our export: drop the apostrophe it puts before cells starting with = + - @, "
                        "TAB or CR (otherwise a leading apostrophe is kept as data)")
    p.add_argument("--on-conflict", choices=("error", "votes"), default="error",
                   help="rows of one query and item with different grades: error = refuse the file (default); "
                        "votes = keep each row as a separate vote, the majority decides and a tie goes to the "
                        "lower grade")
    p.add_argument("--chunk-rows", type=int, default=50_000)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="export one row per pair with final grade, votes and agreement")
    p.add_argument("--project", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--format", choices=FORMATS, help="default: from the --out extension")
    p.add_argument("--round", type=int, dest="round_id", help="only pairs of this selection round")
    p.add_argument("--segment")
    p.add_argument("--min-votes", type=int, default=0)
    p.add_argument("--labelled-only", action="store_true")
    p.set_defaults(func=cmd_export)


def ensure_schema() -> None:
    """Every subcommand but `migrate` brings an empty or outdated database to the latest schema first."""
    from db.migrate import ensure_migrated

    if ensure_migrated():
        print("database migrated to the latest schema", file=sys.stderr)


def cmd_migrate(args: argparse.Namespace) -> int:
    from db.migrate import current_revision, ensure_migrated

    changed = ensure_migrated()
    print(f"database at revision {current_revision()} ({'upgraded' if changed else 'already current'})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from db.services.imports import import_file
    from db.services.users import SYSTEM
    from db.session import session_scope

    ensure_schema()
    if args.chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be positive, got {args.chunk_rows}")
    columns = ColumnMap(query=args.query_column, title=args.title_column, text=args.text_column,
                        grade=args.grade_column, segment=args.segment_column, split=args.split_column,
                        item_id=args.item_id_column,
                        attributes=tuple(c.strip() for c in args.attribute_columns.split(",") if c.strip()))
    guidelines = args.guidelines.read_text(encoding="utf-8") if args.guidelines else None
    bars: dict[str, tqdm] = {}

    def progress(phase: str, rows: int) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.close()
            bars[phase] = tqdm(desc=phase, unit=" rows", unit_scale=True, file=sys.stderr,
                               total=bars["validate"].n if "validate" in bars else None)
        bars[phase].update(rows)

    try:
        with session_scope() as session:
            summary = import_file(session, args.path, args.project, create=args.create, grades=args.grades,
                                  guidelines=guidelines, columns=columns, fmt=args.format,
                                  grade_base=args.grade_base, chunk_rows=args.chunk_rows, progress=progress,
                                  undo_export_escaping=args.undo_export_escaping, on_conflict=args.on_conflict,
                                  actor=SYSTEM)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"imported into '{args.project}': {summary}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from db.services.exports import ExportFilters, export_frame, write_export
    from db.services.projects import get_project
    from db.session import session_scope

    ensure_schema()
    with session_scope() as session:
        project = get_project(session, args.project)
        frame = export_frame(session, project, ExportFilters(round_id=args.round_id, segment=args.segment,
                                                             min_votes=args.min_votes,
                                                             labelled_only=args.labelled_only))
    fmt = write_export(frame, args.out, args.format)
    print(f"exported {len(frame):,} pairs to {args.out} ({fmt})")
    return 0
