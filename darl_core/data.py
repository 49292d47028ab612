"""Reading and validating pair files (CSV, JSONL, Parquet) in bounded-memory chunks.

``read_pairs`` yields normalised chunks with columns ``row, query, title, text, segment, split, grade,
qkey, ikey`` (``grade`` a 0-based index into the scale or -1 for unlabelled). Any invalid row raises
``ImportFileError`` naming the row (1-based, header excluded) and the reason; callers validate the
whole file before writing anything.

Import rules (README, "Importing"):
- CSV: every row has exactly the header's fields; a bare CR inside an unquoted field, a quote never
  closed (a file cut short) or text after a closing quote is refused (see ``darl_core.readers``);
- text fields: no control characters but tab, LF and CR; within the length limits below; JSON objects
  or lists (JSONL, Parquet) are refused, not turned into text; a leading apostrophe is data, unless the
  import is asked to undo the CSV export's formula escaping (``undo_export_escaping``);
- a grade cell may be a grade name of the project's scale (case-insensitive), e.g. ``weak``;
  an integer rating, 1 = lowest grade (``grade_base=1``, the default) or 0 = lowest (``grade_base=0``);
  a mean of ratings between the lowest and the highest rating, rounded half up (2.5 -> 3, 2.33 -> 2);
  ratings are written with ASCII digits (full-width or other digits are refused, like any unknown grade);
  empty, null, NaN (a float NaN or the text "NaN", any case): the pair is unlabelled and joins the pool.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from darl_core.errors import ImportFileError
from darl_core.readers import raw_chunks

FORMATS = ("csv", "jsonl", "parquet")
MAX_QUERY = 1_000
MAX_TITLE = 2_000
MAX_TEXT = 50_000
MAX_SEGMENT = 100
MAX_SPLIT = 32
MAX_ITEM_ID = 200
QUOTE_LIMIT = 200  # an error message shows at most this many characters of a cell
# C0 controls but tab, LF and CR, and DEL: never text (PostgreSQL cannot even store NUL). C1 controls
# (U+0080-U+009F) stay allowed: real catalogues carry them (the Home Depot titles have U+0095).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
@dataclass(frozen=True)
class ColumnMap:
    query: str = "query"
    title: str = "title"
    text: str = "text"
    grade: str = "grade"
    segment: str = "segment"
    split: str = "split"
    item_id: str = "item_id"  # optional: items with the same title but different ids stay distinct
    attributes: tuple[str, ...] = field(default_factory=tuple)


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ImportFileError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    guessed = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl",
               "parquet": "parquet", "pq": "parquet"}.get(suffix)
    if guessed is None:
        raise ImportFileError(f"cannot tell the format of '{path.name}' from its extension; pass --format "
                              f"({', '.join(FORMATS)})")
    return guessed


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a cell for an error message, cut to ``limit`` characters (a 10 MB cell stays out of logs)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str | bytes | list | dict) else "cut"
    return f"{text[:limit]}... ({size})"


def sha1_keys(values: list[str]) -> list[str]:
    return [hashlib.sha1(v.encode("utf-8", "surrogatepass")).hexdigest() for v in values]


def parse_grade(value: object, scale: list[str], grade_base: int = 1) -> int:
    """A grade cell -> 0-based index, -1 when empty (see the module docstring). Raises ValueError."""
    low, high = grade_base, grade_base + len(scale) - 1
    unknown = f"unknown grade {quote(value)}; the scale is {', '.join(scale)} (or ratings {low}..{high})"
    if isinstance(value, str):
        text = value.strip()
        lowered = text.lower()
        if not text or lowered == "nan":  # the text "NaN" means what a float NaN means: no grade
            return -1
        names = [g.lower() for g in scale]
        if lowered in names:
            return names.index(lowered)
        if not text.isascii():  # float() would take full-width and other scripts' digits: refuse them all
            raise ValueError(unknown + "; write ratings with the digits 0-9")
        try:
            number = float(text)
        except ValueError:
            raise ValueError(unknown) from None
    elif value is None:
        return -1
    elif isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        number = float(value)
    else:  # bool (True is not rating 1), objects, lists
        raise ValueError(unknown)
    if math.isnan(number):
        return -1
    if not math.isfinite(number):
        raise ValueError(f"grade {quote(value)} is not a finite number")
    if not low <= number <= high:  # before rounding: 0.5 is no rating of 1..3, not a rounded 1
        raise ValueError(f"grade {quote(value)} is outside the ratings {low}..{high} of the scale {', '.join(scale)}")
    return math.floor(number + 0.5) - grade_base  # round half up: 2.5 -> 3, 2.33 -> 2


def _text_cells(values: list[object], rows: list[int], column: str) -> list[str]:
    """Cells of a text column as strings; empty for None/NaN. A JSON object or list is refused, not str()-ed."""
    if set(map(type, values)) <= {str}:  # the common case, at C speed
        return values  # type: ignore[return-value]
    return [v if type(v) is str else _cell_text(v, row, column) for v, row in zip(values, rows, strict=True)]


def _cell_text(value: object, row: int, column: str) -> str:
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float | np.floating) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple | set | np.ndarray):
        raise ImportFileError(f"a JSON {'object' if isinstance(value, dict) else 'list'} where text is expected "
                              f"({quote(value)}); write the text itself", row=row, column=column)
    if isinstance(value, bytes | bytearray):
        raise ImportFileError("a binary value where text is expected; store the column as text (UTF-8 strings)",
                              row=row, column=column)
    return str(value)


def normalise_chunk(raw: pd.DataFrame, columns: ColumnMap, scale: list[str], grade_base: int = 1) -> pd.DataFrame:
    """Validate one raw chunk (from ``darl_core.readers``) and return its normalised rows."""
    missing = [c for c in (columns.query, columns.title) if c not in raw.columns]
    if missing:
        found = ", ".join(quote(str(c), 60) for c in raw.columns if c != "__row__") or "none"
        raise ImportFileError(f"missing required column(s) {', '.join(missing)} (found: {found[:1000]}); map "
                              f"yours with --query-column/--title-column")
    for extra in columns.attributes:
        if extra not in raw.columns:
            raise ImportFileError(f"missing attribute column {quote(extra)}")
    n = len(raw)
    rows = raw["__row__"].tolist()

    def col(name: str) -> list[str]:
        return _text_cells(raw[name].tolist(), rows, name) if name in raw.columns else [""] * n

    query, title, text = col(columns.query), col(columns.title), col(columns.text)
    segment, split, ids = col(columns.segment), col(columns.split), col(columns.item_id)
    # Column-wise checks (C-speed over a whole column); the per-row search runs only on a failure.
    for name, values, limit in ((columns.query, query, MAX_QUERY), (columns.title, title, MAX_TITLE),
                                (columns.text, text, MAX_TEXT), (columns.segment, segment, MAX_SEGMENT),
                                (columns.split, split, MAX_SPLIT), (columns.item_id, ids, MAX_ITEM_ID)):
        if n and max(map(len, values)) > limit:
            i = next(i for i, v in enumerate(values) if len(v) > limit)
            raise ImportFileError(f"field is {len(values[i]):,} characters; the limit is {limit:,} (shorten it)",
                                  row=rows[i], column=name)
        _check_text(values, rows, name)
    for name in columns.attributes:
        cells = raw[name].tolist()
        _check_text([v for v in cells if isinstance(v, str)], [r for v, r in zip(cells, rows, strict=True)
                                                                if isinstance(v, str)], name)
    query = [v.strip() for v in query]
    title = [v.strip() for v in title]
    for name, values, what in ((columns.query, query, "query"), (columns.title, title, "item title")):
        if not all(values):
            raise ImportFileError(f"{what} is empty", row=rows[values.index("")], column=name)
    grade_cells = raw[columns.grade].tolist() if columns.grade in raw.columns else [None] * n
    grades = np.empty(n, dtype=np.int16)
    parsed: dict[object, int] = {}  # grade cells repeat: parse each distinct value once
    for i, cell in enumerate(grade_cells):
        try:
            grades[i] = parsed[cell]
        except (KeyError, TypeError):  # new value, or unhashable
            try:
                grades[i] = parse_grade(cell, scale, grade_base)
            except ValueError as exc:
                raise ImportFileError(str(exc), row=rows[i], column=columns.grade) from None
            if type(cell) in (str, int, float):  # not bool: True == 1 would share 1's entry
                parsed[cell] = int(grades[i])
    out = pd.DataFrame({
        "row": rows, "query": query, "title": title, "text": text, "segment": segment, "split": split,
        "grade": grades,
    })
    out["qkey"] = sha1_keys(query)
    out["item_id"] = ids
    if columns.item_id in raw.columns:
        out["ikey"] = sha1_keys([f"id\x1f{i}" if i else f"{t}\x1f{x}" for i, t, x in zip(ids, title, text, strict=True)])
    else:
        out["ikey"] = sha1_keys([f"{t}\x1f{x}" for t, x in zip(title, text, strict=True)])
    if columns.attributes:
        out["attributes"] = raw[list(columns.attributes)].astype(object).where(raw[list(columns.attributes)].notna(), None).to_dict("records")
    return out


def _check_text(values: list[str], rows: list[int], column: str) -> None:
    """Undecodable bytes or a control character (but tab, LF, CR) in a column: the first offending row."""
    joined = "\n".join(values)
    if _has_surrogates(joined):
        i = next(i for i, v in enumerate(values) if _has_surrogates(v))
        raise ImportFileError("text is not valid UTF-8 (undecodable bytes)", row=rows[i], column=column)
    if _CONTROL.search(joined):
        i, hit = next((i, m) for i, v in enumerate(values) if (m := _CONTROL.search(v)))
        raise ImportFileError(f"control character U+{ord(hit.group()):04X} at character {hit.start() + 1}; remove "
                              "it (tab and line breaks are the only control characters allowed in text)",
                              row=rows[i], column=column)


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_pairs(path: Path, scale: list[str], columns: ColumnMap | None = None, fmt: str | None = None,
               chunk_rows: int = 50_000, grade_base: int = 1,
               undo_export_escaping: bool = False) -> Iterator[pd.DataFrame]:
    """Yield validated, normalised chunks of a pair file (see the module docstring).

    ``undo_export_escaping`` (CSV only) drops the apostrophe DaRL's CSV export puts before a cell that
    starts with ``= + - @``, TAB or CR; without it a leading apostrophe is kept as data.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    columns = columns or ColumnMap()
    if grade_base not in (0, 1):
        raise ImportFileError(f"grade_base must be 0 or 1, got {grade_base}")
    seen_any = False
    for raw in raw_chunks(path, fmt, chunk_rows, undo_escaping=undo_export_escaping):
        seen_any = seen_any or len(raw) > 0
        yield normalise_chunk(raw, columns, scale, grade_base)
    if not seen_any:
        raise ImportFileError(f"'{path.name}' has no rows")
