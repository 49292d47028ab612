"""AppTest: the Export page for engineers only; labelled pairs only by default with the final-grade rule
stated; the prediction columns' source (or why they are empty) said; the preview matches the filters.
The one-click download itself is driven in Chromium (tests/e2e/test_export_e2e.py)."""

from __future__ import annotations

import io

import pandas as pd
from sqlalchemy import select

from db.models import LabelEvent, LabelKind, ModelVersion, PairScore, Project, Role
from db.services import downloads
from db.services.exports import ExportFilters
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_project, seed_user


def _seed(url: str) -> tuple[int, int, list[int]]:
    with session_scope(url) as s:
        project = seed_project(s, n_pairs=6)
        eng, ann = seed_user(s, "eve", Role.engineer), seed_user(s, "ann")
        ids = pair_ids(s, project.id)
        for pid in ids[:3]:
            s.add(LabelEvent(pair_id=pid, user_id=ann.id, kind=LabelKind.label, grade=2))
        return eng.id, ann.id, ids


def test_export_defaults_to_labelled_pairs_and_states_the_rule(sqlite_database: str) -> None:
    eng, ann, _ = _seed(sqlite_database)
    assert "needs the engineer role" in page("export", ann).run().error[0].value
    at = page("export", eng).run()
    assert not at.exception
    assert at.toggle(key="export_labelled_only").value is True
    rule = at.caption[0].value
    assert "adjudication" in rule and "tie going to the lower grade" in rule and "at least 1 vote(s)" in rule
    assert "no current model version" in at.caption[1].value
    assert not at.button  # one step: no "Prepare export" before the download
    at.toggle(key="export_preview_on").set_value(True).run()
    assert "First 3 of 3 rows" in at.caption[2].value
    assert set(at.dataframe[0].value["grade"]) == {"strong"}
    at.toggle(key="export_labelled_only").set_value(False).run()
    assert "Every pair of the selection is exported" in at.caption[0].value
    assert "First 6 of 6 rows" in at.caption[2].value


def test_prediction_note_says_where_predictions_come_from(sqlite_database: str) -> None:
    eng, _, ids = _seed(sqlite_database)
    with session_scope(sqlite_database) as s:
        project = s.scalar(select(Project))
        version = ModelVersion(project_id=project.id, name="lp-1", stage="lp", artifact_path="/x")
        s.add(version)
        s.flush()
        project.current_version_id = version.id
        user = s.get(downloads.User, eng)
        assert "lp-1 has not scored any pair yet" in downloads.prediction_note(s, user, project.id)
        s.add_all([PairScore(pair_id=pid, model_version_id=version.id, predicted_grade=1, expected_grade=1.2)
                   for pid in ids[:4]])
        s.flush()
        assert "lp-1, which has scored 4 pairs" in downloads.prediction_note(s, user, project.id)
        ready = downloads.prepare_download(s, user, project.id, ExportFilters(segment="tools", min_votes=1), "parquet")
        frame = pd.read_parquet(io.BytesIO(ready.data))
        assert ready.rows == len(frame) == 2 and set(frame["segment"]) == {"tools"} and set(frame["grade"]) == {"strong"}
        assert set(frame["predicted_grade"]) == {"weak"}
