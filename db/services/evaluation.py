"""Evaluating a model version on the project's labelled held-out pairs: ID (test_id) vs OOD (test_ood).

Results are stored, not recomputed by pages: ``model_versions.metrics["evaluation"]`` holds per-split
metrics, confusion matrices and reliability-diagram bins plus the ID - OOD gap; ``pair_scores``
holds each test pair's probabilities and predicted grade.

``evaluate_version_job`` keeps database transactions short (read, then score with no transaction
open, then write): a long scoring pass must not hold SQLite's write lock against the UI and the
job's own progress reports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, JobStopped
from db.models import ModelVersion, Pair, PairScore, Project, Role, utcnow
from db.services import versions
from db.services.labels import final_labels, last_event_id
from db.services.users import Actor, require_role
from db.session import is_sqlite, session_scope

ID_SPLITS = ("test_id", "test")
OOD_SPLITS = ("test_ood",)
RELIABILITY_BINS = 10
CHUNK = 256

Progress = Callable[..., None]


@dataclass
class TestSet:
    split: str
    pair_ids: list[int]
    queries: list[str]
    items: list[str]
    grades: np.ndarray


def load_test_sets(session: Session, project_id: int) -> dict[str, TestSet]:
    """The labelled pairs of the ID and OOD test splits ("id" and "ood"; empty splits are left out)."""
    from darl_core.model import item_text

    pairs = list(session.scalars(select(Pair).where(Pair.project_id == project_id,
                                                    Pair.split.in_(ID_SPLITS + OOD_SPLITS)).order_by(Pair.id)))
    labels = final_labels(session, project_id, [p.id for p in pairs])
    out: dict[str, TestSet] = {}
    for name, splits in (("id", ID_SPLITS), ("ood", OOD_SPLITS)):
        chosen = [p for p in pairs if p.split in splits and p.id in labels]
        if chosen:
            out[name] = TestSet(name, [p.id for p in chosen], [p.query.text for p in chosen],
                                [item_text(p.item.title, p.item.text) for p in chosen],
                                np.array([labels[p.id].grade for p in chosen], dtype=np.int64))
    return out


def reliability(y: np.ndarray, probs: np.ndarray, bins: int = RELIABILITY_BINS) -> dict[str, list[float]]:
    """Reliability-diagram bins of top-label confidence: mean confidence, accuracy and count per bin."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out: dict[str, list[float]] = {"lower": [], "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        sel = idx == b
        out["lower"].append(b / bins)
        out["count"].append(float(sel.sum()))
        out["confidence"].append(float(conf[sel].mean()) if sel.any() else float("nan"))
        out["accuracy"].append(float(correct[sel].mean()) if sel.any() else float("nan"))
    return out


def summarise(sets: dict[str, TestSet], probs: dict[str, np.ndarray], grades: list[str]) -> dict[str, Any]:
    """Metrics per split, confusion matrices, reliability bins and the ID - OOD report."""
    from darl_core.metrics import confusion, evaluate, id_ood_report, macro_f1_interval

    splits: dict[str, Any] = {}
    for name, ts in sets.items():
        p = probs[name]
        m = evaluate(ts.grades, p, ts.queries, grade_names=grades)
        ci = macro_f1_interval(ts.grades, p.argmax(axis=1), ts.queries, k=len(grades))
        splits[name] = {"metrics": {k: _json_float(v) for k, v in m.items()},
                        "confusion": confusion(ts.grades, p.argmax(axis=1), len(grades)).tolist(),
                        "reliability": reliability(ts.grades, p),
                        # a query-bootstrap 95% interval: on a few test queries the macro-F1 moves a lot
                        "interval": {"low": _json_float(ci["low"]), "high": _json_float(ci["high"]),
                                     "queries": ci["queries"], "level": 0.95}}
    report = {}
    if "id" in splits and "ood" in splits:
        report = {k: _json_float(v) for k, v in id_ood_report(splits["id"]["metrics"], splits["ood"]["metrics"]).items()}
    elif splits:
        only = next(iter(splits))
        report = {f"{only}_{k}": v for k, v in splits[only]["metrics"].items()}
    return {"splits": splits, "id_ood": report, "grades": grades}


