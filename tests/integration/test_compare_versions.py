"""compare_versions on both databases: B minus A macro-F1 from stored pair scores, with its interval."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from darl_core.errors import ConfigError
from db.models import ModelVersion
from db.services import evaluation
from db.session import session_scope
from tests.integration.engineer_seed import seed_project, store_predictions


def _two_versions(url: str, ood_right: tuple[float, float], b_scores_id: bool = True) -> tuple[dict, dict]:
    """A seeded project with versions lp-1 (A) and ft-1 (B) and their stored test predictions; B's ID
    predictions only when ``b_scores_id``. Returns the ids and the test sets."""
    with session_scope(url) as s:
        project = seed_project(s)
        a = ModelVersion(project_id=project.id, name="lp-1", stage="lp", artifact_path="/ckpt/a", metrics={})
        b = ModelVersion(project_id=project.id, name="ft-1", stage="ft", artifact_path="/ckpt/b", metrics={})
        s.add_all([a, b])
        s.flush()
        sets = evaluation.load_test_sets(s, project.id)
        store_predictions(s, a.id, sets, ood_right[0])
        store_predictions(s, b.id, sets if b_scores_id else {"ood": sets["ood"]}, ood_right[1])
        return {"project": project.id, "a": a.id, "b": b.id}, sets


def test_compare_versions_reads_stored_predictions(database: str) -> None:
    ids, sets = _two_versions(database, (0.25, 1.0))
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
    ids, sets = _two_versions(database, (0.5, 0.5), b_scores_id=False)  # B was scored on the OOD pairs only
    with session_scope(database) as s:
        comp = evaluation.compare_versions(s, ids["project"], ids["a"], ids["b"], n_boot=50)
    assert comp["splits"]["id"] == {"n": 0, "missing": len(sets["id"].grades)}  # nothing to compare: no difference
    assert comp["splits"]["ood"]["n"] == len(sets["ood"].grades) and comp["splits"]["ood"]["difference"] == 0
