"""Data-parallel stages under ``accelerate launch --multi_gpu`` (torchrun; gloo on this CPU machine).

Two processes must make the update one process makes (dropout off, so the split of a batch does not
change the random masks), write the checkpoint once, and register one model version from the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dist_stages import varied
from tiny_models import make_examples, make_tiny, seed_tiny_project  # tests/integration is on sys.path

from darl_core.model import load_checkpoint, score_pairs

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("dist_stages.py")
ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]

pytestmark = pytest.mark.skipif(not ACCELERATE.is_file(), reason="accelerate is not installed in this environment")


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    full.pop("WORLD_SIZE", None)
    proc = subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def reports(proc: subprocess.CompletedProcess) -> list[dict]:
    return sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"rank"')),
                  key=lambda r: r["rank"])


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny("bert", tmp_path_factory.mktemp("bert_nodrop"), dropout=0.0)


def test_two_processes_make_the_one_process_update(bert, tmp_path):
    one = reports(run([sys.executable, str(SCRIPT), str(bert), str(tmp_path / "one")]))
    two = reports(run(LAUNCH + [str(SCRIPT), str(bert), str(tmp_path / "two")]))
    assert [(r["rank"], r["world"]) for r in one] == [(0, 1)]
    assert [(r["rank"], r["world"]) for r in two] == [(0, 2), (1, 2)]
    assert two[0]["val_macro_f1"] == two[1]["val_macro_f1"]  # the helper read rank 0's metrics
    assert json.loads((tmp_path / "two" / "ft" / "config.json").read_text())["processes"] == 2
    assert not list((tmp_path / "two" / "ft").glob("resume*"))

    val = varied(make_examples(24, 3, 1))

    def logits(d: Path) -> np.ndarray:
        return score_pairs(load_checkpoint(d), val.queries, val.items, max_length=24).logits

    for stage in ("lp", "ft"):  # lp trains on cached features (a barrier), ft through the backbone
        np.testing.assert_allclose(logits(tmp_path / "two" / stage), logits(tmp_path / "one" / stage), atol=1e-5)
    moved = np.abs(logits(tmp_path / "one" / "ft") - logits(tmp_path / "one" / "lp")).max()
    assert moved > 1e-2  # ft really trained: the agreement above is not two copies of the parent


def test_cli_under_accelerate_registers_one_version(bert, tmp_path):
    from sqlalchemy import select

    from db.models import ModelVersion
    from db.session import reset_engines, session_scope

    url = f"sqlite:///{tmp_path / 'darl.db'}"
    env = {"DATABASE_URL": url, "DARL_HOME": str(tmp_path / "home")}
    run([sys.executable, "-m", "darl_core", "migrate"], **env)
    reset_engines()
    with session_scope(url) as session:
        seed_tiny_project(session, bert)
    proc = run(LAUNCH + ["-m", "darl_core", "train", "--project", "tiny", "--stage", "lp", "--epochs", "1",
                         "--batch-size", "16", "--max-length", "24"], **env)
    assert proc.stdout.count("version ") == 1, proc.stdout  # rank 0 reports; the helper stays quiet
    with session_scope(url) as session:
        versions = session.scalars(select(ModelVersion).where(ModelVersion.stage == "lp")).all()
        assert [v.name for v in versions] == ["lp-1"]
        assert versions[0].config["stage"] == "lp" and "val_macro_f1" in versions[0].metrics
        assert Path(versions[0].artifact_path, "model.pt").is_file()
    reset_engines()
    shutil.rmtree(tmp_path / "home", ignore_errors=True)


def test_an_interrupted_two_process_stage_resumes_to_the_same_weights(tmp_path_factory, tmp_path):
    """With dropout on, each process draws its own masks: an ft stage cancelled mid-epoch under a launch
    and resumed (every process restores its own RNG) ends where an uninterrupted launch ends."""
    bert = make_tiny("bert", tmp_path_factory.mktemp("bert_dropout"), dropout=0.1)
    run(LAUNCH + [str(SCRIPT), str(bert), str(tmp_path / "whole")])
    stopped = reports(run(LAUNCH + [str(SCRIPT), str(bert), str(tmp_path / "cut"), "3"]))
    assert [r.get("stopped") for r in stopped] == [3, 3]
    assert (tmp_path / "cut" / "ft" / "resume.pt").is_file() and (tmp_path / "cut" / "ft" / "resume.rank1.pt").is_file()
    resumed = reports(run(LAUNCH + [str(SCRIPT), str(bert), str(tmp_path / "cut")]))
    assert [r["steps"] for r in resumed] == [6, 6]
    assert not list((tmp_path / "cut" / "ft").glob("resume*"))
    val = varied(make_examples(24, 3, 1))

    def logits(d: Path) -> np.ndarray:
        return score_pairs(load_checkpoint(d), val.queries, val.items, max_length=24).logits
    np.testing.assert_allclose(logits(tmp_path / "cut" / "ft"), logits(tmp_path / "whole" / "ft"), atol=1e-6)
