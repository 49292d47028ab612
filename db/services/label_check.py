"""The label check: likely-mislabelled pairs of a project, stored per pair for review (issue 23 §1-2).

``run_label_check`` is the whole job (CLI ``check-labels`` and the ``check_labels`` job call it): embed
every labelled pair with a model version (the embedding cache of maps and selection, so pairs already
embedded cost nothing; ``None``: the pretrained backbone), cross-fit a grade head on the frozen
embeddings with folds grouped by query, rank the labels with cleanlab (``darl_core.label_issues``),
and write one ``label_checks`` row plus one ``label_check_items`` row per pair.

Rules the service keeps:
- every labelled pair of the project is checked, whatever its split: a wrong test label misleads as
  much as a wrong training label. With a trained version, the pairs it trained on have embeddings
  shaped by their own labels: the pretrained backbone (the default when no version is current) is
  the unbiased choice;
- the suspects are the top ``n`` by quality, ``n`` being cleanlab's estimate of the wrong labels;
- a confirmed label is not suspected again: a pair that an earlier check suspected and a reviewer then
  adjudicated (an adjudication after that check's last label event) to the grade the check saw, and
  whose grade still stands, is stored with ``suspect = False`` and says so in its reason;
- the check writes at the end only (the job releases SQLite's lock while it computes);
- ``refit=True`` swaps the frozen-embedding head for K fine-tunes of the ``ce`` baseline (the project's
  backbone and settings, ``refit_overrides`` on top), one per fold (``label_issues.refit_probs``); the
  folds' checkpoints are deleted once the check is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from darl_core.config import StageConfig
from darl_core.errors import ConfigError, NotFoundError
from db.models import Job, LabelCheck, LabelCheckItem, LabelEvent, LabelKind, Pair, Project, Role
from db.services import jobs
from db.services.labels import final_labels, last_event_id
from db.services.projects import get_project, stage_base
from db.services.users import Actor, require_role

if TYPE_CHECKING:
    from darl_core.training import Examples, Suspicion

Progress = Callable[[float, str], None]
METHODS = ("ordinal", "cleanlab")


@dataclass(frozen=True)
class Suspect:
    """A suspected label as the CLI and the Review page show it."""
    pair_id: int
    rank: int
    label: int
    model_grade: int
    model_prob: float
    label_prob: float
    quality: float
    reason: str


def _check_params(method: str, folds: int) -> None:
    if method not in METHODS:
        raise ConfigError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}.")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 20:
        raise ConfigError(f"`folds` must be 2..20, got {folds!r}.")


def _refit_config(project: Project, overrides: dict[str, Any] | None = None) -> StageConfig:
    """The fine-tune a refit check runs per fold: the ``ce`` baseline with the project's backbone and
    grades, ``overrides`` (StageConfig fields) on top; a bad field raises ConfigError naming it."""
    from darl_core.config import stage_config

    return stage_config("ce", stage_base(project), overrides or {})


def _labelled_pairs(session: Session, project_id: int, labels: dict[int, Any]) -> tuple[list[int], list[int],
                                                                                       list[str], list[str]]:
    """(pair ids, query ids, query texts, item texts) of the labelled pairs, in pair order."""
    from darl_core.model import item_text

    ids, groups, queries, items = [], [], [], []
    for pair in session.scalars(select(Pair).where(Pair.project_id == project_id).order_by(Pair.id)
                                .execution_options(yield_per=5000)):
        if pair.id in labels:
            ids.append(pair.id)
            groups.append(pair.query_id)
            queries.append(pair.query.text)
            items.append(item_text(pair.item.title, pair.item.text))
    return ids, groups, queries, items


def _confirmed(session: Session, project_id: int, labels: dict[int, Any]) -> dict[int, int]:
    """Pair id -> the check whose suspicion a reviewer confirmed (adjudicated after it, to the grade it saw)."""
    rows = session.execute(
        select(LabelCheckItem.pair_id, LabelCheck.id, LabelCheckItem.label)
        .join(LabelCheck, LabelCheck.id == LabelCheckItem.check_id)
        .join(LabelEvent, LabelEvent.pair_id == LabelCheckItem.pair_id)
        .where(LabelCheck.project_id == project_id, LabelCheckItem.suspect.is_(True),
               LabelEvent.kind == LabelKind.adjudication, LabelEvent.id > LabelCheck.last_event_id,
               LabelEvent.grade == LabelCheckItem.label))
    return {pid: cid for pid, cid, label in rows if pid in labels and labels[pid].grade == label}


def _refit(session: Session, project: Project, config: StageConfig, data: Examples, groups: np.ndarray, *,
           folds: int, seed: int, say: Progress, should_stop: Callable[[], bool] | None) -> np.ndarray:
    """Out-of-fold probabilities from ``folds`` fine-tunes; their checkpoints live under DARL_HOME while
    the check runs (a retried job resumes the finished folds) and are removed afterwards."""
    import hashlib
    import json
    import shutil

    from darl_core.label_issues import refit_probs
    from darl_core.settings import darl_home
    from db.session import is_sqlite

    key = hashlib.sha1(json.dumps([config.to_dict(), folds, seed, len(data), data.queries[:1], data.grades.tolist()],
                                  sort_keys=True, default=str).encode()).hexdigest()[:12]
    work = darl_home() / "label_checks" / f"project{project.id}" / f"refit-{key}"
    say(0.0, f"refitting the ce baseline on {folds} query-grouped folds of {len(data):,} labelled pairs")
    if is_sqlite(session) and session.in_transaction():
        session.commit()  # only read so far: minutes of training must not hold SQLite's write lock
    probs = refit_probs(data, groups, config.num_grades, config, work, folds=folds, seed=seed,
                        progress=lambda f, m: say(0.9 * f, m), should_stop=should_stop)
    shutil.rmtree(work, ignore_errors=True)
    return probs


def run_label_check(session: Session, project_name: str, version: str | int | None = None,
                    progress: Progress | None = None, *, method: str = "ordinal", folds: int = 5, seed: int = 0,
                    refit: bool = False, refit_overrides: dict[str, Any] | None = None,
                    should_stop: Callable[[], bool] | None = None, created_by: int | None = None,
                    job_id: int | None = None, actor: Actor | None) -> LabelCheck:
    """Check every labelled pair of a project (engineer role); returns the stored check."""
    from darl_core.embeddings import EmbeddingCache, embed_cached, lazy_compute
    from darl_core.label_issues import out_of_fold_probs, rank_issues, reason
    from darl_core.training import Examples
    from db.services.rounds import embedding_key, resolve_version

    require_role(actor, Role.engineer)
    _check_params(method, folds)
    say = progress or (lambda _f, _m: None)
    project = get_project(session, project_name)
    grades = list(project.grades)
    config = _refit_config(project, refit_overrides) if refit else None  # a bad override fails before any work
    mv = resolve_version(session, project.id, version, actor=actor)
    labels = final_labels(session, project.id)
    seen = last_event_id(session, project.id)
    ids, groups, queries, items = _labelled_pairs(session, project.id, labels)
    if len(ids) < 2 * folds:
        raise ConfigError(f"project '{project_name}' has {len(ids)} labelled pair(s); a {folds}-fold label check "
                          f"needs at least {2 * folds}: label more pairs, or lower `folds`")
    y = np.array([labels[i].grade for i in ids])
    params: dict[str, Any] = {"folds": folds, "seed": seed, "model_version": mv.name}
    if config is not None:
        probs = _refit(session, project, config, Examples(queries, items, y), np.array(groups), folds=folds, seed=seed,
                       say=say, should_stop=should_stop)
        params["refit"] = {"stage": "ce", "epochs": config.epochs, "tuning": config.tuning,
                           "train_layers": config.train_layers, "overrides": dict(refit_overrides or {})}
        params["model_version"] = f"ce refit per fold ({config.tuning}, {config.epochs:g} epochs)"
    else:
        say(0.0, f"embedding {len(ids):,} labelled pairs ({mv.name})")

        def tick(done: int, total: int) -> None:
            say(0.8 * done / max(total, 1), f"embedded {done:,}/{total:,} pairs")
        emb, _ = embed_cached(EmbeddingCache(embedding_key(mv)), ids, queries, items,
                              lazy_compute(mv.artifact_path), progress=tick)
        say(0.8, f"cross-fitting the grade head ({folds} folds grouped by query)")
        probs = out_of_fold_probs(emb, y, np.array(groups), len(grades), folds=folds, seed=seed)
    found = rank_issues(y, probs, method=method)
    params["n_issues"] = found.n_issues
    confirmed = _confirmed(session, project.id, labels)
    say(0.95, "writing the check")
    check = LabelCheck(project_id=project.id, model_version_id=mv.id, method=method, last_event_id=seen,
                       params=params,
                       pairs=len(ids), job_id=job_id, created_by=created_by)
    session.add(check)
    session.flush()
    rows = []
    for i, pid in enumerate(ids):
        suspect = bool(found.suspect[i]) and pid not in confirmed
        why = reason(int(y[i]), int(found.model_grade[i]), float(found.model_prob[i]), float(found.label_prob[i]),
                     float(found.expected[i]), grades)
        if bool(found.suspect[i]) and pid in confirmed:
            why += f"; confirmed by a reviewer after check {confirmed[pid]}, not suspected again"
        rows.append({"check_id": check.id, "pair_id": pid, "label": int(y[i]), "model_grade": int(found.model_grade[i]),
                     "model_prob": float(found.model_prob[i]), "label_prob": float(found.label_prob[i]),
                     "expected_grade": float(found.expected[i]), "quality": float(found.quality[i]),
                     "rank": int(found.rank[i]), "suspect": suspect, "reason": why})
    for s in range(0, len(rows), 5000):
        session.execute(LabelCheckItem.__table__.insert(), rows[s:s + 5000])
    check.suspects = sum(r["suspect"] for r in rows)
    session.flush()
    say(1.0, f"label check {check.id}: {check.suspects} suspect(s) among {len(ids):,} labelled pairs")
    return check


def launch_label_check(session: Session, project: Project, *, version: int | None, method: str = "ordinal",
                       refit: bool = False, refit_overrides: dict[str, Any] | None = None,
                       actor: Actor | None) -> Job:
    """Queue a label check of the project (engineer role), its parameters checked first (a refit's
    overrides too: a bad field is refused here, not minutes later in the worker)."""
    require_role(actor, Role.engineer)
    _check_params(method, 5)
    params: dict[str, Any] = {"project": project.name, "version": version, "method": method, "created_by": actor.id}
    if refit:
        _refit_config(project, refit_overrides)
        params.update(refit=True, refit_overrides=dict(refit_overrides or {}))
    return jobs.enqueue(session, "check_labels", params, project_id=project.id, actor=actor)


def latest_check(session: Session, project_id: int) -> LabelCheck | None:
    """The project's most recent label check, or None before the first."""
    return session.scalar(select(LabelCheck).where(LabelCheck.project_id == project_id)
                          .order_by(LabelCheck.id.desc()).limit(1))


