"""Grade parsing and pair-file validation (pure, no database)."""

from __future__ import annotations

import pytest

from darl_core.data import ColumnMap, parse_grade, read_pairs
from darl_core.errors import ImportFileError

SCALE = ["irrelevant", "weak", "strong"]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("weak", 1), ("STRONG", 2), (" irrelevant ", 0), (1, 0), (3, 2), ("2", 1), (2.5, 2), (2.33, 1),
     (1.49, 0), ("1.67", 1), ("", -1), (None, -1), (float("nan"), -1)],
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
