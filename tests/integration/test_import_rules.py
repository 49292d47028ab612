"""The import rules of issue 22 against SQLite and PostgreSQL: malformed CSV rows, control characters,
length limits and short error messages, grade parsing, apostrophes, Parquet streaming, and the CSV
export's formula escaping. Every rejected file must change nothing."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from darl_core import readers
from darl_core.errors import ImportFileError
from db.services import imports
from db.services.exports import export_frame, to_bytes, write_export
from db.services.projects import get_project
from db.services.users import SYSTEM
from db.session import session_scope
from tests.integration.test_import_export import ROOT, counts

OK = "query,title,grade\ndrill,DeWalt Drill,strong\n"

import_file = partial(imports.import_file, actor=SYSTEM)  # the CLI acts as SYSTEM too


def _file(tmp: Path, name: str, data: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


BAD = [  # (kind, file name, content, expected message)
    ("extra field shifts columns (issue 22.1)", "a.csv", "query,title,grade\nshift q1,shift title one,weak,3\n",
     "row 1: 4 fields, but the header has 3"),
    ("extra field in a later row", "b.csv", OK + "saw,Saw,weak,3\n", "row 2: 4 fields, but the header has 3"),
    ("short row", "c.csv", OK + "saw,Saw\ndrill 2,Drill,weak\n", "row 2: 2 fields, but the header has 3"),
    ("file cut mid-row", "d.csv", OK + "tq2,t2,weak\ntq3,full ti", "row 3: 2 fields, but the header has 3"),
    ("unclosed quote", "e.csv", OK + 'saw,"Saw blade,weak\nhammer,Hammer,weak\n',
     "row 2: the file ends inside a quoted field"),
    ("bare CR in an unquoted field", "f.csv", OK + "saw,Saw\rblade,weak\n",
     "row 2: a line break (a bare carriage return, CR) inside an unquoted field"),
    ("text after a closing quote", "g.csv", OK + 'saw,"Saw" blade,weak\n', "row 2: text after the closing quote"),
    ("duplicate header", "h.csv", "query,title,title\nq,t,u\n", "the header names the column 'title' twice"),
    ("NUL in a title", "i.csv", OK + "saw,Saw\x00blade,weak\n", "row 2, column 'title': control character U+0000"),
    ("ESC in a query", "j.csv", OK + "saw\x1b[31m,Saw,weak\n", "row 2, column 'query': control character U+001B"),
    ("NUL in a segment", "k.csv", "query,title,segment\nsaw,Saw,tools\x00\n",
     "row 1, column 'segment': control character U+0000"),
    ("NUL in JSONL text", "l.jsonl", _jsonl([{"query": "a", "title": "b", "text": "x\u0000y"}]),
     "row 1, column 'text': control character U+0000"),
    ("grade below the lowest rating", "m.csv", OK + "saw,Saw,0.5\n",
     "row 2, column 'grade': grade '0.5' is outside the ratings 1..3"),
    ("grade above the highest rating", "n.csv", OK + "saw,Saw,3.4\n", "row 2, column 'grade': grade '3.4' is outside"),
    ("full-width digit grade", "o.csv", OK + "saw,Saw,\uff13\n", "row 2, column 'grade': unknown grade '３'"),
    ("full-width digit grade in JSONL", "p.jsonl", _jsonl([{"query": "a", "title": "b", "grade": "\uff12"}]),
     "row 1, column 'grade': unknown grade '２'"),
    ("JSON object as a title", "q.jsonl", _jsonl([{"query": "a", "title": {"en": "Drill"}}]),
     "row 1, column 'title': a JSON object where text is expected"),
    ("JSON list as a query", "r.jsonl", _jsonl([{"query": ["a", "b"], "title": "Drill"}]),
     "row 1, column 'query': a JSON list where text is expected"),
]


@pytest.mark.parametrize(("kind", "name", "content", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_rejected_with_its_row_and_changes_nothing(database: str, tmp_path: Path, kind: str, name: str,
                                                               content: str, message: str) -> None:
    with session_scope(database) as s:  # an existing project, so "changes nothing" covers its rows too
        import_file(s, _file(tmp_path, "ok.csv", OK), "p", create=True)
    before = counts(database)
    with pytest.raises(ImportFileError) as err, session_scope(database) as s:
        import_file(s, _file(tmp_path, name, content), "p")
    assert message in str(err.value), f"{kind}: got {err.value}"
    assert counts(database) == before


def test_tab_newline_and_c1_characters_are_text(database: str, tmp_path: Path) -> None:
    path = _file(tmp_path, "ok.csv", 'query,title,text\nsaw,"Saw\tblade","line one\r\nline two\x95"\n')
    with session_scope(database) as s:
        import_file(s, path, "p", create=True)
        frame = export_frame(s, get_project(s, "p"))
    assert frame.loc[0, "title"] == "Saw\tblade" and frame.loc[0, "text"] == "line one\r\nline two\x95"


def test_error_message_quotes_at_most_200_characters_of_a_huge_cell(database: str, tmp_path: Path) -> None:
    path = _file(tmp_path, "big.jsonl", _jsonl([{"query": "a", "title": "b", "grade": "x" * 10_000_000}]))
    with pytest.raises(ImportFileError) as err, session_scope(database) as s:
        import_file(s, path, "p", create=True)
    assert "unknown grade 'xxx" in str(err.value) and "(10,000,000 characters)" in str(err.value)
    assert len(str(err.value)) < 400
    assert counts(database)["pairs"] == 0


def test_cli_prints_a_short_message_for_a_huge_cell_and_takes_the_undo_option(sqlite_database: str,
                                                                             tmp_path: Path) -> None:
    def cli(path: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "darl_core", "import", str(path), "--project", "p", "--create",
                               *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)

    bad = cli(_file(tmp_path, "big.jsonl", _jsonl([{"query": "a", "title": "b", "grade": "x" * 10_000_000}])))
    assert bad.returncode == 2 and "row 1, column 'grade': unknown grade 'xxx" in bad.stderr
    assert len(bad.stderr) < 2_000 and counts(sqlite_database)["pairs"] == 0
    good = cli(_file(tmp_path, "e.csv", "query,title\n'=1 lamp,Lamp\n"), "--undo-export-escaping")
    assert good.returncode == 0, good.stderr[-2000:]
    with session_scope(sqlite_database) as s:
        assert export_frame(s, get_project(s, "p")).loc[0, "query"] == "=1 lamp"


@pytest.mark.parametrize(("column", "limit"), [("query", 1_000), ("title", 2_000), ("segment", 100), ("split", 32),
                                               ("item_id", 200)])
def test_field_limits_are_checked_before_writing_the_same_on_both_databases(database: str, tmp_path: Path,
                                                                            column: str, limit: int) -> None:
    row = {"query": "q", "title": "t", "segment": "s", "split": "train", "item_id": "i"}
    with session_scope(database) as s:  # exactly the limit: stored whole on both databases
        import_file(s, _file(tmp_path, "ok.jsonl", _jsonl([{**row, column: "é" * limit}])), "p", create=True)
    before = counts(database)
    with pytest.raises(ImportFileError) as err, session_scope(database) as s:
        import_file(s, _file(tmp_path, "bad.jsonl", _jsonl([{**row, column: "é" * (limit + 1)}])), "p")
    assert f"row 1, column '{column}': field is {limit + 1:,} characters; the limit is {limit:,}" in str(err.value)
    assert counts(database) == before


def test_the_text_nan_and_a_parquet_nan_both_mean_unlabelled(database: str, tmp_path: Path) -> None:
    csv_path = _file(tmp_path, "nan.csv", "query,title,grade\na,A,NaN\nb,B,nan\nc,C,3\n")
    parquet_path = tmp_path / "nan.parquet"
    pd.DataFrame({"query": ["d", "e"], "title": ["D", "E"], "grade": [np.nan, 1.0]}).to_parquet(parquet_path)
    with session_scope(database) as s:
        first = import_file(s, csv_path, "p", create=True)
    with session_scope(database) as s:
        second = import_file(s, parquet_path, "p")
        frame = export_frame(s, get_project(s, "p")).set_index("query")
    assert (first.labels_new, second.labels_new) == (1, 1)
    assert frame.loc[["a", "b", "d"], "split"].tolist() == ["pool"] * 3
    assert frame.loc["c", "grade"] == "strong" and frame.loc["e", "grade"] == "irrelevant"


def test_a_leading_apostrophe_is_data_unless_asked_to_undo_export_escaping(database: str, tmp_path: Path) -> None:
    path = _file(tmp_path, "a.csv", "query,title\n'=1 lamp,'90s lamp\n")
    with session_scope(database) as s:
        import_file(s, path, "plain", create=True)
    with session_scope(database) as s:
        import_file(s, path, "undone", create=True, undo_export_escaping=True)
        plain = export_frame(s, get_project(s, "plain"))
        undone = export_frame(s, get_project(s, "undone"))
    assert (plain.loc[0, "query"], plain.loc[0, "title"]) == ("'=1 lamp", "'90s lamp")
    assert (undone.loc[0, "query"], undone.loc[0, "title"]) == ("=1 lamp", "'90s lamp")  # only escapes are undone
    with pytest.raises(ImportFileError, match="CSV files only"), session_scope(database) as s:
        import_file(s, _file(tmp_path, "a.jsonl", _jsonl([{"query": "q", "title": "t"}])), "plain",
                    undo_export_escaping=True)


def _wide_parquet(path: Path, rows: int, title_chars: int) -> None:
    titles = [f"{i:08d}" + "x" * (title_chars - 8) for i in range(rows)]
    grades = ["strong" if i % 3 else "" for i in range(rows)]
    pq.write_table(pa.table({"query": [f"q{i % 97}" for i in range(rows)], "title": titles, "grade": grades}),
                   path, row_group_size=rows, compression="zstd")


def test_parquet_is_streamed_in_batches_smaller_than_a_row_group(database: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wide.parquet"
    _wide_parquet(path, 3_000, 2_000)  # one row group of ~6 MB of titles, a few KB on disk
    monkeypatch.setattr(readers, "CHUNK_BYTES", 256 * 1024)
    staged: list[int] = []
    real = imports._stage_chunk

    def stage(session, chunk):  # type: ignore[no-untyped-def]
        staged.append(len(chunk))
        real(session, chunk)

    monkeypatch.setattr(imports, "_stage_chunk", stage)
    monkeypatch.setattr(pd.DataFrame, "to_pickle", lambda *a, **k: pytest.fail("a Parquet import spooled to disk"))
    with session_scope(database) as s:
        summary = import_file(s, path, "p", create=True)
    assert (summary.rows, summary.pairs_new, summary.labels_new) == (3_000, 3_000, 2_000)
    assert len(staged) > 10 and max(staged) <= 256 * 1024 // 2_000 + 1  # ~128 rows a batch, not the 3,000-row group
    assert counts(database)["items"] == 3_000


def test_parquet_changed_between_the_passes_is_refused(database: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.parquet"
    pd.DataFrame({"query": ["a"], "title": ["A"]}).to_parquet(path)
    real = imports.validate_file

    def validate_then_touch(*args, **kwargs):  # type: ignore[no-untyped-def]
        total = real(*args, **kwargs)
        pd.DataFrame({"query": ["a", "b"], "title": ["A", "B"]}).to_parquet(path)
        return total

    monkeypatch.setattr(imports, "validate_file", validate_then_touch)
    with pytest.raises(ImportFileError, match="changed while it was being imported"), session_scope(database) as s:
        import_file(s, path, "p", create=True)
    assert counts(database)["pairs"] == 0


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"], ids=["eq", "plus", "minus", "at", "tab", "cr"])
def test_csv_export_escapes_each_formula_start_and_jsonl_parquet_stay_raw(database: str, tmp_path: Path,
                                                                          start: str) -> None:
    body = f"{start}HYPERLINK(\"http://x\")"
    rows = [{"query": "q", "title": "T", "text": body}, {"query": "q", "title": "U", "text": f"'{start}already"},
            {"query": "q", "title": "V", "text": "'90s lamp"}]
    with session_scope(database) as s:
        import_file(s, _file(tmp_path, "in.jsonl", _jsonl(rows)), "p", create=True)
        frame = export_frame(s, get_project(s, "p"))
    cells = list(csv.DictReader(io.StringIO(to_bytes(frame, "csv").decode("utf-8"), newline="")))
    assert cells[0]["text"] == "'" + body
    assert cells[1]["text"] == f"''{start}already"  # an escaped-looking cell is escaped too: undo is exact
    assert cells[2]["text"] == "'90s lamp"
    assert json.loads(to_bytes(frame, "jsonl").decode("utf-8").splitlines()[0])["text"] == body
    assert pd.read_parquet(io.BytesIO(to_bytes(frame, "parquet")))["text"].tolist()[0] == body
    write_export(frame, tmp_path / "out.csv")
    with session_scope(database) as s:
        import_file(s, tmp_path / "out.csv", "back", create=True, undo_export_escaping=True)
        back = export_frame(s, get_project(s, "back"))
    assert back["text"].tolist() == [body, f"'{start}already", "'90s lamp"]
