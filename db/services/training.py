"""Training a model version: the project's labelled pairs -> ``run_stage`` -> a ``ModelVersion`` row.

``train_stage`` is the whole job (CLI ``train`` and the background worker call it). Labels are the
final grade per pair (label service). Pairs in test splits never train; the validation part is the
pairs whose split is ``val``/``val_id``, topped up by whole training queries when it is small
(``draw_validation``: deterministic and by query, so no query is in both; the stage log says so).
For ``dasa`` the new labels are the pairs first labelled after the parent version's label snapshot.
The checkpoint directory is keyed by stage, parent, label snapshot and overrides, so a retried job
resumes the interrupted run instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from darl_core import distributed
from darl_core.config import BASELINES, SELECTING_STAGES, STAGES, resolve_tuning, stage_config
from darl_core.errors import ConfigError, NotFoundError
from darl_core.metrics import evaluate
from darl_core.model import item_text, load_checkpoint, score_pairs
from darl_core.settings import darl_home
from darl_core.training import Examples, ProgressEvent, run_stage
from darl_core.validation import draw_validation
from db.models import LabelEvent, ModelVersion, Pair, Project, Role
from db.services import label_check, versions
from db.services.labels import TEST_SPLITS, VAL_SPLITS, final_labels
from db.services.projects import get_project, stage_base
from db.services.rounds import resolve_version
from db.services.users import Actor, require_role
from db.services.versions import DEFAULT_PARENT
from db.session import is_sqlite

Progress = Callable[[float, str], None]


# "lp · pooling: pooling 512 training pairs": the stage, its phase, then what happened (may be empty: the
# bar moved, nothing to log). The job handler reads the phase back (``PHASE_MESSAGE``) for the job panel.
PHASE_MESSAGE = re.compile(r"^(?P<stage>\w+) · (?P<phase>[a-z ]+): (?P<text>.*)$", re.S)


def phase_message(stage: str, phase: str, text: str) -> str:
    """A progress message that carries the stage's phase (``PHASE_MESSAGE`` reads it back)."""
    return f"{stage} · {phase}: {text}" if phase else f"{stage}: {text}"


def _default_parent(session: Session, project, stage: str) -> ModelVersion | None:
    if stage == "lp" or stage in BASELINES:
        return None
    found = versions.default_parent(session, project, stage)
    if found is None:
        raise NotFoundError(f"Stage {stage!r} starts from a {' or '.join(DEFAULT_PARENT[stage])} version and this "
                            f"project has none: train an {DEFAULT_PARENT[stage][-1]} stage first, or pick the "
                            "version to start from.")
    return found


def collect_examples(session: Session, project_id: int, since_event_id: int = 0,
                     posthoc_min_queries: int | None = None) -> dict[str, Any]:
    """Labelled pairs split into train / val / new (first labelled after ``since_event_id``) / tests; a small
    val split is topped up (``draw_validation``; ``posthoc_min_queries``: the stage's)."""
    labels = final_labels(session, project_id)
    first_event = dict(session.execute(
        select(LabelEvent.pair_id, func.min(LabelEvent.id)).join(Pair, Pair.id == LabelEvent.pair_id)
        .where(Pair.project_id == project_id).group_by(LabelEvent.pair_id)).all())
    parts: dict[str, tuple[list[str], list[str], list[int]]] = {}
    for pair in session.scalars(select(Pair).where(Pair.project_id == project_id, Pair.id.in_(list(labels)))
                                .order_by(Pair.id)):
        split = pair.split or ""
        if split in TEST_SPLITS:
            part = split
        elif split in VAL_SPLITS:
            part = "val"
        elif since_event_id and first_event.get(pair.id, 0) > since_event_id:
            part = "new"
        else:
            part = "train"
        q, i, g = parts.setdefault(part, ([], [], []))
        q.append(pair.query.text)
        i.append(item_text(pair.item.title, pair.item.text))
        g.append(labels[pair.id].grade)
    out = {name: Examples(q, i, np.array(g, dtype=np.int64)) for name, (q, i, g) in parts.items()}
    train = out.get("train", Examples([], [], np.zeros(0, dtype=np.int64)))
    val = out.get("val", Examples([], [], np.zeros(0, dtype=np.int64)))
    out["train"], out["val"], out["val_note"] = draw_validation(train, val, posthoc_min_queries)
    out["last_event_id"] = int(session.scalar(select(func.max(LabelEvent.id)).join(Pair, Pair.id == LabelEvent.pair_id)
                                              .where(Pair.project_id == project_id)) or 0)
    return out


