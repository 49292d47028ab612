"""The real Home Depot pairs through the documented CLI import (skipped when the data is absent).

Checks the import's grade rule on real rater means against the dataset's own rounded ``grade``
column, the item identity by product id (titles repeat), segments, and idempotence of a re-import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from darl_core import homedepot
from db.services.exports import export_frame
from db.services.projects import get_project
from db.session import reset_engines, session_scope

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not homedepot.available(), reason="../shared/data/homedepot is not here")


def run_import(url: str, home: Path) -> subprocess.CompletedProcess:
    data = homedepot.default_dir()
    cmd = [sys.executable, "-m", "darl_core", "import", str(data / "pairs.csv"), "--project", "hd", "--create",
           "--query-column", "search_term", "--title-column", "product_title", "--grade-column", "relevance",
           "--segment-column", "query_department", "--item-id-column", "product_uid",
           "--guidelines", str(data / "guidelines.txt")]
    env = {**os.environ, "DATABASE_URL": url, "DARL_HOME": str(home)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_real_pairs_import_with_the_documented_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hd.sqlite3'}"
    first = run_import(url, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    source = pd.read_csv(homedepot.default_dir() / "pairs.csv", dtype={"product_uid": str})
    reset_engines()
    with session_scope(url) as s:
        project = get_project(s, "hd")
        guidelines = (homedepot.default_dir() / "guidelines.txt").read_text(encoding="utf-8")
        assert project.guidelines.strip() == guidelines.strip()
        out = export_frame(s, project)
    assert len(out) == source.groupby(["search_term", "product_uid"]).ngroups
    merged = out.merge(source, left_on=["query", "item_id"], right_on=["search_term", "product_uid"])
    assert len(merged) == len(source)
    expected = merged["grade_y"].map(dict(enumerate(homedepot.GRADE_NAMES, start=1)))
    assert (merged["grade_x"] == expected).all()  # the mean-rounding rule agrees with the dataset's own grade
    assert (merged["segment"] == merged["query_department"]).all()
    assert set(out["grade"]) == set(homedepot.GRADE_NAMES)
    again = run_import(url, tmp_path)
    assert again.returncode == 0 and "0 new pairs" in again.stdout and "0 new grades" in again.stdout
