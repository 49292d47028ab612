"""Issue 26.4: duplicates with different grades, ``import --on-conflict error|votes``, on SQLite and PostgreSQL.

``votes`` keeps every labelled row as a separate imported vote (majority decides, a tie goes to the lower
grade); a re-import of the same file adds nothing; a re-import whose grades for a pair differ supersedes
each standing imported vote of that pair exactly once (a new vote or an undo) and deletes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select

from darl_core.errors import ConfigError, ImportFileError
from db.models import LabelEvent, Pair, Query
from db.services import imports
from db.services.exports import export_frame
from db.services.projects import get_project
from db.services.users import SYSTEM
from db.session import session_scope
from tests.integration.test_import_export import ROOT, counts

import_file = partial(imports.import_file, actor=SYSTEM)
GRADES = ["irrelevant", "weak", "strong"]

# drill: strong, weak, strong -> strong (2 of 3); saw: strong, irrelevant -> a tie, irrelevant; lamp: weak once.
ROWS = [("drill", "Drill", "strong"), ("saw", "Saw", "strong"), ("drill", "Drill", "weak"),
        ("lamp", "Lamp", "weak"), ("saw", "Saw", "irrelevant"), ("drill", "Drill", "strong")]


def _csv(tmp: Path, name: str, rows: list[tuple[str, str, str]]) -> Path:
    path = tmp / name
    path.write_text("query,title,grade\n" + "".join(f"{q},{t},{g}\n" for q, t, g in rows), encoding="utf-8")
    return path


def _events(url: str) -> list[tuple[int, str, str, int | None, int | None]]:
    """(id, query, kind, grade, supersedes_id) of every label event, in id order."""
    with session_scope(url) as s:
        rows = s.execute(select(LabelEvent.id, Query.text, LabelEvent.kind, LabelEvent.grade, LabelEvent.supersedes_id)
                         .join(Pair, Pair.id == LabelEvent.pair_id).join(Query, Query.id == Pair.query_id)
                         .order_by(LabelEvent.id)).all()
    return [(i, q, k.value, g, sup) for i, q, k, g, sup in rows]


def _standing(events: list[tuple[int, str, str, int | None, int | None]]) -> dict[str, Counter]:
    superseded = {e[4] for e in events if e[4] is not None}
    out: dict[str, Counter] = {}
    for i, q, kind, grade, _ in events:
        if kind == "imported" and i not in superseded:
            out.setdefault(q, Counter())[GRADES[grade]] += 1  # type: ignore[index]
    return out


def _export(url: str) -> dict[str, dict]:
    with session_scope(url) as s:
        frame = export_frame(s, get_project(s, "p"))
    return {r["query"]: r for r in frame.to_dict("records")}


def test_votes_mode_keeps_each_row_as_a_vote_and_the_majority_decides(database: str, tmp_path: Path) -> None:
    path = _csv(tmp_path, "dup.csv", ROWS)
    with session_scope(database) as s:  # chunks of 2 rows: a pair's rows lie in different chunks
        summary = import_file(s, path, "p", create=True, grades=",".join(GRADES), on_conflict="votes",
                              chunk_rows=2)
    assert (summary.rows, summary.pairs_new, summary.labels_new, summary.labels_changed) == (6, 3, 6, 0)
    assert counts(database)["label_events"] == 6
    out = _export(database)
    assert (out["drill"]["grade"], out["drill"]["grade_source"], out["drill"]["vote_count"]) == ("strong", "majority", 3)
    assert out["drill"]["agreement"] == round(2 / 3, 4)
    assert sorted(v["grade"] for v in out["drill"]["votes"]) == ["strong", "strong", "weak"]
    assert {v["annotator"] for v in out["drill"]["votes"]} == {"import"}
    assert (out["saw"]["grade"], out["saw"]["vote_count"], out["saw"]["agreement"]) == ("irrelevant", 2, 0.5)  # tie
    assert (out["lamp"]["grade"], out["lamp"]["vote_count"], out["lamp"]["agreement"]) == ("weak", 1, 1.0)


def test_votes_reimport_of_the_same_file_adds_nothing(database: str, tmp_path: Path) -> None:
    path = _csv(tmp_path, "dup.csv", ROWS)
    with session_scope(database) as s:
        import_file(s, path, "p", create=True, grades=",".join(GRADES), on_conflict="votes")
    before, events = counts(database), _events(database)
    shuffled = _csv(tmp_path, "shuffled.csv", ROWS[::-1])  # the same multiset per pair in another order
    for again_path, chunk in ((path, 50_000), (shuffled, 1)):
        with session_scope(database) as s:
            again = import_file(s, again_path, "p", on_conflict="votes", chunk_rows=chunk)
        assert (again.pairs_new, again.labels_new, again.labels_changed, again.labels_withdrawn) == (0, 0, 0, 0)
        assert counts(database) == before and _events(database) == events


def test_votes_reimport_that_differs_supersedes_each_old_vote_once_and_loses_nothing(database: str,
                                                                                      tmp_path: Path) -> None:
    with session_scope(database) as s:
        import_file(s, _csv(tmp_path, "v1.csv", ROWS), "p", create=True, grades=",".join(GRADES), on_conflict="votes")
    old = _events(database)
    # drill: 3 votes -> 1 (two withdrawn); saw: 2 -> 3 (one appended); lamp: unchanged.
    v2 = [("drill", "Drill", "irrelevant"), ("saw", "Saw", "weak"), ("saw", "Saw", "weak"), ("saw", "Saw", "strong"),
          ("lamp", "Lamp", "weak")]
    with session_scope(database) as s:
        summary = import_file(s, _csv(tmp_path, "v2.csv", v2), "p", on_conflict="votes")
    assert (summary.labels_new, summary.labels_changed, summary.labels_withdrawn) == (0, 4, 2)
    events = _events(database)
    assert events[:len(old)] == old  # append-only: no old event changed or went away
    new = events[len(old):]
    old_ids = {e[0]: e for e in old}
    superseded = Counter(e[4] for e in new if e[4] is not None)
    assert set(superseded.values()) == {1}  # nothing superseded twice (the unique index would refuse it)
    assert {old_ids[i][1] for i in superseded} == {"drill", "saw"}  # lamp's vote is untouched
    assert len([i for i in superseded if old_ids[i][1] == "drill"]) == 3  # 1 new vote + 2 undo events
    assert [e[2] for e in new if e[1] == "drill"].count("undo") == 2
    assert _standing(events) == {"drill": Counter(irrelevant=1), "saw": Counter(weak=2, strong=1),
                                 "lamp": Counter(weak=1)}
    out = _export(database)
    assert (out["drill"]["grade"], out["drill"]["vote_count"]) == ("irrelevant", 1)
    assert (out["saw"]["grade"], out["saw"]["vote_count"], out["saw"]["agreement"]) == ("weak", 3, round(2 / 3, 4))
    with session_scope(database) as s:  # and the new file again: idempotent from the new state too
        again = import_file(s, _csv(tmp_path, "v2.csv", v2), "p", on_conflict="votes")
    assert (again.labels_new, again.labels_changed, again.labels_withdrawn) == (0, 0, 0)
    assert _events(database) == events


def test_error_mode_is_unchanged_and_refuses_the_conflict_with_its_row(database: str, tmp_path: Path) -> None:
    with session_scope(database) as s:
        import_file(s, _csv(tmp_path, "ok.csv", [("drill", "Drill", "strong")]), "p", create=True,
                    grades=",".join(GRADES))
    before = counts(database)
    for kwargs in ({}, {"on_conflict": "error"}):
        with pytest.raises(ImportFileError) as err, session_scope(database) as s:
            import_file(s, _csv(tmp_path, "dup.csv", ROWS), "p", **kwargs)
        assert ("row 3: the same query and item appear again with a different grade ('weak' here, 'strong' at row 1)"
                in str(err.value))
        assert "--on-conflict votes" in str(err.value)  # the message says how to import it
        assert counts(database) == before
    with pytest.raises(ConfigError, match="on_conflict must be one of error, votes, got 'vote'"), \
            session_scope(database) as s:
        import_file(s, _csv(tmp_path, "dup.csv", ROWS), "p", on_conflict="vote")
    assert counts(database) == before


def test_a_repeated_row_with_the_same_grade_is_one_grade_in_error_mode_and_two_votes_in_votes_mode(
        database: str, tmp_path: Path) -> None:
    path = _csv(tmp_path, "same.csv", [("drill", "Drill", "weak"), ("drill", "Drill", "weak")])
    with session_scope(database) as s:
        assert import_file(s, path, "p", create=True, grades=",".join(GRADES)).labels_new == 1
    assert _export(database)["drill"]["vote_count"] == 1
    with session_scope(database) as s:  # the same file as votes: the pair's one imported vote becomes two
        votes = import_file(s, path, "p", on_conflict="votes")
    assert (votes.labels_changed, votes.labels_withdrawn) == (2, 0)
    assert _export(database)["drill"]["vote_count"] == 2
    with session_scope(database) as s:  # and back in error mode: one grade again, the surplus vote withdrawn
        back = import_file(s, path, "p")
    assert (back.labels_changed, back.labels_withdrawn) == (1, 1)
    assert (_export(database)["drill"]["vote_count"], _standing(_events(database))) == (1, {"drill": Counter(weak=1)})


def test_cli_on_conflict_votes_with_a_home_depot_like_pair_rated_twice(sqlite_database: str, tmp_path: Path) -> None:
    """Home Depot's columns (rater means, product ids, titles that repeat): one search term and product
    rated twice, 3.0 and 2.33 (-> weak), and a second pair rated 1.67 and 2.67 (a tie, the lower grade)."""
    path = tmp_path / "hd.csv"
    path.write_text("id,product_uid,product_title,search_term,relevance,query_department\n"
                    "2,100001,Simpson Strong-Tie 12-Gauge Angle,angle bracket,3.0,hardware\n"
                    "3,100001,Simpson Strong-Tie 12-Gauge Angle,l bracket,2.5,other\n"
                    "9,100002,BEHR Premium 1 gal. Deck Stain,deck stain,1.67,paint\n"
                    "16,100001,Simpson Strong-Tie 12-Gauge Angle,angle bracket,2.33,hardware\n"
                    "17,100002,BEHR Premium 1 gal. Deck Stain,deck stain,2.67,paint\n"
                    "18,100001,Simpson Strong-Tie 12-Gauge Angle,angle bracket,3.0,hardware\n", encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": sqlite_database}

    def cli(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "darl_core", "import", str(path), "--project", "p", "--create",
               "--grades", ",".join(GRADES), "--query-column", "search_term", "--title-column", "product_title",
               "--grade-column", "relevance", "--segment-column", "query_department", "--item-id-column",
               "product_uid", *extra]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    refused = cli()
    assert refused.returncode == 2 and "row 4: the same query and item appear again" in refused.stderr
    assert "--on-conflict votes" in refused.stderr and counts(sqlite_database)["pairs"] == 0
    first = cli("--on-conflict", "votes")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "3 new pairs" in first.stdout and "6 new grades" in first.stdout
    again = cli("--on-conflict", "votes")
    assert again.returncode == 0 and "0 new pairs" in again.stdout and "0 new grades, 0 changed grades" in again.stdout
    assert counts(sqlite_database)["label_events"] == 6
    out = _export(sqlite_database)
    assert (out["angle bracket"]["grade"], out["angle bracket"]["vote_count"]) == ("strong", 3)
    assert sorted(v["grade"] for v in out["angle bracket"]["votes"]) == ["strong", "strong", "weak"]
    assert (out["deck stain"]["grade"], out["deck stain"]["vote_count"], out["deck stain"]["agreement"]) == (
        "weak", 2, 0.5)  # 1.67 -> weak, 2.67 -> strong: a tie goes to the lower grade
    assert (out["l bracket"]["grade"], out["l bracket"]["item_id"]) == ("strong", "100001")
