"""In a real browser, with the background worker running: an engineer launches a short lp stage on a
tiny model, watches its progress reach 100% and the new version appear in the versions table, then
computes a map of the pairs and sees it drawn; a second probe, once both are evaluated, is compared with
the first on the Gap page. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from db.models import Job, JobStatus, ModelVersion, SelectionRound
from db.session import session_scope
from tests.e2e.conftest import ARTIFACTS, login, readme_shot
from tests.integration.tiny_models import make_tiny
from tests.integration.worker_helpers import start_worker, stop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Each job starts a child process that imports torch: ~10 s on an idle 2-core machine, 30-40 s when
# other test runs share it. Generous, so a busy machine makes the test slow rather than red.
JOB_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def seed() -> Callable[[str], None]:
    """The engineer project: labelled train/val/test_id/test_ood pairs and a pool; user eng / engineer1."""
    from db.session import session_scope
    from tests.integration.engineer_seed import seed_project

    def run(url: str) -> None:
        with session_scope(url) as s:
            seed_project(s)

    return run


@pytest.fixture(scope="module")
def app_env(tmp_path_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    model = make_tiny("bert", tmp_path_factory.mktemp("tiny") / "bert")
    return {"DARL_MODEL": str(model), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def worker(app_url: str, app_db_url: str, app_home: Path, app_env: dict[str, str]) -> Iterator[Path]:
    """The background worker, as ``make run`` starts it, on the app's database, queue and DARL_HOME."""
    log = app_home / "worker.log"
    # The default stale limit (30 s), not the reliability tests' 4 s: on a busy machine a child's
    # heartbeat can lag a few seconds, and a requeue would only slow this test down.
    proc = start_worker(log, 2, cli=True, DATABASE_URL=app_db_url, DARL_HOME=str(app_home), DARL_JOB_STALE_S="30",
                        DARL_JOB_HEARTBEAT_S="1", **app_env)
    try:
        yield log
    finally:
        stop(proc)


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """Streamlit scrolls inside its main pane, so a full-page shot needs a tall window."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 1400, "height": 2000})
    page.wait_for_timeout(800)  # re-layout, and plotly's WebGL points drawn
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    page.set_viewport_size(size)


def test_engineer_trains_a_stage_and_maps_the_pairs(page, app_url: str, app_db_url: str,  # type: ignore[no-untyped-def]
                                                    worker: Path) -> None:
    # The app's first script run imports the whole stack; on a busy shared machine that can take longer
    # than login()'s expectations allow, so wait for it once here.
    page.goto(app_url)
    expect(page.get_by_role("textbox", name="User name")).to_be_attached(timeout=60_000)
    login(page, app_url, "eng", "engineer1")

    # The map first: the worker (two slots) computes it while the stage trains.
    page.get_by_role("link", name="Maps").click()
    expect(page.get_by_text("No map of base yet")).to_be_visible(timeout=20_000)
    page.get_by_role("button", name="Compute map").click()
    expect(page.get_by_text("Map job 1 queued")).to_be_visible()

    page.get_by_role("link", name="Training").click()
    expect(page.get_by_text("Launch a stage")).to_be_visible()
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_text("Job 2 queued: lp")).to_be_visible()
    try:
        expect(page.get_by_text("Job 2 · train lp")).to_contain_text("succeeded", timeout=JOB_TIMEOUT_MS)
    except AssertionError:
        pytest.fail(f"the lp job did not finish; worker log:\n{worker.read_text()[-3000:]}")
    expect(page.get_by_text("100%", exact=True).first).to_be_visible()
    expect(page.get_by_text("New version: lp-1")).to_be_visible()
    # The panel re-ran the page when the job finished, so the versions table lists the new version
    # (the grid draws on a canvas; its cells are mirrored in an accessibility table).
    table = page.get_by_test_id("stDataFrame").first
    expect(table.locator("td[role=gridcell]").get_by_text("lp-1", exact=True)).to_be_attached(timeout=10_000)
    shot(page, "training_page.png")

    page.get_by_role("link", name="Maps").click()
    try:
        expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    except AssertionError:
        pytest.fail(f"no map drawn; worker log:\n{worker.read_text()[-3000:]}")
    expect(page.get_by_text("Clusters", exact=True)).to_be_visible()
    expect(page.locator(".js-plotly-plot .legendtext").filter(has_text="OOD test (16)")).to_be_visible()
    shot(page, "maps_page.png")

    with session_scope(app_db_url) as s:
        jobs = {j.kind: j for j in s.scalars(select(Job))}
        versions = [v.name for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]
    assert (jobs["train"].status, jobs["map"].status) == (JobStatus.succeeded, JobStatus.succeeded)
    assert jobs["map"].result["points"] == 136
    assert versions == ["base", "lp-1"]

    # A second, longer probe; once both are evaluated the Gap page compares them.
    page.get_by_role("link", name="Training").click()
    expect(page.get_by_text("Launch a stage")).to_be_visible()
    page.get_by_label("Epochs", exact=True).fill("6")
    page.get_by_role("button", name="Launch").click()
    queued = page.get_by_text(re.compile(r"Job \d+ queued: lp"))
    expect(queued).to_be_visible()
    job_id = int(re.search(r"Job (\d+)", queued.inner_text()).group(1))
    deadline = time.monotonic() + 2 * JOB_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:  # the train job, then the evaluation job it queues
        with session_scope(app_db_url) as s:
            evaluated = [v.name for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id))
                         if (v.metrics or {}).get("evaluation")]
            status = s.get(Job, job_id).status
        if evaluated == ["lp-1", "lp-2"] or status in (JobStatus.failed, JobStatus.cancelled):
            break
        time.sleep(1)
    assert evaluated == ["lp-1", "lp-2"], f"job {job_id} {status}; worker log:\n{worker.read_text()[-3000:]}"
    with session_scope(app_db_url) as s:
        assert s.get(Job, job_id).params["overrides"] == {"epochs": 6.0}
    # The evaluation just finished: the jobs panel re-runs the whole page when it notices (pages/_jobs_ui.py),
    # and a navigation click that lands during that re-run is dropped, so click until the Gap page is there.
    heading = page.get_by_text("Did it help? Compare two versions")
    deadline = time.monotonic() + 20
    while True:
        page.get_by_role("link", name="Gap").click()
        try:
            expect(heading).to_be_visible(timeout=5_000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    expect(page.get_by_text(re.compile(r"macro-F1 [+-]\d\.\d{3} \(95% interval")).first).to_be_visible()
    expect(page.locator(".js-plotly-plot").nth(1)).to_be_visible()  # the gap over versions, then the comparison
    shot(page, "gap_page.png")
    readme_shot(page, "gap.png")

    # A DASA round from the Selection page: the worker embeds and selects with lp-2, the table lists it.
    page.get_by_role("link", name="Selection").click()
    expect(page.get_by_text("New DASA round")).to_be_visible(timeout=20_000)
    page.get_by_role("combobox", name="Model version").click()
    page.get_by_role("option", name="lp-2 (lp)").click()
    page.get_by_role("spinbutton", name="Budget (pairs)").fill("5")
    page.get_by_role("button", name="Select with DASA").click()
    expect(page.get_by_text(re.compile(r"Job \d+ queued: select 5 pairs"))).to_be_visible()
    table = page.get_by_test_id("stDataFrame").first
    try:
        expect(table.locator("td[role=gridcell]").get_by_text("round 1", exact=True)).to_be_attached(
            timeout=JOB_TIMEOUT_MS)
    except AssertionError:
        pytest.fail(f"no round listed; worker log:\n{worker.read_text()[-3000:]}")
    with session_scope(app_db_url) as s:
        rnd = s.scalars(select(SelectionRound)).one()
        assert rnd.params["budget"] == 5 and rnd.params["model_version"] == "lp-2"
    shot(page, "selection_page.png")