def evaluate_version_job(version_id: int, progress: Progress | None = None,
                         should_stop: Callable[[], bool] | None = None, *, actor: Actor | None) -> dict[str, Any]:
    """Score ``version_id`` on the labelled test pairs, store the results (engineer role); returns the key figures."""
    from darl_core.model import load_checkpoint, load_model, score_pairs

    require_role(actor, Role.engineer)
    say = progress or (lambda *_a, **_k: None)
    with session_scope() as session:
        mv = versions.get_version(session, version_id)
        project = session.get(Project, mv.project_id)
        grades = list(project.grades)  # type: ignore[union-attr]
        sets = load_test_sets(session, mv.project_id)
        snapshot = last_event_id(session, mv.project_id)
        artifact, name = mv.artifact_path, mv.name
    if not sets:
        raise ConfigError("No labelled test pairs: evaluation needs pairs whose split is test_id (or test) "
                          "and/or test_ood, with grades (import them with a split column).")
    say(0.0, f"evaluating {name} on " + ", ".join(f"{len(s.pair_ids)} {k.upper()} pairs" for k, s in sets.items()))
    model = load_checkpoint(artifact) if artifact else load_model(num_grades=len(grades))
    total = sum(len(s.pair_ids) for s in sets.values())
    done, probs = 0, {}
    for key, ts in sets.items():
        parts = []
        for start in range(0, len(ts.pair_ids), CHUNK):
            if should_stop is not None and should_stop():

                raise JobStopped(f"evaluation of {name} stopped after {done} pairs")
            out = score_pairs(model, ts.queries[start:start + CHUNK], ts.items[start:start + CHUNK])
            parts.append(out.probs)
            done += len(out.probs)
            say(0.95 * done / total)
        probs[key] = np.concatenate(parts)
    evaluation = {**summarise(sets, probs, grades), "last_event_id": snapshot,
                  "evaluated_at": utcnow().isoformat(timespec="seconds")}
    with session_scope() as session:
        versions.store_evaluation(session, version_id, evaluation, actor=actor)
        write_pair_probs(session, version_id, sets, probs, actor=actor)
    say(1.0, "stored: " + ", ".join(f"{k} macro-F1 {v['metrics']['macro_f1']:.3f}"
                                     for k, v in evaluation["splits"].items()))
    return {k: v for k, v in evaluation["id_ood"].items() if k.endswith(("macro_f1", "ece", "n"))}


def write_pair_probs(session: Session, version_id: int, sets: dict[str, TestSet],
                     probs: dict[str, np.ndarray], *, actor: Actor | None) -> None:
    """Upsert probabilities and predicted grades only (OOD scores and map coordinates stay; engineer role)."""
    require_role(actor, Role.engineer)
    if is_sqlite(session):
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    rows = []
    for key, ts in sets.items():
        p = probs[key]
        expected = (p * np.arange(p.shape[1])).sum(axis=1)
        for i, pid in enumerate(ts.pair_ids):
            rows.append({"pair_id": pid, "model_version_id": version_id, "probs": [round(float(x), 5) for x in p[i]],
                         "expected_grade": float(expected[i]), "predicted_grade": int(p[i].argmax())})
    for s in range(0, len(rows), 5000):
        stmt = insert(PairScore).values(rows[s:s + 5000])
        session.execute(stmt.on_conflict_do_update(
            index_elements=["model_version_id", "pair_id"],
            set_={c: stmt.excluded[c] for c in ("probs", "expected_grade", "predicted_grade")}))


def gap_history(session: Session, project_id: int) -> list[dict[str, Any]]:
    """Per evaluated version (oldest first): stage, time and the stored evaluation."""
    out = []
    for mv in session.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id)
                              .order_by(ModelVersion.id)):
        ev = (mv.metrics or {}).get("evaluation")
        if ev:
            out.append({"id": mv.id, "name": mv.name, "stage": mv.stage, "created": mv.created_at,
                        "evaluation": ev, "few_queries": versions.flags({"evaluation": ev})})
    return out


def _json_float(v: float) -> float | None:
    return None if v is None or v != v else float(v)


def compare_versions(session: Session, project_id: int, a_id: int, b_id: int, *, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """Version B's macro-F1 minus version A's on each test split, with a 95% interval.

    Read from the stored ``pair_scores`` (each version's predicted grade per test pair) against the
    pairs' current final labels, on the pairs both versions scored. The interval resamples whole
    queries (``darl_core.metrics.macro_f1_difference``): it says how much the difference could move with
    another draw of test queries, not with another training run. A split neither version scored is
    reported with ``n`` 0 and no difference.
    """
    from darl_core.metrics import macro_f1_difference

    project = session.get(Project, project_id)
    names = {}
    for vid in (a_id, b_id):
        mv = session.get(ModelVersion, vid)
        if mv is None or mv.project_id != project_id:
            raise ConfigError(f"model version {vid} is not in this project")
        names[vid] = mv.name
    sets = load_test_sets(session, project_id)
    wanted = [pid for ts in sets.values() for pid in ts.pair_ids]
    predicted: dict[tuple[int, int], int] = {}
    for start in range(0, len(wanted), 5000):
        rows = session.execute(select(PairScore.model_version_id, PairScore.pair_id, PairScore.predicted_grade)
                               .where(PairScore.model_version_id.in_([a_id, b_id]),
                                      PairScore.pair_id.in_(wanted[start:start + 5000]),
                                      PairScore.predicted_grade.is_not(None)))
        predicted.update({(v, p): g for v, p, g in rows})
    out: dict[str, Any] = {"a": names[a_id], "b": names[b_id], "splits": {}}
    for name, ts in sets.items():
        both = [i for i, pid in enumerate(ts.pair_ids) if (a_id, pid) in predicted and (b_id, pid) in predicted]
        entry: dict[str, Any] = {"n": len(both), "missing": len(ts.pair_ids) - len(both)}
        if len(both) >= 2:
            pa = np.array([predicted[(a_id, ts.pair_ids[i])] for i in both])
            pb = np.array([predicted[(b_id, ts.pair_ids[i])] for i in both])
            entry.update(macro_f1_difference(ts.grades[both], pa, pb, [ts.queries[i] for i in both],
                                             k=len(project.grades), n_boot=n_boot, seed=seed))
        out["splits"][name] = entry
    return out
