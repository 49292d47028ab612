"""AppTest: the export page prepares a filtered download for engineers only."""

from __future__ import annotations

import io

import pandas as pd

from db.models import LabelEvent, LabelKind, Role
from db.session import session_scope
from tests.app.pagetest import page
from tests.seed import pair_ids, seed_project, seed_user


def test_export_preview_and_download(sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        project = seed_project(s, n_pairs=6)
        eng, ann = seed_user(s, "eve", Role.engineer), seed_user(s, "ann")
        for pid in pair_ids(s, project.id)[:3]:
            s.add(LabelEvent(pair_id=pid, user_id=ann.id, kind=LabelKind.label, grade=2))
    assert "needs the engineer role" in page("export", ann.id).run().error[0].value
    at = page("export", eng.id).run()
    at.selectbox(key="export_segment").set_value("tools")
    at.number_input(key="export_min_votes").set_value(1)
    at.radio(key="export_format").set_value("parquet")
    at.button[0].click().run()
    assert not at.exception
    ready = at.session_state["export_ready"]
    frame = pd.read_parquet(io.BytesIO(ready.data))
    assert ready.rows == len(frame) == 2 and set(frame["segment"]) == {"tools"} and set(frame["grade"]) == {"strong"}
    assert "2 rows" in at.caption[0].value