def training_suspicion(session: Session, project_id: int, train: Examples) -> Suspicion | None:
    """The latest label check's ranking of ``train``'s pairs (matched by query and item text) for a
    ``drop_suspects`` stage, or None before the first check. A pair a reviewer has looked at since it was
    suspected (confirmed, or adjudicated after the check) and a pair the check did not see are never dropped."""
    from darl_core.model import item_text
    from darl_core.training import Suspicion

    check = latest_check(session, project_id)
    if check is None:
        return None
    n_issues = int((check.params or {}).get("n_issues", 0))
    reviewed = set(session.scalars(
        select(LabelEvent.pair_id).join(Pair, Pair.id == LabelEvent.pair_id)
        .where(Pair.project_id == project_id, LabelEvent.kind == LabelKind.adjudication,
               LabelEvent.id > check.last_event_id)))
    rank: dict[tuple[str, str], float] = {}
    rows = session.execute(select(LabelCheckItem.pair_id, LabelCheckItem.rank, LabelCheckItem.suspect, Pair)
                           .join(Pair, Pair.id == LabelCheckItem.pair_id).where(LabelCheckItem.check_id == check.id))
    for pid, r, suspect, pair in rows:
        confirmed = r <= n_issues and not suspect
        rank[(pair.query.text, item_text(pair.item.title, pair.item.text))] = \
            float("inf") if confirmed or pid in reviewed else float(r)
    ranks = np.array([rank.get((q, i), float("inf")) for q, i in zip(train.queries, train.items, strict=True)])
    return Suspicion(ranks, f"label check {check.id}")


def check_suspects(session: Session, check_id: int, limit: int | None = 20) -> list[Suspect]:
    """A check's suspects, most suspect first (``limit`` None: all)."""
    if session.get(LabelCheck, check_id) is None:
        raise NotFoundError(f"No label check {check_id}: run one first (Review, or check-labels on the command line).")
    stmt = (select(LabelCheckItem).where(LabelCheckItem.check_id == check_id, LabelCheckItem.suspect.is_(True))
            .order_by(LabelCheckItem.rank))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [Suspect(r.pair_id, r.rank, r.label, r.model_grade, r.model_prob, r.label_prob, r.quality, r.reason)
            for r in session.scalars(stmt)]