def train_stage(session: Session, project_name: str, stage: str, *, from_version: str | int | None = None,
                overrides: dict[str, Any] | None = None, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None, actor: Actor | None) -> ModelVersion | None:
    """Train one stage on the project's labels and register the result as a new ModelVersion (engineer role).
    ``stage`` may also be a baseline (``BASELINES``: ``ce``, the class-weighted CE fine-tune from the
    pretrained backbone that the benchmark compares the pipeline with).

    Under ``accelerate launch`` every process trains its share and only rank 0 returns the version
    (the others return None)."""
    require_role(actor, Role.engineer)
    if stage not in STAGES + tuple(BASELINES):
        raise ConfigError(f"stage must be one of {STAGES + tuple(BASELINES)}, got {stage!r}")
    if stage in BASELINES and from_version is not None:
        raise ConfigError(f"stage {stage!r} is the baseline fine-tune straight from the pretrained backbone; "
                          "it takes no starting version (train an ft stage to continue from one)")
    project = get_project(session, project_name)
    parent = resolve_version(session, project.id, from_version, actor=actor) if from_version is not None \
        else _default_parent(session, project, stage)
    if parent is not None and not parent.artifact_path:
        parent = None if stage == "lp" else parent
        if parent is not None:
            raise ConfigError(f"version {parent.name!r} is the untrained backbone; stage {stage!r} needs a trained parent")
    inherited, chain = _tuning_layer(session, stage, parent, overrides)
    config = stage_config(stage, stage_base(project), inherited, overrides)
    since = int((parent.label_snapshot or {}).get("last_event_id", 0)) if parent is not None else 0
    split_new = stage == "dasa"
    if stage == "dpo" and config.dpo_holdout > 0 and parent is not None and parent.parent_id is not None:
        # The labels that came after the reference's own parent (DASA's new pairs, and any since) stay
        # apart: dpo holds out a share of them to check its strength on the shifted pairs.
        grand = session.get(ModelVersion, parent.parent_id)
        since = int(((grand.label_snapshot if grand is not None else None) or {}).get("last_event_id", 0))
        split_new = since > 0
    data = collect_examples(session, project.id, since if split_new else 0, config.posthoc_min_queries)
    train, val, new = data["train"], data["val"], data.get("new")
    if not split_new and new is not None:
        train = train.concat(new)
        new = None
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(f"project {project_name!r} has {len(train)} training and {len(val)} validation labels; "
                          "label more pairs (or import graded pairs) before training")
    # drop_suspects drops what the latest label check suspects (reviewed pairs never); without a check the stage
    # ranks the pairs itself (darl_core.data_selection).
    drops = config.data_selection == "drop_suspects" and config.stage in SELECTING_STAGES
    suspicion = label_check.training_suspicion(session, project.id, train) if drops else None
    # The resolved config, not just the overrides: a changed default never reuses an old run's directory.
    key = hashlib.sha1(json.dumps([stage, parent.id if parent else 0, data["last_event_id"], config.to_dict()]
                                  + ([suspicion.source] if suspicion is not None else []),
                                  sort_keys=True, default=str).encode()).hexdigest()[:12]
    out_dir = darl_home() / "checkpoints" / f"project{project.id}" / f"{stage}-{key}"
    existing = session.scalar(select(ModelVersion).where(ModelVersion.artifact_path == str(out_dir)))
    if existing is not None:
        return existing

    def relay(ev: ProgressEvent) -> None:
        if progress is not None:
            frac = ev.fraction if ev.fraction is not None else \
                (ev.step / ev.total_steps if ev.total_steps > 0 else (1.0 if ev.message == "done" else 0.0))
            progress(max(0.0, min(1.0, frac)), phase_message(ev.stage, ev.phase, ev.message))

    notes = [n for n in (data.get("val_note"), _reference_note(stage, parent),
                         _tuning_note(stage, config, chain, overrides)) if n]
    if drops:
        notes.append(f"drop_suspects: the ranking of {suspicion.source} (pairs reviewers have looked at are kept)"
                     if suspicion is not None else
                     "drop_suspects: no label check yet, so the stage ranks its pairs itself (frozen embeddings)")
    for note in notes:  # the stage log (a job's log lines; the CLI's stderr)
        if progress is not None:
            progress(0.0, f"{stage}: {note}")

    if is_sqlite(session) and session.in_transaction():
        # Only read so far. Every SQLite transaction holds the write lock (BEGIN IMMEDIATE): end this one
        # so minutes of training lock out neither the app nor the other processes of a multi-process launch.
        session.commit()
    result = run_stage(config, train, val, out_dir, parent=_path(parent), new_labels=new, progress=relay,
                       should_stop=should_stop, suspicion=suspicion)
    if not distributed.context().is_main:
        return None  # a helper process of `accelerate launch`: rank 0 scores and registers the version
    metrics = dict(result.metrics)
    tests = {k: v for k, v in data.items() if k in TEST_SPLITS and len(v)}
    if tests:
        model = load_checkpoint(result.checkpoint)
        for split, ex in tests.items():
            out = score_pairs(model, ex.queries, ex.items, max_length=config.max_length)
            m = evaluate(ex.grades, out.probs, ex.queries, grade_names=list(project.grades))
            metrics.update({f"{split}_{k}": v for k, v in m.items()})
    notes += [f"warning: {w}" for w in metrics.get("warnings") or []]  # the stage log had them already
    if notes:
        metrics["notes"] = notes
    count = session.scalar(select(func.count(ModelVersion.id)).where(ModelVersion.project_id == project.id,
                                                                      ModelVersion.stage == stage)) or 0
    version = ModelVersion(project_id=project.id, name=f"{stage}-{count + 1}", stage=stage,
                           parent_id=parent.id if parent else None, artifact_path=str(out_dir),
                           config=config.to_dict(), metrics=metrics,
                           label_snapshot={"last_event_id": data["last_event_id"], "train": len(train),
                                           "val": len(val), "new": len(new) if new is not None else 0})
    session.add(version)
    session.flush()
    _adopt_first(session, project, version)
    return version


