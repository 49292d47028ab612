"""Raw readers for pair files: strict CSV, JSONL and Parquet, each yielding bounded chunks.

Every chunk is a DataFrame of object columns plus ``__row__``, the 1-based row number a message names:
CSV data rows after the header (blank lines not counted), JSONL line numbers, Parquet row index + 1.
A chunk holds at most ``chunk_rows`` rows and about ``CHUNK_BYTES`` of text, so a file of long cells (or
a small Parquet file that expands a thousandfold) never has more than one chunk's worth in memory.

CSV is read with the standard ``csv`` module rather than pandas because pandas repairs what should be
refused: a row with one field too many becomes an index (every column shifts), a short row is padded,
and a bare CR ends a row. Here every row must have exactly the header's fields, a bare CR inside an
unquoted field, an unclosed quote and text after a closing quote are errors naming the row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import BinaryIO, TextIO

import pandas as pd

from darl_core.errors import ImportFileError

CHUNK_BYTES = 2 * 2**20  # about 2 MB of cell text per chunk (a Parquet batch of 2 KB titles: ~1,000 rows)
_BLOCK = 64  # CSV rows read and checked together (a chunk may pass CHUNK_BYTES by one block)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection list: the exporter escapes these


def needs_formula_escape(text: str) -> bool:
    """A cell the CSV export prefixes with an apostrophe: it starts with a formula character, possibly after
    apostrophes (``'=1`` is escaped too, to ``''=1``, so that undoing the escape is exact)."""
    return text.lstrip("'").startswith(FORMULA_START)


def undo_export_escaping(text: str) -> str:
    """Drop the apostrophe the CSV export put before a cell (``'=1`` -> ``=1``, ``''=1`` -> ``'=1``)."""
    return text[1:] if text.startswith("'") and needs_formula_escape(text) else text


def raw_chunks(path: Path, fmt: str, chunk_rows: int, *, undo_escaping: bool = False) -> Iterator[pd.DataFrame]:
    """Yield the raw cells of a pair file in chunks (see the module docstring)."""
    if not path.is_file():
        raise ImportFileError(f"file not found: {path}")
    if undo_escaping and fmt != "csv":
        raise ImportFileError(f"undoing the export's formula escaping applies to CSV files only, not {fmt}")
    try:
        if fmt == "csv":
            yield from _csv_chunks(path, chunk_rows, "\t" if path.suffix.lower() == ".tsv" else ",",
                                   undo_escaping)
        elif fmt == "jsonl":
            with path.open("rb") as fh:
                yield from _jsonl_chunks(fh, chunk_rows)
        else:
            yield from _parquet_chunks(path, chunk_rows)
    except ImportFileError:
        raise
    except (ValueError, OSError) as exc:
        raise ImportFileError(f"cannot read '{path.name}' as {fmt}: {str(exc).splitlines()[0][:300]}") from exc


def _blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def _csv_reason(exc: csv.Error) -> str:
    msg = str(exc)
    if "new-line character" in msg:
        return ("a line break (a bare carriage return, CR) inside an unquoted field; put the field in double "
                "quotes, or save the file with LF or CRLF line endings")
    if "unexpected end of data" in msg:
        return "the file ends inside a quoted field: a quote is never closed (is the file cut short?)"
    if "field larger than field limit" in msg:
        return (f"a field is longer than {csv.field_size_limit():,} characters (more than any column allows), "
                "or a quote is never closed")
    if "expected after" in msg:
        return 'text after the closing quote of a quoted field; write a quote inside quotes as "" '
    return f"malformed CSV ({msg[:200]})"


def _csv_header(reader: Iterator[list[str]]) -> list[str] | None:
    for record in reader:
        if _blank(record):
            continue
        header = [name or f"Unnamed: {i}" for i, name in enumerate(record)]  # pandas' name for an index column
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise ImportFileError(f"the header names the column {name[:200]!r} twice; rename one of them")
            seen.add(name)
        return header
    return None


def _open_csv(path: Path) -> TextIO:
    # newline="\n": lines end at LF only, so a bare CR reaches the csv module, which refuses it in an
    # unquoted field (and keeps it inside a quoted one). surrogateescape keeps undecodable bytes for the
    # row-and-column message of the validator.
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="\n")


