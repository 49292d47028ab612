"""Grade parsing and pair-file validation (pure, no database)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from darl_core import readers
from darl_core.data import ColumnMap, parse_grade, quote, read_pairs
from darl_core.errors import ImportFileError

SCALE = ["irrelevant", "weak", "strong"]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("weak", 1), ("STRONG", 2), (" irrelevant ", 0), (1, 0), (3, 2), ("2", 1), (2.5, 2), (2.33, 1),
     (1.49, 0), ("1.67", 1), ("", -1), (None, -1), (float("nan"), -1), ("NaN", -1), (" nan ", -1),
     (np.float32("nan"), -1), (np.int64(3), 2), (1.0, 0), (3.0, 2)],
)
def test_parse_grade_rules(cell: object, expected: int) -> None:
    assert parse_grade(cell, SCALE) == expected


def test_parse_grade_zero_based() -> None:
    assert parse_grade(0, SCALE, grade_base=0) == 0
    assert parse_grade(2, SCALE, grade_base=0) == 2
    with pytest.raises(ValueError, match="outside the ratings 0..2"):
        parse_grade(3, SCALE, grade_base=0)


@pytest.mark.parametrize("cell", ["great", 0, 4, 3.6, "inf", True])
def test_parse_grade_rejects(cell: object) -> None:
    with pytest.raises(ValueError):
        parse_grade(cell, SCALE)


@pytest.mark.parametrize("cell", [0.5, "0.5", 0.99, 3.4, "3.01", "\uff13", "\uff12.5", "\u0663", {"g": 1}, [3]])
def test_parse_grade_rejects_out_of_range_means_non_ascii_digits_and_objects(cell: object) -> None:
    """0.5 is below the lowest rating 1 (not rounded up to it); full-width digits are refused like "great"."""
    with pytest.raises(ValueError, match="outside the ratings 1..3|unknown grade"):
        parse_grade(cell, SCALE)


def test_parse_grade_zero_based_range_is_checked_before_rounding() -> None:
    assert parse_grade(-0.0, SCALE, grade_base=0) == 0
    with pytest.raises(ValueError, match="outside the ratings 0..2"):
        parse_grade(-0.4, SCALE, grade_base=0)


def test_quote_cuts_a_huge_cell() -> None:
    assert quote("weak") == "'weak'"
    text = quote("x" * 10_000_000)
    assert len(text) < 250 and text.endswith("... (10,000,000 characters)")


def test_read_pairs_normalises_and_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.csv"
    path.write_text("q,t,g\n drill , Bosch Drill ,strong\ndrill,Bosch Drill,\n", encoding="utf-8")
    (chunk,) = list(read_pairs(path, SCALE, ColumnMap(query="q", title="t", grade="g")))
    assert chunk["query"].tolist() == ["drill", "drill"]
    assert chunk["grade"].tolist() == [2, -1]
    assert chunk["qkey"].nunique() == 1 and chunk["ikey"].nunique() == 1
    assert chunk["row"].tolist() == [1, 2]


def test_read_pairs_reports_row_of_bad_cell_in_later_chunk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines = ["query,title,grade"] + [f"q{i},t{i},weak" for i in range(25)] + ["q,t,superb"]
    path = tmp_path / "p.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"row 26, column 'grade': unknown grade 'superb'"):
        list(read_pairs(path, SCALE, chunk_rows=10))


def _csv(tmp_path, text: str | bytes):  # type: ignore[no-untyped-def]
    path = tmp_path / "p.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_csv_rows_count_after_the_header_skipping_blank_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _csv(tmp_path, "\ufeffquery,title,grade\r\n\r\na,A,weak\r\n   \r\nb,\"B\r\nsecond line\",\r\nc,C,7\r\n")
    with pytest.raises(ImportFileError, match=r"^row 3, column 'grade': grade '7' is outside"):
        list(read_pairs(path, SCALE))
    (chunk,) = list(read_pairs(_csv(tmp_path, "query,title\r\na,A\r\n\r\nb,\"B\rB\"\r\n"), SCALE))
    assert chunk["row"].tolist() == [1, 2] and chunk["title"].tolist() == ["A", "B\rB"]  # a quoted CR is text


def test_csv_with_a_pandas_index_column_still_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (chunk,) = list(read_pairs(_csv(tmp_path, ",query,title,grade\n0,a,A,weak\n1,b,B,\n"), SCALE))
    assert chunk["query"].tolist() == ["a", "b"] and chunk["grade"].tolist() == [1, -1]


@pytest.mark.parametrize(("text", "message"), [
    ("query,title,grade\nshift q1,shift title one,weak,3\n", "row 1: 4 fields, but the header has 3"),
    ("query,title,grade\na,A,weak\ntq3,full ti", "row 2: 2 fields, but the header has 3"),
    ('query,title,grade\na,A,weak\nb,"B,weak\n', "row 2: the file ends inside a quoted field"),
    ("query,title,grade\na,A\rB,weak\n", "row 1: a line break (a bare carriage return, CR)"),
    ("query,title\ra,A\rb,B\r", "header: a line break (a bare carriage return, CR)"),
])
def test_csv_that_pandas_would_repair_is_refused_with_the_row(tmp_path, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImportFileError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        list(read_pairs(_csv(tmp_path, text), SCALE))


def test_chunks_are_bounded_in_bytes_as_well_as_rows(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(readers, "CHUNK_BYTES", 100_000)
    rows = "".join(f"q{i},{'t' * 1_000}{i}\n" for i in range(1_000))
    chunks = list(read_pairs(_csv(tmp_path, "query,title\n" + rows), SCALE, chunk_rows=5_000))
    assert len(chunks) == 8 and max(map(len, chunks)) == 128  # cut at the first 64-row look past 100 kB
    assert [r for c in chunks for r in c["row"]] == list(range(1, 1_001))


@pytest.mark.parametrize(("bad", "message"), [('b,"B\n', "the file ends inside a quoted field"),
                                              ("b,B\rC\n", "a line break (a bare carriage return, CR)")])
def test_csv_error_far_into_the_file_names_its_row(tmp_path, bad: str, message: str) -> None:  # type: ignore[no-untyped-def]
    good = "".join(f"q{i},t{i}\n" + ("\n" if i % 7 == 0 else "") for i in range(150))  # blank lines do not count
    with pytest.raises(ImportFileError, match=f"^row 151: {re.escape(message)}"):
        list(read_pairs(_csv(tmp_path, "query,title\n" + good + bad), SCALE, chunk_rows=40))
