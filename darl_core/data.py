"""Reading and validating pair files (CSV, JSONL, Parquet) in bounded-memory chunks.

``read_pairs`` yields normalised chunks with columns ``row, query, title, text, segment, split, grade,
qkey, ikey`` (``grade`` a 0-based index into the scale or -1 for unlabelled). Any invalid row raises
``ImportFileError`` naming the row (1-based, header excluded) and the reason; callers validate the
whole file before writing anything.

Grade rule (README, "Importing"): a grade cell may be
- a grade name of the project's scale (case-insensitive), e.g. ``weak``;
- an integer rating, 1 = lowest grade (``grade_base=1``, the default) or 0 = lowest (``grade_base=0``);
- a float mean of ratings, rounded half up to the nearest rating (2.5 -> 3, 2.33 -> 2), then as above;
- empty: the pair is unlabelled and joins the pool.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from darl_core.errors import ImportFileError

FORMATS = ("csv", "jsonl", "parquet")
MAX_QUERY = 1_000
MAX_TITLE = 2_000
MAX_TEXT = 50_000
MAX_SEGMENT = 100
MAX_SPLIT = 32
MAX_ITEM_ID = 200
CSV_ESCAPED = ("'=", "'+", "'-", "'@")  # how the exporter neutralises formula cells


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


def _raw_chunks(path: Path, fmt: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if not path.is_file():
        raise ImportFileError(f"file not found: {path}")
    try:
        if fmt == "csv":
            yield from pd.read_csv(path, chunksize=chunk_rows, dtype=object, keep_default_na=False,
                                   encoding="utf-8", encoding_errors="surrogateescape",
                                   sep="\t" if path.suffix.lower() == ".tsv" else ",")
        elif fmt == "jsonl":
            with path.open("rb") as fh:
                yield from _jsonl_chunks(fh, chunk_rows)
        else:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas().astype(object)
    except ImportFileError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ImportFileError(f"cannot read '{path.name}' as {fmt}: {str(exc).splitlines()[0][:300]}") from exc


def _jsonl_chunks(fh, chunk_rows: int) -> Iterator[pd.DataFrame]:  # type: ignore[no-untyped-def]
    import json

    rows: list[dict] = []
    for lineno, raw in enumerate(fh, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ImportFileError("text is not valid UTF-8", row=lineno) from exc
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"not a JSON object ({exc.msg})", row=lineno) from exc
        if not isinstance(obj, dict):
            raise ImportFileError("each line must be a JSON object", row=lineno)
        obj["__row__"] = lineno
        rows.append(obj)
        if len(rows) >= chunk_rows:
            yield pd.DataFrame(rows, dtype=object)
            rows = []
    if rows:
        yield pd.DataFrame(rows, dtype=object)


def sha1_keys(values: list[str]) -> list[str]:
    return [hashlib.sha1(v.encode("utf-8", "surrogatepass")).hexdigest() for v in values]


def parse_grade(value: object, scale: list[str], grade_base: int = 1) -> int:
    """A grade cell -> 0-based index, -1 when empty. Raises ValueError with the reason."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return -1
        lowered = [g.lower() for g in scale]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"unknown grade {value!r}; the scale is {', '.join(scale)} "
                             f"(or ratings {grade_base}..{grade_base + len(scale) - 1})") from None
    elif isinstance(value, bool):
        raise ValueError(f"unknown grade {value!r}")
    elif isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
    else:
        raise ValueError(f"unknown grade {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"grade {value!r} is not a finite number")
    rating = math.floor(number + 0.5)  # round half up: 2.5 -> 3, 2.33 -> 2
    index = rating - grade_base
    if not 0 <= index < len(scale):
        raise ValueError(f"grade {value!r} is outside the ratings {grade_base}..{grade_base + len(scale) - 1} "
                         f"of the scale {', '.join(scale)}")
    return index


def _cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def _unescape(text: str) -> str:
    return text[1:] if text.startswith(CSV_ESCAPED) else text


def normalise_chunk(raw: pd.DataFrame, columns: ColumnMap, scale: list[str], first_row: int, fmt: str,
                    grade_base: int = 1) -> pd.DataFrame:
    """Validate one raw chunk and return its normalised rows. ``first_row`` numbers the chunk's rows."""
    missing = [c for c in (columns.query, columns.title) if c not in raw.columns]
    if missing:
        found = ", ".join(str(c) for c in raw.columns if c != "__row__") or "none"
        raise ImportFileError(f"missing required column(s) {', '.join(missing)} (found: {found}); map yours with "
                              f"--query-column/--title-column")
    for extra in columns.attributes:
        if extra not in raw.columns:
            raise ImportFileError(f"missing attribute column '{extra}'")
    n = len(raw)
    rows = raw["__row__"].tolist() if "__row__" in raw.columns else list(range(first_row, first_row + n))

    def col(name: str) -> list[str]:
        if name not in raw.columns:
            return [""] * n
        values = [_cell_text(v) for v in raw[name].tolist()]
        return [_unescape(v) for v in values] if fmt == "csv" else values

    query, title, text = col(columns.query), col(columns.title), col(columns.text)
    segment, split, ids = col(columns.segment), col(columns.split), col(columns.item_id)
    # Column-wise checks (C-speed over a whole column); the per-row search runs only on a failure.
    for name, values, limit in ((columns.query, query, MAX_QUERY), (columns.title, title, MAX_TITLE),
                                (columns.text, text, MAX_TEXT), (columns.segment, segment, MAX_SEGMENT),
                                (columns.split, split, MAX_SPLIT), (columns.item_id, ids, MAX_ITEM_ID)):
        if n and max(map(len, values)) > limit:
            i = next(i for i, v in enumerate(values) if len(v) > limit)
            raise ImportFileError(f"field is {len(values[i]):,} characters; the limit is {limit:,}", row=rows[i],
                                  column=name)
        if _has_surrogates("".join(values)):
            i = next(i for i, v in enumerate(values) if _has_surrogates(v))
            raise ImportFileError("text is not valid UTF-8 (undecodable bytes)", row=rows[i], column=name)
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


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_pairs(path: Path, scale: list[str], columns: ColumnMap | None = None, fmt: str | None = None,
               chunk_rows: int = 50_000, grade_base: int = 1) -> Iterator[pd.DataFrame]:
    """Yield validated, normalised chunks of a pair file (see the module docstring)."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    columns = columns or ColumnMap()
    if grade_base not in (0, 1):
        raise ImportFileError(f"grade_base must be 0 or 1, got {grade_base}")
    first = 1
    seen_any = False
    for raw in _raw_chunks(path, fmt, chunk_rows):
        seen_any = seen_any or len(raw) > 0
        yield normalise_chunk(raw, columns, scale, first, fmt, grade_base)
        first += len(raw)
    if not seen_any:
        raise ImportFileError(f"'{path.name}' has no rows")
