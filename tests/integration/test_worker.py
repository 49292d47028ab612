"""The worker as real processes: kill -9 mid-job, cancel, clean stop, two workers x 20 jobs exactly once.

The jobs are the built-in ``sleep`` kind (checkpointed steps) so these tests exercise the runner, not
training; DARL_JOB_STALE_S=4 makes the watchdog act in seconds.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from darl_app import queue
from db.models import Item, JobStatus, LabelEvent, LabelKind, Pair, Project, Query
from db.services import jobs
from db.services.users import SYSTEM
from db.session import session_scope
from tests.integration.worker_helpers import (
    pid_alive,
    read_record,
    redis_server,
    start_worker,
    stop,
    wait_for,
)


def _job(url: str, **params: object) -> int:
    with session_scope(url) as s:
        return jobs.enqueue(s, "sleep", params, actor=SYSTEM).id


def _get(url: str, job_id: int):  # type: ignore[no-untyped-def]
    with session_scope(url) as s:
        return jobs.get_job(s, job_id)


def _seed_labels(url: str) -> list[tuple]:
    with session_scope(url) as s:
        p = Project(name="p", grades=["irrelevant", "weak", "strong"], settings={})
        s.add(p)
        s.flush()
        for i in range(3):
            q, it = Query(project_id=p.id, key=f"q{i}", text=f"q{i}"), Item(project_id=p.id, key=f"i{i}", title=f"t{i}")
            s.add_all([q, it])
            s.flush()
            pair = Pair(project_id=p.id, query_id=q.id, item_id=it.id, split="train")
            s.add(pair)
            s.flush()
            s.add(LabelEvent(pair_id=pair.id, kind=LabelKind.imported, grade=i % 3))
    return _labels(url)


def _labels(url: str) -> list[tuple]:
    with session_scope(url) as s:
        return [tuple(r) for r in s.execute(select(LabelEvent.id, LabelEvent.pair_id, LabelEvent.grade,
                                                   LabelEvent.kind, LabelEvent.created_at).order_by(LabelEvent.id))]


def test_kill_9_mid_job_requeues_and_resumes(sqlite_database: str, tmp_path: Path) -> None:
    labels_before = _seed_labels(sqlite_database)
    record = tmp_path / "record.txt"
    job_id = _job(sqlite_database, steps=24, step_s=0.25, record=str(record))
    a = start_worker(tmp_path / "a.log")
    try:
        wait_for(lambda: len(read_record(record)) >= 4, 60, "the job to make progress")
    finally:
        a.send_signal(signal.SIGKILL)
        a.wait()
    killed_at = time.monotonic()
    child = read_record(record)[-1][3]
    wait_for(lambda: not pid_alive(child), 5, "the runner child to die with its worker")
    done_before_kill = len(read_record(record))

    b = start_worker(tmp_path / "b.log")  # the restarted (or any other) worker's watchdog takes over
    try:
        wait_for(lambda: "re-queued" in _get(sqlite_database, job_id).log, 60, "the watchdog to re-queue")
        assert time.monotonic() - killed_at < 60
        job = wait_for(lambda: (j := _get(sqlite_database, job_id)).status == JobStatus.succeeded and j, 60,
                       "the resumed job to finish")
    finally:
        assert stop(b) == 0
    assert job.attempts == 2
    assert "resumed from checkpoint" in job.log and job.result["resumed_from"] >= done_before_kill - 1
    rows = read_record(record)
    assert sorted({r[2] for r in rows}) == list(range(24))
    second = [r[2] for r in rows if r[1] == 2]
    assert second[0] > 0 and len(second) == len(set(second))  # resumed, not restarted; no step twice
    assert _labels(sqlite_database) == labels_before  # no label touched


def test_cancel_stops_within_one_step(sqlite_database: str, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    job_id = _job(sqlite_database, steps=200, step_s=0.3, record=str(record))
    w = start_worker(tmp_path / "w.log")
    try:
        wait_for(lambda: len(read_record(record)) >= 2, 60, "the job to start")
        with session_scope(sqlite_database) as s:
            jobs.request_cancel(s, job_id, actor=SYSTEM)
        at_cancel = len(read_record(record))
        job = wait_for(lambda: (j := _get(sqlite_database, job_id)).status == JobStatus.cancelled and j, 10,
                       "the job to be cancelled")
    finally:
        assert stop(w) == 0
    assert len(read_record(record)) - at_cancel <= 1
    assert job.attempts == 1 and "cancelled" in job.log


def test_sigterm_stops_the_worker_and_hands_the_job_back(sqlite_database: str, tmp_path: Path) -> None:
    record = tmp_path / "record.txt"
    job_id = _job(sqlite_database, steps=200, step_s=0.2, record=str(record))
    log = tmp_path / "cli.log"
    w = start_worker(log, cli=True)  # the command `make run` starts
    wait_for(lambda: len(read_record(record)) >= 2, 60, "the job to start")
    w.terminate()
    assert w.wait(timeout=30) == 0
    job = _get(sqlite_database, job_id)
    assert (job.status, job.attempts) == (JobStatus.queued, 0), job.log
    assert "worker stopped" in job.log
    text = log.read_text()
    assert "job(s) at a time" in text and "stopped" in text
    assert not pid_alive(read_record(record)[-1][3])


@pytest.fixture
def scale_database(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """PostgreSQL when the suite has one (the documented scale-out deployment), else SQLite."""
    from db.session import reset_engines
    from tests.conftest import PG_URL, fresh_database_url

    url = fresh_database_url("postgresql" if PG_URL else "sqlite", request, tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DARL_HOME", str(tmp_path / "home"))
    reset_engines()
    return url


def test_two_workers_run_each_of_20_jobs_exactly_once(scale_database: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale-out deployment: Redis queue, PostgreSQL, two workers, every id delivered twice."""
    database = scale_database
    with redis_server(tmp_path) as redis_url:
        monkeypatch.setenv("DARL_QUEUE_URL", redis_url)
        logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
        workers = [start_worker(p, 2) for p in logs]
        try:
            wait_for(lambda: all(p.exists() and "job(s) at a time" in p.read_text() for p in logs), 60,
                     "both workers to start")
            record = tmp_path / "record.txt"
            ids = [_job(database, steps=2, step_s=0.05, record=str(record)) for _ in range(20)]
            queue.send(ids)  # every id delivered a second time: claiming must drop the duplicates
            wait_for(lambda: _all_done(database, ids), 120, "20 jobs to finish", every=0.5)
        finally:
            assert [stop(w) for w in workers] == [0, 0]
    with session_scope(database) as s:
        done = [jobs.get_job(s, i) for i in ids]
    assert {j.status for j in done} == {JobStatus.succeeded}
    assert {j.attempts for j in done} == {1}
    runs = Counter((job, step) for job, _attempt, step, _pid in read_record(record))
    assert set(runs) == {(i, s) for i in ids for s in range(2)} and set(runs.values()) == {1}
    assert len({j.worker.split("/")[0] for j in done}) == 2, "both workers should have taken jobs"


