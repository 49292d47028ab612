"""AppTest: the versions table (blanks, the current version marked, the name pinned) and the jobs panel
(versions by name, the last few plus every job filtered and paged, a finished job's link to what it made)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from db.models import Job, JobStatus, ModelVersion, Project, User
from db.services import jobs
from db.services.users import SYSTEM
from db.session import session_scope
from tests.app.pagetest import ROOT, page
from tests.integration.engineer_seed import seed_project


@pytest.fixture
def eng(sqlite_database: str) -> dict[str, int]:
    with session_scope(sqlite_database) as s:
        project = seed_project(s)
        lp = ModelVersion(project_id=project.id, name="lp-1", stage="lp", artifact_path="/ckpt/lp", metrics={})
        s.add(lp)
        s.flush()
        ft = ModelVersion(project_id=project.id, name="ft-1", stage="ft", artifact_path="/ckpt/ft", parent_id=lp.id,
                          metrics={"macro_f1": 0.61234}, label_snapshot={"last_event_id": 96, "train": 70, "val": 20})
        s.add(ft)
        s.flush()
        return {"eng": s.scalars(select(User).where(User.name == "eng")).one().id, "project": project.id,
                "lp": lp.id, "ft": ft.id}


def _job(url: str, project_id: int, kind: str, params: dict, status: JobStatus, result: dict | None = None) -> int:
    with session_scope(url) as s:
        job_id = jobs.enqueue(s, kind, params, project_id=project_id, actor=SYSTEM).id
        s.execute(update(Job).where(Job.id == job_id).values(status=status, result=result or {},
                                                              progress=1.0 if status == JobStatus.succeeded else 0.0))
    return job_id


def test_versions_table_has_blanks_not_none_and_pins_the_name(eng: dict[str, int]) -> None:
    at = page("training", eng["eng"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    cells = [v for row in table.itertuples(index=False) for v in row]
    assert all(isinstance(v, str) and v != "None" and v != "nan" for v in cells), cells
    assert table.loc[eng["lp"], "last_event"] == "" and table.loc[eng["lp"], "val_macro_f1"] == ""
    assert table.loc[eng["ft"], "val_macro_f1"] == "0.612"
    config = json.loads(at.dataframe[0].proto.columns)
    assert config["name"]["pinned"] is True and config["name"]["label"] == "version"
    assert "No current version" in " ".join(c.value for c in at.caption)


def test_first_trained_version_made_current_on_its_own_is_said(eng: dict[str, int], sqlite_database: str) -> None:
    with session_scope(sqlite_database) as s:
        project = s.get(Project, eng["project"])
        project.current_version_id = eng["lp"]
        project.settings = {**(project.settings or {}), "current_auto": True}
    at = page("training", eng["eng"]).run()
    assert "**lp-1** became the current version on its own" in at.info[0].value
    assert at.dataframe[0].value.loc[eng["lp"], "current"] == "★ current"
    assert at.dataframe[0].value.loc[eng["ft"], "current"] == ""
    at.button(key="make_current").click().run()  # ft-1, the last one, is picked: chosen by hand now
    assert not at.exception and not at.info
    assert "Current version: **ft-1**" in " ".join(c.value for c in at.caption)


def test_jobs_name_versions_as_the_table_does(eng: dict[str, int], sqlite_database: str) -> None:
    _job(sqlite_database, eng["project"], "evaluate", {"version_id": eng["ft"]}, JobStatus.running)
    _job(sqlite_database, eng["project"], "train", {"project": "demo", "stage": "dasa", "from_version": eng["ft"]},
         JobStatus.queued)
    at = page("training", eng["eng"]).run()
    titles = " ".join(m.value for m in at.markdown if "**Job" in m.value)
    assert "evaluate ft-1" in titles and "train dasa from ft-1" in titles
    assert f"version {eng['ft']}" not in titles


def _jobs_table(at: AppTest):  # noqa: ANN202 - a DataFrame
    return next(d.value for d in at.dataframe if "what" in d.value.columns)


def test_panel_shows_the_last_jobs_and_all_of_them_filtered_and_paged(eng: dict[str, int],
                                                                      sqlite_database: str) -> None:
    for i in range(13):
        _job(sqlite_database, eng["project"], "train", {"project": "demo", "stage": "lp"},
             JobStatus.failed if i % 2 else JobStatus.succeeded, {"version_id": eng["lp"]} if i == 0 else None)
    _job(sqlite_database, eng["project"], "evaluate", {"version_id": eng["ft"]}, JobStatus.succeeded,
         {"version_id": eng["ft"]})
    at = page("training", eng["eng"]).run()
    assert not at.exception
    cards = [m.value for m in at.markdown if "**Job" in m.value]
    assert len(cards) == 3 and "**Job 14**" in cards[0]  # the panel: the last three
    assert not [d for d in at.dataframe if "what" in d.value.columns]
    at.toggle(key="train_jobs_all").set_value(True).run()  # "Show all jobs"
    jobs_table = _jobs_table(at)
    assert jobs_table["job"].tolist() == list(range(14, 4, -1))  # the first page of all of them, newest first
    assert jobs_table["what"].iloc[0] == "evaluate ft-1" and jobs_table["result"].iloc[0] == "/gap?version=ft-1"
    assert "14 job(s) match" in " ".join(c.value for c in at.caption)
    at.multiselect(key="train_jobs_all_kinds").set_value(["train"]).run()
    at.multiselect(key="train_jobs_all_states").set_value(["failed"]).run()
    assert "6 job(s) match" in " ".join(c.value for c in at.caption)
    assert set(_jobs_table(at)["state"]) == {"failed"}
    at.multiselect(key="train_jobs_all_states").set_value([]).run()
    at.number_input(key="train_jobs_all_page").set_value(2).run()
    assert not at.exception and "13 job(s) match; showing 3 from number 11" in " ".join(c.value for c in at.caption)
    last = _jobs_table(at)
    assert last["job"].tolist() == [3, 2, 1] and last["result"].iloc[-1] == "/training?version=lp-1"


def test_a_finished_job_links_to_its_version_round_and_map(eng: dict[str, int], sqlite_database: str) -> None:
    _job(sqlite_database, eng["project"], "train", {"project": "demo", "stage": "ft"}, JobStatus.succeeded,
         {"version_id": eng["ft"], "version": "ft-1"})
    _job(sqlite_database, eng["project"], "select", {"project": "demo", "budget": 5, "version": eng["ft"]},
         JobStatus.succeeded, {"round_id": 7, "size": 5})
    _job(sqlite_database, eng["project"], "map", {"version_id": eng["lp"]}, JobStatus.succeeded, {})
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.session_state["user_id"] = eng["eng"]
    links = {}
    for name in ("training", "selection", "maps"):
        at.switch_page(f"pages/{name}.py").run()
        assert not at.exception
        links.update({link.proto.label: link.proto for link in at.get("page_link")})
    assert links["New version: ft-1"].page.endswith("training")
    assert links["Round 7: its pairs"].page.endswith("selection") and "round=7" in links["Round 7: its pairs"].query_string
    assert links["Map of lp-1"].page.endswith("maps")


def test_a_version_link_opens_that_version(eng: dict[str, int]) -> None:
    at = page("training", eng["eng"])
    at.query_params["version"] = "lp-1"  # what "New version: lp-1" links to
    at.run()
    assert not at.exception and at.selectbox(key="version_pick").value == "lp-1 (lp)"


def test_a_running_job_shows_its_phase_and_time_left(eng: dict[str, int], sqlite_database: str) -> None:
    job_id = _job(sqlite_database, eng["project"], "train", {"project": "demo", "stage": "lp"}, JobStatus.running,
                  {"phase": "pooling", "eta_s": 125.0})
    with session_scope(sqlite_database) as s:
        s.execute(update(Job).where(Job.id == job_id).values(progress=0.3))
    at = page("training", eng["eng"]).run()
    assert at.get("progress")[0].proto.text == "30% · pooling · about 2 min left"


def test_links_open_their_version_on_gap_and_maps(eng: dict[str, int], sqlite_database: str) -> None:
    from tests.app.test_engineer_pages import _evaluation

    with session_scope(sqlite_database) as s:
        for vid in (eng["lp"], eng["ft"]):
            s.get(ModelVersion, vid).metrics = {"evaluation": _evaluation(0.9, 0.6)}
    gap = page("gap", eng["eng"])
    gap.query_params["version"] = "lp-1"  # "lp-1: ID and OOD results"
    gap.run()
    assert not gap.exception and gap.selectbox(key="gap_version").value == "lp-1"
    maps = page("maps", eng["eng"])
    maps.query_params["version"] = "ft-1"  # "Map of ft-1"
    maps.run()
    assert not maps.exception and maps.selectbox(key="map_version").value.startswith("ft-1 (ft)")


def test_a_version_whose_loss_barely_fell_is_warned_in_the_table_and_when_picked(eng: dict[str, int],
                                                                                sqlite_database: str) -> None:
    text = "training barely lowered its loss (1.099 -> 1.095: it fell 0.4%, under 3%)"
    with session_scope(sqlite_database) as s:
        s.get(ModelVersion, eng["lp"]).metrics = {"warnings": [text]}
    at = page("training", eng["eng"])
    at.query_params["version"] = "lp-1"
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table.loc[eng["lp"], "warnings"] == text and table.loc[eng["ft"], "warnings"] == ""
    assert len(at.warning) == 1  # the text escaped as markdown: "->" and ":" are shown as typed
    assert at.warning[0].value.startswith("**lp-1**: training barely lowered its loss (1.099 -\\> 1.095")
    at.selectbox(key="version_pick").set_value("ft-1 (ft)").run()  # ft-1 has none of its own
    assert not at.exception and not at.warning
