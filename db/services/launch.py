"""Launching the engineer's background jobs: checked up front, then queued (the worker runs them).

Each ``launch_*`` validates what it can before queueing (a stage config that would be refused, a
version of another project, a stage whose prerequisite is missing: ``missing_prerequisite``), so a
mistake is a message on the page, not a failed job minutes later. ``stage_form`` gives the training
form its fields, defaults and bounds from ``StageConfig``, each with a label, a one-line help and a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from darl_core.config import (
    CALIBRATE_BY,
    DATA_SELECTIONS,
    STAGES,
    TUNING_CHOICES,
    resolve_tuning,
    stage_config,
)
from darl_core.errors import ConfigError, ConflictError
from db.models import Job, LabelEvent, Pair, Project, Role
from db.services import jobs, versions
from db.services.labels import TEST_SPLITS, VAL_SPLITS
from db.services.users import Actor, require_role


@dataclass(frozen=True)
class FormField:
    name: str  # a StageConfig field, or "loss.<field>" / "lora.<field>"
    default: Any
    kind: str  # int, float, bool, choice, text
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    label: str = ""  # what the form calls it, in words
    group: str = "basics"  # one of GROUPS: basics open, the rest in collapsed expanders


# Bounds mirror the checks in StageConfig.__post_init__ (which stays the judge: it validates on launch).
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "epochs": (0.05, 100.0), "batch_size": (1, 4096), "lr": (1e-7, 1.0), "head_lr": (1e-7, 1.0),
    "max_length": (8, 4096), "seed": (0, 2**31 - 1), "warmup_ratio": (0.0, 0.99), "weight_decay": (0.0, 1.0),
    "replay_ratio": (0.0, 100.0), "dpo_beta": (1e-4, 100.0), "dpo_sft_weight": (0.0, 100.0),
    "dpo_holdout": (0.0, 0.9), "dasa_holdout": (0.0, 0.9), "layer_lr_decay": (0.05, 1.0),
    "average_tail": (0.0, 1.0), "drop_share": (0.01, 0.9), "rest_share": (0.0, 1.0),
    "save_every": (1, 10**6), "loss.label_smoothing": (0.0, 0.99), "loss.ordinal_weight": (0.0, 100.0),
    "loss.occ_weight": (0.0, 100.0), "lora.r": (1, 1024),
}
_TRAINING = ("epochs", "batch_size", "lr", "head_lr", "max_length", "seed", "save_every",
             "loss.label_smoothing", "loss.ordinal_weight", "loss.occ_weight")
_AFTER = ("zero_shot_blend", "decision_offsets", "calibrate", "calibrate_by")  # steps after any stage
# What each stage uses: lp trains the head alone (no backbone lr), wi trains nothing (it scores val at
# max_length for each alpha).
_STAGE_FIELDS = {"lp": tuple(f for f in _TRAINING if f != "lr") + _AFTER, "wi": ("max_length",) + _AFTER}
# The form's words: field -> (label, group, one-line help). Every field the form can show has an entry
# (tests/app/test_training_form.py checks that no raw field name reaches the page and each help is one line).
GROUPS = {"basics": "Basics", "data": "Training data", "loss": "Loss", "calibration": "Calibration",
          "advanced": "Advanced"}
_WORDS: dict[str, tuple[str, str, str]] = {
    "epochs": ("Epochs", "basics", "passes over the training labels; fractions allowed"),
    "batch_size": ("Batch size", "basics", "pairs per training step"),
    # Left as shown, the backbone lr follows the tuning: LoRA 5e-4, full 1e-4, times 0.6 in dasa and 0.4 in dpo.
    "lr": ("Backbone learning rate", "basics", "learning rate of the backbone; as shown it follows the tuning "
                                               "and the stage (the benchmark's recipe)"),
    "head_lr": ("Head learning rate", "basics", "learning rate of the grade head on top of the backbone"),
    "tuning": ("What to tune", "basics", "auto: every weight up to 150M backbone parameters, else LoRA adapters; "
                                        "dasa, dpo keep their chain's"),
    "wi_alphas": ("Interpolation weights to try", "basics",
                  "comma-separated shares of the ft weights (0: lp, 1: ft); the best on validation is kept"),
    "replay_ratio": ("Replay ratio", "basics", "earlier training pairs replayed per new label in each epoch"),
    "dpo_pairs": ("Rejected predictions", "basics", "over: only over-predictions are rejected; wrong: every wrong "
                                                    "prediction"),
    "dpo_beta": ("Preference strength (β)", "basics", "how far the model may move from its parent"),
    # darl_core/data_selection.py; off by default until bench/data_selection.py shows it pays.
    "data_selection": ("Training pairs to learn from", "data",
                       "all; drop_suspects: leave out the latest label check's suspects (reviewed pairs stay); "
                       "hard_learnable: LREF's hard pairs"),
    "drop_share": ("Share of suspects left out", "data",
                   "drop_suspects: this share of the pairs, most suspect first, is not trained on"),
    "rest_share": ("Share of the other pairs kept", "data",
                   "hard_learnable: besides the hard pairs, this share of the rest is kept at random"),
    "loss.label_smoothing": ("Label smoothing", "loss", "share of each target spread over the other grades"),
    "loss.ordinal_weight": ("Ordinal penalty", "loss", "penalises a prediction more the further its grade is "
                                                       "from the true one"),
    "loss.occ_weight": ("Over-confidence penalty (λ)", "loss", "penalises confidence above the accuracy a batch "
                                                               "actually reaches"),
    "dpo_sft_weight": ("Cross-entropy anchor", "loss", "weight of the plain grading loss kept next to the "
                                                       "preference loss"),
    # Each step after training is kept only when it wins on query folds it was not fitted on and does not lower
    # the held-out new labels' macro-F1; all are skipped (reason in the log) when validation has fewer than
    # 128 queries or 10 pairs of a grade (darl_core/posthoc.py).
    "zero_shot_blend": ("Blend in zero-shot similarity", "calibration",
                        "add the pretrained backbone's query-item similarity to the grade logits, if it helps"),
    "decision_offsets": ("Tune decision offsets for macro-F1", "calibration",
                         "shift each grade's logit so the predicted grade maximises validation macro-F1"),
    "calibrate": ("Calibrate confidence", "calibration",
                  "temperature scaling on the validation pairs: confidence changes, predictions do not"),
    "calibrate_by": ("Calibration objective", "calibration",
                     "nll: the whole grade distribution; ece: the predicted grade's confidence, as the pages show it"),
    "max_length": ("Max tokens per pair", "advanced", "query and item text are cut to this many tokens"),
    "seed": ("Random seed", "advanced", "same seed, same labels, same settings: the same model"),
    "save_every": ("Checkpoint every (steps)", "advanced", "steps between resumable checkpoints"),
    "lora.r": ("LoRA rank", "advanced", "size of the adapters (tuning: lora)"),
    "layer_lr_decay": ("Layer-wise learning-rate decay", "advanced",
                       "each lower layer learns at this factor of the one above (1: one rate for all)"),
    "average_tail": ("Averaged tail of training (share)", "advanced",
                     "share of the last steps whose weights are averaged (stochastic weight averaging; 0: off)"),
    # 0.2 lowered dpo val macro-F1 on Home Depot: held-out labels are labels not trained on.
    "dasa_holdout": ("Held-out share of the new labels", "advanced",
                     "kept out of training and scored after it: quality on the shifted pairs (costs labels)"),
    "dpo_alphas": ("Preference strengths to try", "advanced",
                   "comma-separated; the best on validation is kept, one value is used as it is"),
    "dpo_holdout": ("Held-out share for the strength pick", "advanced",
                    "new labels kept out of training; the pick must not lower their macro-F1"),
}
_SELECTION = ("data_selection", "drop_share", "rest_share")  # config.SELECTING_STAGES
_PER_STAGE = {"lp": _SELECTION, "ft": ("tuning", "lora.r", "layer_lr_decay", "average_tail") + _SELECTION,
              "wi": ("wi_alphas",),
              "dasa": ("tuning", "lora.r", "layer_lr_decay", "average_tail", "replay_ratio", "dasa_holdout"),
              "dpo": ("tuning", "lora.r", "layer_lr_decay", "dpo_beta", "dpo_sft_weight", "dpo_pairs", "dpo_alphas",
                      "dpo_holdout")}
_CHOICES = {"data_selection": DATA_SELECTIONS, "tuning": TUNING_CHOICES, "calibrate_by": CALIBRATE_BY, "dpo_pairs": ("over", "wrong"), "loss.occ_form": ("dca", "entropy")}


def stage_form(stage: str, base: dict[str, Any] | None = None) -> list[FormField]:
    """The parameters of ``stage`` the form shows, with StageConfig's defaults under the stage's own
    ``STAGE_DEFAULTS`` (what ``train_stage`` applies when the form leaves them untouched). ``base``: the
    project's part (``projects.stage_base``), so the lr shown is the one its backbone's ``auto`` tuning gets."""
    if stage not in STAGES:
        raise ConfigError(f"stage must be one of {STAGES}, got {stage!r}")
    defaults = stage_config(stage, base)
    sub = {"loss": defaults.loss, "lora": defaults.lora}
    out = []
    for name in _STAGE_FIELDS.get(stage, _TRAINING + _AFTER) + _PER_STAGE[stage]:
        obj, attr = (sub[name.split(".")[0]], name.split(".")[1]) if "." in name else (defaults, name)
        value = "auto" if name == "tuning" else getattr(obj, attr)  # left so, train_stage decides (and says why)
        label, group, line = _WORDS[name]
        if name == "tuning":  # what "auto" means for this backbone, in the help
            line = f"{line} (here: {resolve_tuning(stage, (base or {}).get('model_dir'))[0]})"
        words = {"help": line, "label": label, "group": group}
        if name in _CHOICES:
            out.append(FormField(name, value, "choice", choices=_CHOICES[name], **words))
        elif isinstance(value, bool):
            out.append(FormField(name, value, "bool", **words))
        elif isinstance(value, tuple):
            out.append(FormField(name, ", ".join(f"{v:g}" for v in value), "text", **words))
        else:
            lo, hi = _BOUNDS.get(name, (None, None))
            out.append(FormField(name, value, "int" if isinstance(value, int) else "float", lo, hi, **words))
    return out


def overrides_from_form(stage: str, values: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Form values -> StageConfig overrides (only those that differ from the default), validated."""
    defaults = {f.name: f.default for f in stage_form(stage, base)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in defaults or value == defaults[name]:
            continue
        if name in ("wi_alphas", "dpo_alphas"):
            try:
                value = [float(v) for v in str(value).split(",") if v.strip()]
            except ValueError as exc:
                raise ConfigError(f"`{name}` must be numbers separated by commas, got {value!r}") from exc
        if "." in name:
            group, attr = name.split(".")
            out.setdefault(group, {})[attr] = value
        else:
            out[name] = value
    stage_config(stage, base, out)  # raises ConfigError quoting the bad value
    return out


def missing_prerequisite(session: Session, project: Project, stage: str, from_version: int | None) -> str | None:
    """Why ``stage`` cannot run yet, with what to do; None when it can (the form shows this before queueing)."""
    if stage == "lp":
        return None
    parent = versions.get_version(session, from_version) if from_version is not None \
        else versions.default_parent(session, project, stage)
    if parent is None or not parent.artifact_path:
        need = versions.DEFAULT_PARENT[stage][-1]
        why = {"ft": "fine-tuning starts from a linear probe", "wi": "weight interpolation blends an ft version "
               "with the lp version it came from"}.get(stage, f"{stage} continues from a fine-tuned version")
        return f"Train an {need} stage first: {why}, and this project has no {need} version yet."
    if stage == "wi" and parent.stage != "ft":
        return f"Weight interpolation starts from an ft version; {parent.name} is {parent.stage}. Pick an ft version."
    if stage == "dasa":
        since = int((parent.label_snapshot or {}).get("last_event_id", 0))
        if _new_labels(session, project.id, since) == 0:
            return (f"No new labels since {parent.name} was trained: dasa trains on them. Start a round on the "
                    "Selection page and grade its pairs on Annotate first.")
    return None


def _new_labels(session: Session, project_id: int, since_event_id: int) -> int:
    """Pairs outside the validation and test splits first labelled after ``since_event_id`` (what dasa trains on)."""
    first = (select(LabelEvent.pair_id, func.min(LabelEvent.id).label("first")).join(Pair, Pair.id == LabelEvent.pair_id)
             .where(Pair.project_id == project_id, Pair.split.not_in(VAL_SPLITS + TEST_SPLITS) | Pair.split.is_(None))
             .group_by(LabelEvent.pair_id).subquery())
    return int(session.scalar(select(func.count()).select_from(first).where(first.c.first > since_event_id)) or 0)


def launch_training(session: Session, project: Project, stage: str, *, from_version: int | None,
                    overrides: dict[str, Any], actor: Actor | None) -> Job:
    """Queue training of ``stage`` (engineer role), its config and prerequisites checked first."""
    require_role(actor, Role.engineer)
    stage_config(stage, overrides)
    if from_version is not None and versions.get_version(session, from_version).project_id != project.id:
        raise ConflictError("That version belongs to another project.")
    missing = missing_prerequisite(session, project, stage, from_version)
    if missing is not None:
        raise ConflictError(missing)
    return jobs.enqueue(session, "train", {"project": project.name, "stage": stage, "from_version": from_version,
                                           "overrides": overrides}, project_id=project.id, actor=actor)


def launch_selection(session: Session, project: Project, budget: int, *, version: int | None,
                     actor: Actor | None, shard_size: int | None = None, by: str = "pair", per_query: int = 10,
                     aggregate: str = "mean") -> Job:
    """Queue a DASA round (``by`` pair, or by query: up to ``per_query`` pairs of each query ranked by the
    ``aggregate`` of its OOD scores); for a large project, embedding shards first that any worker can take
    (the select job runs or waits for them, then embeds only what is left)."""
    from db.services.maps import SHARD_SIZE, queue_embedding_shards
    from db.services.rounds import resolve_version

    require_role(actor, Role.engineer)
    if budget < 1:
        raise ConfigError(f"The budget must be at least 1 pair, got {budget}.")
    if by not in ("pair", "query") or aggregate not in ("mean", "max") or per_query < 1:
        raise ConfigError(f"Select by 'pair' or 'query' (got {by!r}), with pairs per query >= 1 (got {per_query}) "
                          f"and aggregate 'mean' or 'max' (got {aggregate!r}).")
    mv = resolve_version(session, project.id, version, actor=actor)
    ids = list(session.scalars(select(Pair.id).where(Pair.project_id == project.id).order_by(Pair.id)))
    shards = queue_embedding_shards(session, project, mv, ids, actor=actor, shard_size=shard_size or SHARD_SIZE)
    return jobs.enqueue(session, "select", {"project": project.name, "budget": int(budget), "version": version,
                                            "created_by": actor.id, "shards": shards, "by": by,
                                            "per_query": int(per_query), "aggregate": aggregate},
                        project_id=project.id, actor=actor)


def launch_evaluation(session: Session, project: Project, version_id: int, actor: Actor | None) -> Job:
    """Queue an evaluation of a version of this project (engineer role)."""
    require_role(actor, Role.engineer)
    if versions.get_version(session, version_id).project_id != project.id:
        raise ConflictError("That version belongs to another project.")
    return jobs.enqueue(session, "evaluate", {"version_id": version_id}, project_id=project.id, actor=actor)


def training_overview(session: Session, project_id: int, limit: int = 20) -> dict[str, Any]:
    """What the training page shows: versions (with metrics and lineage) and recent training jobs."""
    return {"versions": versions.version_rows(session, project_id),
            "jobs": jobs.list_jobs(session, project_id=project_id, kinds=["train", "evaluate"], limit=limit)}