def _all_done(url: str, ids: list[int]) -> bool:
    with session_scope(url) as s:
        return all(jobs.get_job(s, i).status in jobs.FINISHED for i in ids)


def test_train_job_registers_a_version_and_its_evaluation(sqlite_database: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The real chain on a tiny BERT: a queued lp stage -> version -> queued evaluation -> stored gap."""
    from engineer_seed import seed_project
    from tiny_models import make_tiny

    from darl_app.worker import run_worker
    from db.services import launch, versions

    monkeypatch.setenv("DARL_MODEL", str(make_tiny("bert", tmp_path / "bert")))
    with session_scope(sqlite_database) as s:
        project = seed_project(s)
        job_id = launch.launch_training(s, project, "lp", from_version=None, actor=SYSTEM,
                                        overrides={"epochs": 2.0, "batch_size": 16, "max_length": 24}).id
    assert run_worker(once=True) == 0  # runs the training job, then the evaluation it queued
    with session_scope(sqlite_database) as s:
        job = jobs.get_job(s, job_id)
        assert job.status == JobStatus.succeeded, job.log
        assert len(job.result["curve"]) >= 1 and job.result["version"] == "lp-1"
        evaluation_job = jobs.get_job(s, job.result["evaluation_job"])
        assert evaluation_job.status == JobStatus.succeeded, evaluation_job.log
        mv = versions.get_version(s, job.result["version_id"])
        assert mv.job_id == job_id
        ev = mv.metrics["evaluation"]
        assert set(ev["splits"]) == {"id", "ood"}
        assert ev["id_ood"]["gap_macro_f1"] == pytest.approx(ev["id_ood"]["id_macro_f1"] - ev["id_ood"]["ood_macro_f1"])
        assert sum(map(sum, ev["splits"]["ood"]["confusion"])) == 16
        assert sum(ev["splits"]["id"]["reliability"]["count"]) == 16
