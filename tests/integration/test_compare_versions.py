"""compare_versions on both databases: B minus A macro-F1 from stored pair scores, with its interval."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from darl_core.errors import ConfigError
from db.models import ModelVersion
from db.services import evaluation
from db.session import session_scope
from tests.integration.engineer_seed import seed_project


def _store(session, version_id: int, sets: dict, ood_right: float) -> None:  # noqa: ANN001
    """Predictions right on every ID pair and on the first ``ood_right`` share of OOD pairs (else one up)."""
    probs = {}
    for name, ts in sets.items():
        right = np.arange(len(ts.grades)) < (ood_right if name == "ood" else 1.0) * len(ts.grades)
        pred = np.where(right, ts.grades, (ts.grades + 1) % 3)
        probs[name] = np.full((len(pred), 3), 0.1) + 0.7 * np.eye(3)[pred]
    evaluation.write_pair_probs(session, version_id, sets, probs)


def test_compare_versions_reads_stored_predictions(database: str) -> None:
    with session_scope(database) as s:
        project = seed_project(s)
        a = ModelVersion(project_id=project.id, name="lp-1", stage="lp", artifact_path="/ckpt/a", metrics={})
        b = ModelVersion(project_id=project.id, name="ft-1", stage="ft", artifact_path="/ckpt/b", metrics={})
        s.add_all([a, b])
        s.flush()
        ids = {"project": project.id, "a": a.id, "b": b.id}
        sets = evaluation.load_test_sets(s, project.id)
        _store(s, a.id, sets, 0.25)
        _store(s, b.id, sets, 1.0)
    with session_scope(database) as s:
        comp = evaluation.compare_versions(s, ids["project"], ids["a"], ids["b"], n_boot=300)
        back = evaluation.compare_versions(s, ids["project"], ids["b"], ids["a"], n_boot=300)
    assert (comp["a"], comp["b"]) == ("lp-1", "ft-1")
    ood, same = comp["splits"]["ood"], comp["splits"]["id"]
    y = sets["ood"].grades
    a_pred = np.where(np.arange(len(y)) < 0.25 * len(y), y, (y + 1) % 3)
    assert ood["difference"] == pytest.approx(1.0 - f1_score(y, a_pred, average="macro", zero_division=0))
    assert ood["n"] == len(y) and ood["missing"] == 0 and ood["low"] > 0  # B right everywhere: a clear win
    assert same["difference"] == 0 and same["low"] == same["high"] == 0  # identical ID predictions
    assert back["splits"]["ood"]["difference"] == pytest.approx(-ood["difference"])
    with session_scope(database) as s, pytest.raises(ConfigError, match="not in this project"):
        evaluation.compare_versions(s, ids["project"], ids["a"], 10_000)


def test_compare_versions_leaves_out_pairs_only_one_version_scored(database: str) -> None:
    with session_scope(database) as s:
        project = seed_project(s)
        a = ModelVersion(project_id=project.id, name="a", stage="lp", artifact_path="/ckpt/a", metrics={})
        b = ModelVersion(project_id=project.id, name="b", stage="lp", artifact_path="/ckpt/b", metrics={})
        s.add_all([a, b])
        s.flush()
        sets = evaluation.load_test_sets(s, project.id)
        _store(s, a.id, sets, 0.5)
        only_ood = {"ood": sets["ood"]}
        _store(s, b.id, only_ood, 0.5)  # b was scored on the OOD pairs only
        comp = evaluation.compare_versions(s, project.id, a.id, b.id, n_boot=50)
    assert comp["splits"]["id"] == {"n": 0, "missing": len(sets["id"].grades)}  # nothing to compare: no difference
    assert comp["splits"]["ood"]["n"] == len(sets["ood"].grades) and comp["splits"]["ood"]["difference"] == 0
