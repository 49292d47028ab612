"""The layers' arrows point one way, read from the source with ``ast`` (imports inside functions too):

    app.py, pages/  ─►  db/  ─►  darl_core/        darl_app/ (CLI, worker, queue)  ─►  db/, darl_core/

``darl_core`` is the ML library: it imports no ``db``, ``pages``, ``darl_app`` or streamlit (its
``__main__`` alone forwards ``python -m darl_core`` to the CLI). ``db`` imports neither the application
layer nor the pages. Pages never reach into the application layer; ``app.py``, the composition root,
installs the queue's dispatcher and nothing else of it.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package (top-level folder, or app.py) -> top-level modules it must not import
FORBIDDEN: dict[str, set[str]] = {
    "darl_core": {"db", "pages", "darl_app", "app", "streamlit"},
    "db": {"pages", "darl_app", "app", "streamlit"},
    "darl_app": {"pages", "app", "streamlit"},
    "pages": {"darl_app", "app"},
}
ALLOWED = {("darl_core/__main__.py", "darl_app.cli"), ("app.py", "darl_app.queue")}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted([root / "app.py", *root.glob("darl_core/**/*.py"), *root.glob("db/**/*.py"),
                        *root.glob("darl_app/**/*.py"), *root.glob("pages/**/*.py")]):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        layer = rel.split("/")[0].removesuffix(".py")
        forbidden = FORBIDDEN.get(layer, {"darl_app"} if layer == "app" else set())
        for line, module in imported_modules(path):
            allowed = any(rel == a and (module == m or module.startswith(m + ".")) for a, m in ALLOWED)
            if module.split(".")[0] in forbidden and not allowed:
                found.append(f"{rel}:{line} imports {module}")
    return sorted(set(found))


def test_the_arrows_point_one_way() -> None:
    assert violations(ROOT) == []


def test_a_wrong_way_import_is_caught(tmp_path: Path) -> None:
    for folder in ("darl_core", "db/services", "pages", "darl_app"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "app.py").write_text("from darl_app import queue\nfrom darl_app.worker import run_worker\n")
    (tmp_path / "darl_core" / "model.py").write_text("def f():\n    from db.services import jobs\n")
    (tmp_path / "db" / "services" / "jobs.py").write_text("from darl_app import queue\nimport darl_app.worker\n")
    (tmp_path / "pages" / "training.py").write_text("from darl_app.job_kinds import JobContext\n")
    (tmp_path / "darl_app" / "cli.py").write_text("import streamlit as st\nfrom db.services import jobs\n")
    assert violations(tmp_path) == [
        "app.py:2 imports darl_app.worker.run_worker",
        "darl_app/cli.py:1 imports streamlit",
        "darl_core/model.py:2 imports db.services.jobs",
        "db/services/jobs.py:1 imports darl_app.queue",
        "db/services/jobs.py:2 imports darl_app.worker",
        "pages/training.py:1 imports darl_app.job_kinds.JobContext",
    ]


def test_the_job_kinds_the_database_accepts_are_those_the_worker_handles() -> None:
    from darl_app.job_kinds import known_kinds
    from db.services.jobs import JOB_KINDS

    assert known_kinds() == JOB_KINDS


@pytest.mark.parametrize(("kind", "phase"), [("map", "mapping"), ("evaluate", "evaluating"), ("select", "selecting"),
                                             ("train", None)])
def test_a_job_without_phases_of_its_own_shows_its_kind_and_the_time_left(tmp_path, kind: str,
                                                                          phase: str | None) -> None:
    from darl_app.job_kinds import JobContext

    reports: list[dict] = []
    ctx = JobContext(job_id=1, kind=kind, params={}, project_id=None, attempt=1, workdir=tmp_path,
                     report=lambda **kw: reports.append(kw) or "ok", min_interval_s=0.0)
    ctx._started = (time.monotonic() - 10.0, 0.0)  # ten seconds in
    ctx.progress(0.25, "scored 250/1,000 pairs")
    if phase is None:  # train's service names its phases (pooling, training, ...); a bare report adds none
        assert "phase" not in reports[-1]
    else:
        assert reports[-1]["phase"] == phase and reports[-1]["eta_s"] == pytest.approx(30.0, abs=1.0)
    ctx.progress(0.5, phase="pooling")  # a phase the handler names wins
    assert reports[-1]["phase"] == "pooling"