def _tuning_layer(session: Session, stage: str, parent: ModelVersion | None,
                  overrides: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """A stage left at ``tuning: auto`` that continues a tuned chain (dasa, dpo; wi carries its ft's) keeps the
    chain's tuning, so a chain the user started with ``--tuning lora`` is not switched to full halfway.
    (the config layer, the name of the version whose tuning it keeps)"""
    if (overrides or {}).get("tuning", "auto") != "auto" or stage not in ("dasa", "dpo"):
        return {}, None
    seen = set()
    while parent is not None and parent.stage == "wi" and parent.parent_id and parent.id not in seen:
        seen.add(parent.id)
        parent = session.get(ModelVersion, parent.parent_id)
    tuning = ((parent.config or {}).get("tuning") if parent is not None else None)
    return ({"tuning": tuning}, parent.name) if tuning in ("lora", "full") else ({}, None)


def _tuning_note(stage: str, config, chain: str | None, overrides: dict[str, Any] | None) -> str | None:
    """The stage log's line on what is tuned, when the user left it to the product."""
    if (overrides or {}).get("tuning", "auto") != "auto" or config.stage in ("lp", "wi") or stage in BASELINES:
        return None
    if chain is not None:
        return f"tuning: {config.tuning}, as in {chain}, the chain this stage continues"
    return f"tuning: auto, so {resolve_tuning(stage, config.model_dir)[1]}"


def _reference_note(stage: str, parent: ModelVersion | None) -> str | None:
    """dpo de-biases against a frozen reference, meant to be the dasa model; any other parent is named."""
    if stage != "dpo" or parent is None or parent.stage == "dasa":
        return None
    return (f"reference: {parent.name} (a {parent.stage} version, not a dasa one: the current version, else the "
            "latest dasa, wi or ft, or the version picked); dpo de-biases its predictions, and alpha 0 returns it")


def _adopt_first(session: Session, project: Project, version: ModelVersion) -> None:
    """No current version yet: the first trained one becomes current (selection and scoring then use a
    trained model without a further click), marked as chosen on its own so the Training page says so."""
    if project.current_version_id is None and version.artifact_path:
        project.current_version_id = version.id
        project.settings = {**(project.settings or {}), versions.AUTO_CURRENT: True}
        session.flush()


def _path(version: ModelVersion | None):
    from pathlib import Path

    return Path(version.artifact_path) if version is not None and version.artifact_path else None