def _csv_chunks(path: Path, chunk_rows: int, sep: str, undo: bool) -> Iterator[pd.DataFrame]:
    with _open_csv(path) as fh:
        reader = csv.reader(fh, delimiter=sep, strict=True)
        try:
            header = _csv_header(reader)
        except csv.Error as exc:
            raise ImportFileError(f"header: {_csv_reason(exc)}") from None
        if header is None:
            return
        width = len(header)
        done = 0  # data rows already yielded
        records: list[list[str]] = []
        size = 0
        try:
            # Rows come in blocks checked with map/set at C speed: a loop over each row in Python made
            # reading a 1M-row file about 1.5x slower.
            while block := list(islice(reader, min(_BLOCK, chunk_rows - len(records)))):
                if set(map(len, block)) != {width}:  # rare: a blank line, or a row of the wrong width
                    block = _full_rows(block, width, done + len(records))
                records += block
                size += sum(map(len, chain.from_iterable(block)))
                if len(records) >= chunk_rows or size >= CHUNK_BYTES:
                    frame = _csv_frame(header, records, done + 1, undo)
                    done += len(records)
                    records, size = [], 0  # released before the caller works on the chunk
                    yield frame
        except csv.Error as exc:  # the rows of the block read before the error are gone: count again
            raise ImportFileError(_csv_reason(exc), row=_rows_before_error(path, sep, width) + 1) from None
        if records:
            yield _csv_frame(header, records, done + 1, undo)


def _full_rows(block: list[list[str]], width: int, before: int) -> list[list[str]]:
    """The block without blank lines; a row of another width than the header's is an error."""
    rows = []
    for record in block:
        if len(record) != width:
            if _blank(record):
                continue
            raise ImportFileError(
                f"{len(record)} field{'s' * (len(record) != 1)}, but the header has {width}; every row needs "
                "exactly one value per column (quote values that contain the separator)", row=before + len(rows) + 1)
        rows.append(record)
    return rows


def _rows_before_error(path: Path, sep: str, width: int) -> int:
    """How many data rows parse before the csv module's error (the error path only: it reads again)."""
    rows = -1  # the first non-blank row is the header
    with _open_csv(path) as fh:
        try:
            for record in csv.reader(fh, delimiter=sep, strict=True):
                rows += len(record) == width or not _blank(record)
        except csv.Error:
            pass
    return max(rows, 0)


def _csv_frame(header: list[str], records: list[list[str]], first_row: int, undo: bool) -> pd.DataFrame:
    columns: list[list[str]] | list[tuple[str, ...]] = list(zip(*records, strict=True))
    if undo:
        columns = [[undo_export_escaping(v) for v in col] for col in columns]
    frame = pd.DataFrame(dict(zip(header, columns, strict=True)), dtype=object)
    frame["__row__"] = range(first_row, first_row + len(records))
    return frame


def _jsonl_chunks(fh: BinaryIO, chunk_rows: int) -> Iterator[pd.DataFrame]:
    rows: list[dict] = []
    size = 0
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
        size += len(raw)
        if len(rows) >= chunk_rows or size >= CHUNK_BYTES:
            frame = pd.DataFrame(rows, dtype=object)
            rows, size = [], 0
            yield frame
    if rows:
        yield pd.DataFrame(rows, dtype=object)


def parquet_batch_rows(path: Path, chunk_rows: int) -> int:
    """Rows per Parquet batch: about CHUNK_BYTES uncompressed, so always a slice of a large row group."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    per_row = max((meta.row_group(i).total_byte_size / max(meta.row_group(i).num_rows, 1)
                   for i in range(meta.num_row_groups)), default=1.0)
    return max(1, min(chunk_rows, int(CHUNK_BYTES / max(per_row, 1.0))))


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    batch_rows = parquet_batch_rows(path, chunk_rows)
    first = 1
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        frame = batch.to_pandas().astype(object)
        frame["__row__"] = range(first, first + len(frame))
        first += len(frame)
        yield frame
