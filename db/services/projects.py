"""Projects: the ordered grade scale, guidelines and per-project settings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.errors import ConfigError, ConflictError, NotFoundError
from db.models import DEFAULT_GRADES, Pair, Project, Role, SelectionRound
from db.services.limits import check_name
from db.services.users import Actor, require_role

# Annotation settings a project starts with; see the README's "Annotation" section.
DEFAULT_SETTINGS: dict[str, Any] = {
    "overlap": 1,  # distinct annotators per pair
    "agreement_share": 0.0,  # extra share of pairs graded by two people, to measure agreement
    "lease_minutes": 10,
    "show_reasons": True,  # say on the grading card, in words, why DASA picked the pair (Selection page switch)
    "gold_share": 0.05,  # share of each annotator's cards that are gold pairs (db/services/gold.py), 0..0.5
    "annotation_mode": "card",  # card, list (a query's pairs graded as one list) or both (each annotator chooses)
    "list_size": 10,  # pairs per query list, 1..50
}


def parse_grades(spec: str | list[str] | None) -> list[str]:
    """``"a,b,c"`` (lowest first) -> ``["a", "b", "c"]``; None -> the default scale."""
    if spec is None:
        return list(DEFAULT_GRADES)
    names = [g.strip() for g in (spec.split(",") if isinstance(spec, str) else spec)]
    if len(names) < 2 or any(not n for n in names):
        raise ConfigError(f"A grade scale needs at least two non-empty names, lowest first; got {spec!r}.")
    if len(set(n.lower() for n in names)) != len(names):
        raise ConfigError(f"Grade names must be distinct; got {spec!r}.")
    return names


def create_project(session: Session, name: str, grades: list[str] | str | None = None,
                   guidelines: str = "", settings: dict[str, Any] | None = None, *, actor: Actor | None) -> Project:
    """A new project (engineer role); the name is checked for length and control characters first."""
    require_role(actor, Role.engineer)
    name = check_name(name, "Project name")
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise ConflictError(f"Project '{name}' already exists.")
    project = Project(name=name, grades=parse_grades(grades), guidelines=guidelines,
                      settings={**DEFAULT_SETTINGS, **(settings or {})})
    session.add(project)
    session.flush()
    return project


def get_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        known = ", ".join(session.scalars(select(Project.name).order_by(Project.name))) or "none yet"
        raise NotFoundError(f"No project named '{name}' (known: {known}). Import it first (the README shows how).")
    return project


def list_projects(session: Session) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


def filter_choices(session: Session, project_id: int) -> tuple[list[tuple[int, str]], list[str]]:
    """(rounds as (id, label), newest first; segments in name order): the choices of a round / segment filter."""
    rounds = [(rid, f"#{rid} {name or ''}".strip()) for rid, name in session.execute(
        select(SelectionRound.id, SelectionRound.name).where(SelectionRound.project_id == project_id)
        .order_by(SelectionRound.id.desc()))]
    segments = [s for s in session.scalars(select(Pair.segment).where(Pair.project_id == project_id)
                                           .where(Pair.segment.is_not(None)).distinct().order_by(Pair.segment))]
    return rounds, segments


def project_settings(project: Project) -> dict[str, Any]:
    return {**DEFAULT_SETTINGS, **(project.settings or {})}


def stage_base(project: Project) -> dict[str, Any]:
    """The project's part of every stage config it trains: its backbone (``model_dir``) and its grades."""
    return {"model_dir": (project.settings or {}).get("model_dir"), "num_grades": len(project.grades),
            "grade_names": list(project.grades)}


def update_settings(session: Session, project: Project, *, actor: Actor | None, **changes: Any) -> Project:
    """Change annotation settings (engineer role); unknown names are refused."""
    require_role(actor, Role.engineer)
    unknown = set(changes) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ConfigError(f"Unknown project setting(s): {', '.join(sorted(unknown))}.")
    project.settings = {**project_settings(project), **changes}
    session.flush()
    return project


def set_guidelines(session: Session, project: Project, text: str, *, actor: Actor | None) -> Project:
    """Replace the project's grading guidelines (engineer role)."""
    require_role(actor, Role.engineer)
    project.guidelines = text
    session.flush()
    return project
