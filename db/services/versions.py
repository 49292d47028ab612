"""Model versions: listing with metrics, lineage, the project's current version, stored evaluations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.errors import ConflictError, NotFoundError
from db.models import ModelVersion, Project, Role
from db.services.users import Actor, require_role

# A figure computed on fewer queries than this is flagged (versions table, Gap page) with its query-bootstrap
# interval. Measured (bench/few_queries.py, bench/results/few_queries.json): on random query subsets of the
# Home Depot test splits, the median 95% interval of macro-F1 is +-10.7 / +-9.7 points (test_id / test_ood)
# at 30 queries, +-6.0 / +-4.7 at 200 and +-5.0 / +-3.8 at 300; 300 is the first count at which both are
# within 5 points (about the pipeline's mean gain over ce), the gain a figure must be able to show.
FEW_QUERIES = 300


def get_version(session: Session, version_id: int) -> ModelVersion:
    mv = session.get(ModelVersion, version_id)
    if mv is None:
        raise NotFoundError(f"No model version with id {version_id}.")
    return mv


def list_versions(session: Session, project_id: int) -> list[ModelVersion]:
    """Oldest first (the order in which they were trained)."""
    return list(session.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id)
                                .order_by(ModelVersion.id)))


# The version a stage starts from when none is picked: the newest of these stages (dasa and dpo first try the
# project's current version).
DEFAULT_PARENT = {"ft": ("lp",), "wi": ("ft",), "dasa": ("dpo", "dasa", "wi", "ft"), "dpo": ("dasa", "wi", "ft")}


def default_parent(session: Session, project: Project, stage: str) -> ModelVersion | None:
    """The version ``stage`` starts from when none is picked; None for lp, or when the project has none."""
    if stage not in DEFAULT_PARENT:
        return None
    if stage in ("dasa", "dpo") and project.current_version_id:
        current = session.get(ModelVersion, project.current_version_id)
        if current is not None and current.artifact_path and current.stage in DEFAULT_PARENT[stage]:
            return current  # a fine-tuned current version; an lp one (the first, made current on its own) is not
    for wanted in DEFAULT_PARENT[stage]:  # in order of preference, the newest of each
        found = session.scalar(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                                          ModelVersion.stage == wanted)
                               .order_by(ModelVersion.id.desc()).limit(1))
        if found is not None:
            return found
    return None


def lineage(session: Session, version_id: int) -> list[ModelVersion]:
    """The version and its ancestors, newest first (stops on a cycle, which the schema cannot forbid)."""
    chain: list[ModelVersion] = []
    seen: set[int] = set()
    mv: ModelVersion | None = get_version(session, version_id)
    while mv is not None and mv.id not in seen:
        chain.append(mv)
        seen.add(mv.id)
        mv = session.get(ModelVersion, mv.parent_id) if mv.parent_id else None
    return chain


def make_current(session: Session, project_id: int, version_id: int, actor: Actor | None) -> Project:
    """Use this version for selection and scoring from now on (engineer role)."""
    require_role(actor, Role.engineer)
    mv = get_version(session, version_id)
    if mv.project_id != project_id:
        raise ConflictError(f"Version {mv.name} belongs to another project.")
    if mv.stage != "base" and not mv.artifact_path:
        raise ConflictError(f"Version {mv.name} has no checkpoint; it cannot be made current.")
    project = session.get(Project, project_id)
    if project is None:
        raise NotFoundError(f"No project with id {project_id}.")
    project.current_version_id = mv.id
    project.settings = {k: v for k, v in (project.settings or {}).items() if k != AUTO_CURRENT}
    session.flush()
    return project


# A project setting: True while the current version is the one training picked on its own (the page says so).
AUTO_CURRENT = "current_auto"


def version_names(session: Session, project_id: int) -> dict[int, str]:
    """Version id -> name, the one name a version goes by on every page."""
    return dict(session.execute(select(ModelVersion.id, ModelVersion.name)
                                .where(ModelVersion.project_id == project_id)).all())


def store_evaluation(session: Session, version_id: int, evaluation: dict[str, Any], *,
                     actor: Actor | None) -> ModelVersion:
    """Keep an evaluation under ``metrics["evaluation"]`` (other metrics, e.g. validation, stay)."""
    require_role(actor, Role.engineer)
    mv = get_version(session, version_id)
    mv.metrics = {**(mv.metrics or {}), "evaluation": evaluation}
    session.flush()
    return mv


def version_rows(session: Session, project_id: int) -> list[dict[str, Any]]:
    """One row per version for the versions table: lineage, label snapshot, key metrics, current flag."""
    project = session.get(Project, project_id)
    versions = list_versions(session, project_id)
    names = {v.id: v.name for v in versions}
    rows = []
    for v in versions:
        ev = (v.metrics or {}).get("evaluation") or {}
        gap = ev.get("id_ood") or {}
        snap = v.label_snapshot or {}
        fig = figures(v.metrics or {})
        rows.append({
            "id": v.id, "name": v.name, "stage": v.stage, "current": project is not None
            and project.current_version_id == v.id, "parent": names.get(v.parent_id, "") if v.parent_id else "",
            "labels": _snapshot_labels(snap), "last_event": snap.get("last_event_id"),
            "val_macro_f1": _first(v.metrics or {}, "macro_f1", "val_macro_f1"),
            "id_macro_f1": gap.get("id_macro_f1"), "ood_macro_f1": gap.get("ood_macro_f1"),
            "gap_macro_f1": gap.get("gap_macro_f1"), "id_ece": gap.get("id_ece"), "ood_ece": gap.get("ood_ece"),
            # dasa/dpo with a holdout: macro-F1 on the new (mostly shifted) labels the stage did not train on
            "holdout_macro_f1": _first(v.metrics or {}, "holdout_macro_f1"),
            "val_queries": _first(v.metrics or {}, "val_queries"),
            **{f"{name}_interval": _interval(fig[name]) if name in fig else None for name in ("val", "id", "ood")},
            "few_queries": "; ".join(flags(v.metrics or {})),
            "warnings": "; ".join((v.metrics or {}).get("warnings") or []),  # e.g. a stage that learned nothing
            "job": v.job_id, "created": v.created_at,
        })
    return rows


def figures(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each stored macro-F1 with its query count and interval: val and holdout (the stage's, out of fold)
    and the evaluated test splits (id, ood). Figures stored before intervals existed are left out."""
    out: dict[str, dict[str, Any]] = {}
    for name in ("val", "holdout"):
        if isinstance(metrics.get(f"{name}_queries"), int | float):
            out[name] = {"macro_f1": metrics.get(f"{name}_macro_f1"), "queries": int(metrics[f"{name}_queries"]),
                         "low": metrics.get(f"{name}_macro_f1_low"), "high": metrics.get(f"{name}_macro_f1_high")}
    for split, data in ((metrics.get("evaluation") or {}).get("splits") or {}).items():
        if data.get("interval"):
            out[split] = {"macro_f1": (data.get("metrics") or {}).get("macro_f1"), **data["interval"]}
    return out


def flags(metrics: dict[str, Any]) -> list[str]:
    """'val: 5 queries < 300, macro-F1 0.412 [0.301, 0.533]' for each figure on fewer than FEW_QUERIES queries."""
    return [f"{name}: {f['queries']} queries < {FEW_QUERIES}, macro-F1 {_num(f['macro_f1'])} {_interval(f)}"
            for name, f in figures(metrics).items() if f["queries"] < FEW_QUERIES]


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) and v == v else "n/a"


def _interval(f: dict[str, Any]) -> str:
    return f"[{_num(f.get('low'))}, {_num(f.get('high'))}]"


def _snapshot_labels(snap: dict[str, Any]) -> int | None:
    """Labelled pairs a version trained and validated on (train_stage's snapshot: train + val + new)."""
    parts = [snap[k] for k in ("train", "val", "new") if isinstance(snap.get(k), int)]
    return sum(parts) if parts else None


def _first(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if isinstance(d.get(k), int | float):
            return d[k]
    return None
