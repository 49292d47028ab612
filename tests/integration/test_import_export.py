"""Import and export against SQLite and PostgreSQL: good files, a corpus of bad files, idempotence,
atomicity, and import -> export -> import round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from darl_core.data import ColumnMap
from darl_core.errors import ImportFileError
from db.models import Item, LabelEvent, Pair, Project, Query
from db.services import imports
from db.services.exports import ExportFilters, export_frame, write_export
from db.services.projects import get_project
from db.services.users import SYSTEM
from db.session import session_scope

# These tests are about the file rules: they import as the CLI does, as the SYSTEM actor.
import_file = partial(imports.import_file, actor=SYSTEM)

ROOT = Path(__file__).resolve().parents[2]
GOOD = pd.DataFrame({
    "query": ["cordless drill", "cordless drill", "=cmd|' /C calc'!A0", "white paint", "white paint"],
    "title": ["DeWalt 20V Drill", "Garden Hose 50 ft.", "Formula Lamp", "BEHR Ultra White 1 gal.", "Paint Roller"],
    "text": ["brushless, 2 batteries", "", "", "interior, eggshell", ""],
    "grade": ["strong", "irrelevant", "weak", "3", ""],
    "segment": ["tools", "garden", "lighting", "paint", "paint"],
})


def counts(url: str) -> dict[str, int]:
    with session_scope(url) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Project, Query, Item, Pair, LabelEvent)}


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_good_file_imports_in_every_format(database: str, tmp_path: Path, suffix: str) -> None:
    path = write(GOOD, tmp_path / f"good{suffix}")
    with session_scope(database) as s:
        summary = import_file(s, path, "p", create=True)
    assert (summary.rows, summary.pairs_new, summary.labels_new) == (5, 5, 4)
    assert summary.project_created
    c = counts(database)
    assert (c["queries"], c["items"], c["pairs"], c["label_events"]) == (3, 5, 5, 4)
    with session_scope(database) as s:
        frame = export_frame(s, get_project(s, "p"), ExportFilters())
    assert frame.set_index("title").loc["BEHR Ultra White 1 gal.", "grade"] == "strong"  # rating 3 -> strong
    assert frame.set_index("title").loc["Paint Roller", "split"] == "pool"  # unlabelled joins the pool
    assert frame.set_index("title").loc["Paint Roller", "vote_count"] == 0


def test_reimport_is_idempotent_and_a_changed_grade_is_appended_not_overwritten(database: str, tmp_path: Path) -> None:
    path = write(GOOD, tmp_path / "good.csv")
    with session_scope(database) as s:
        import_file(s, path, "p", create=True)
    before = counts(database)
    with session_scope(database) as s:
        again = import_file(s, path, "p", create=True)
    assert counts(database) == before
    assert (again.pairs_new, again.pairs_existing, again.labels_new, again.labels_changed) == (0, 5, 0, 0)
    changed = GOOD.copy()
    changed.loc[0, "grade"] = "weak"
    with session_scope(database) as s:
        third = import_file(s, write(changed, tmp_path / "changed.csv"), "p")
    assert third.labels_changed == 1
    after = counts(database)
    assert after["label_events"] == before["label_events"] + 1 and after["pairs"] == before["pairs"]
    with session_scope(database) as s:
        frame = export_frame(s, get_project(s, "p")).set_index("title")
        drill = (select(LabelEvent.grade, LabelEvent.supersedes_id).join(Pair, Pair.id == LabelEvent.pair_id)
                 .join(Item, Item.id == Pair.item_id).where(Item.title == "DeWalt 20V Drill").order_by(LabelEvent.id))
        history = s.execute(drill).all()
    assert frame.loc["DeWalt 20V Drill", "grade"] == "weak"
    assert [h[0] for h in history] == [2, 1]  # the first grade is still there...
    assert history[1][1] is not None  # ...superseded by the new event, not overwritten


def _bad_corpus(tmp: Path) -> list[tuple[str, Path, str]]:
    def csv(name: str, text: str | bytes) -> Path:
        p = tmp / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return p

    ok = "query,title,grade\ndrill,DeWalt Drill,strong\n"
    return [
        ("missing column", csv("a.csv", "title,grade\nDeWalt Drill,strong\n"), "missing required column(s) query"),
        ("unknown grade", csv("b.csv", ok + "saw,Saw,superb\n"), "row 2, column 'grade': unknown grade 'superb'"),
        ("grade out of range", csv("c.csv", ok + "saw,Saw,4\n"), "row 2, column 'grade': grade '4' is outside"),
        ("non-finite grade", csv("c2.csv", ok + "saw,Saw,inf\n"), "row 2, column 'grade': grade 'inf' is not a finite"),
        ("empty query", csv("d.csv", ok + "  ,Saw,weak\n"), "row 2, column 'query': query is empty"),
        ("empty title", csv("e.csv", ok + "saw,,weak\n"), "row 2, column 'title': item title is empty"),
        ("undecodable text", csv("f.csv", ok.encode() + b"saw,Saw \xff\xfe blade,weak\n"),
         "row 2, column 'title': text is not valid UTF-8"),
        ("oversize field", csv("g.csv", ok + "q" * 1001 + ",Saw,weak\n"), "row 2, column 'query': field is 1,001"),
        ("conflicting duplicate", csv("h.csv", ok + "saw,Saw,weak\ndrill,DeWalt Drill,irrelevant\n"),
         "row 3: the same query and item appear again with a different grade"),
        ("no rows", csv("i.csv", "query,title,grade\n"), "has no rows"),
        ("bad json line", csv("j.jsonl", '{"query": "a", "title": "b"}\n{"query": "a", \n'), "row 2: not a JSON object"),
        ("json array line", csv("k.jsonl", '["a", "b"]\n'), "row 1: each line must be a JSON object"),
        ("corrupt parquet", csv("l.parquet", b"PAR1 this is not parquet"), "cannot read 'l.parquet' as parquet"),
        ("unknown extension", csv("m.xlsx", ok), "cannot tell the format of 'm.xlsx'"),
        ("missing file", tmp / "nope.csv", "file not found"),
    ]


def test_bad_files_are_rejected_whole_with_a_message(database: str, tmp_path: Path) -> None:
    corpus = _bad_corpus(tmp_path)
    assert len(corpus) >= 10
    for kind, path, message in corpus:
        with pytest.raises(ImportFileError) as err, session_scope(database) as s:
            import_file(s, path, "p", create=True)
        assert message in str(err.value), f"{kind}: got {err.value}"
        assert counts(database) == dict.fromkeys(counts(database), 0), f"{kind} wrote rows"


def test_bad_row_after_many_good_chunks_into_existing_project_changes_nothing(database: str, tmp_path: Path) -> None:
    with session_scope(database) as s:
        import_file(s, write(GOOD, tmp_path / "good.csv"), "p", create=True)
    before = counts(database)
    rows = [f"q{i},item {i},weak" for i in range(500)] + ["q,item,7"]
    path = tmp_path / "big.csv"
    path.write_text("query,title,grade\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="row 501"), session_scope(database) as s:
        import_file(s, path, "p", chunk_rows=64)
    assert counts(database) == before


def test_failure_while_writing_rolls_back_everything(database: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"q{i},item {i},weak" for i in range(300)]
    path = tmp_path / "big.csv"
    path.write_text("query,title,grade\n" + "\n".join(rows) + "\n", encoding="utf-8")
    real = imports._merge_stage
    calls = {"n": 0}

    def flaky(session, project_id, summary):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        real(session, project_id, summary)

    monkeypatch.setattr(imports, "_merge_stage", flaky)
    with pytest.raises(RuntimeError, match="disk full"), session_scope(database) as s:
        import_file(s, path, "p", create=True, chunk_rows=100)
    assert counts(database) == dict.fromkeys(counts(database), 0)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_import_export_import_round_trip(database: str, tmp_path: Path, fmt: str) -> None:
    with session_scope(database) as s:
        import_file(s, write(GOOD, tmp_path / "good.csv"), "a", create=True)
        first = export_frame(s, get_project(s, "a"))
    out = tmp_path / f"export.{fmt}"
    write_export(first, out)
    with session_scope(database) as s:  # our CSV export escapes formulas: the import is asked to undo that
        summary = import_file(s, out, "b", create=True, undo_export_escaping=fmt == "csv")
        second = export_frame(s, get_project(s, "b"))
    assert summary.pairs_new == len(GOOD)
    cols = ["query", "title", "text", "segment", "split", "grade"]
    assert first[cols].fillna("").equals(second[cols].fillna(""))


def test_csv_export_escapes_formulas_and_loads_in_pandas(sqlite_database: str, tmp_path: Path) -> None:
    with session_scope() as s:
        import_file(s, write(GOOD, tmp_path / "good.csv"), "p", create=True)
        frame = export_frame(s, get_project(s, "p"))
    write_export(frame, tmp_path / "e.csv")
    raw = pd.read_csv(tmp_path / "e.csv", dtype=str, keep_default_na=False)
    assert "'=cmd|' /C calc'!A0" in raw["query"].tolist()
    assert not any(v.startswith(("=", "+", "-", "@")) for col in raw.columns for v in raw[col])
    write_export(frame, tmp_path / "e.jsonl")
    first = json.loads((tmp_path / "e.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["votes"] == [{"annotator": "import", "grade": "strong"}]
    write_export(frame, tmp_path / "e.parquet")
    assert len(pd.read_parquet(tmp_path / "e.parquet")) == len(GOOD)


def test_export_filters(sqlite_database: str, tmp_path: Path) -> None:
    with session_scope() as s:
        import_file(s, write(GOOD, tmp_path / "good.csv"), "p", create=True)
        project = get_project(s, "p")
        assert set(export_frame(s, project, ExportFilters(segment="paint"))["segment"]) == {"paint"}
        assert len(export_frame(s, project, ExportFilters(labelled_only=True))) == 4
        assert len(export_frame(s, project, ExportFilters(min_votes=2))) == 0


def test_column_mapping_and_item_ids_keep_same_titles_apart(sqlite_database: str, tmp_path: Path) -> None:
    frame = pd.DataFrame({"search_term": ["lamp", "lamp"], "product_title": ["Lamp", "Lamp"],
                          "relevance": [3.0, 1.33], "product_uid": [1, 2], "dept": ["l", "l"]})
    with session_scope() as s:
        summary = import_file(s, write(frame, tmp_path / "hd.csv"), "p", create=True,
                              columns=ColumnMap(query="search_term", title="product_title", grade="relevance",
                                                segment="dept", item_id="product_uid"))
    assert summary.pairs_new == 2 and summary.labels_new == 2


def test_cli_import_rejects_bad_file_with_exit_code(sqlite_database: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("query,title,grade\ndrill,Drill,superb\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "darl_core", "import", str(bad), "--project", "p", "--create"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "row 1, column 'grade': unknown grade 'superb'" in run.stderr
    assert counts(sqlite_database)["pairs"] == 0
