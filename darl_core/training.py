"""The stage runner: ``run_stage(config, train, val, out_dir, ...)`` for lp, ft, wi, dasa and dpo.

One loop (``_train_loop``) serves every gradient stage and reads top to bottom. A stage directory
holds ``config.json``, ``model.pt`` (changed backbone tensors + head), ``optimizer.pt``,
``metrics.json`` when finished, and ``resume.pt`` while unfinished. Calling ``run_stage`` again on
the same directory resumes from ``resume.pt`` (or returns the finished result). The batch order of
an epoch is a pure function of (seed, epoch) and every process's torch RNG (CPU, and CUDA when the
model is on a GPU) is saved with it, so a resumed run ends with the same weights as an uninterrupted
one, dropout included, under a multi-process launch too (``resume.rank{N}.pt`` for the helpers).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from darl_core import data_selection, distributed, posthoc, stages
from darl_core.config import SELECTING_STAGES, StageConfig
from darl_core.errors import ConfigError, DarlError
from darl_core.loss_trace import LossTrace, learning_warning
from darl_core.losses import class_weights_for, darl_loss
from darl_core.metrics import default_grade_names, evaluate, macro_f1_interval
from darl_core.model import (
    RelevanceModel,
    load_model,
    model_from_weights,
    save_weights,
    score_pairs,
)
from darl_core.progress import ProgressEvent, stage_fraction
from darl_core.tuning import build_model, param_groups


@dataclass
class Examples:
    """Query-item pairs; ``grades`` are 0-based ints (None for unlabelled pairs)."""

    queries: list[str]
    items: list[str]
    grades: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.queries, self.items = list(map(str, self.queries)), list(map(str, self.items))
        if len(self.queries) != len(self.items):
            raise ConfigError(f"queries and items differ in length: {len(self.queries)} vs {len(self.items)}")
        if self.grades is not None:
            self.grades = np.array(self.grades, dtype=np.int64)  # a private, writable copy
            if self.grades.shape != (len(self.queries),):
                raise ConfigError(f"grades must have shape ({len(self.queries)},), got {self.grades.shape}")

    def __len__(self) -> int:
        return len(self.queries)

    def subset(self, rows) -> Examples:
        rows = np.asarray(rows, dtype=np.int64)
        return Examples([self.queries[i] for i in rows], [self.items[i] for i in rows],
                        None if self.grades is None else self.grades[rows])

    def concat(self, other: Examples) -> Examples:
        if self.grades is None or other.grades is None:
            raise ConfigError("only labelled Examples can be concatenated")
        return Examples(self.queries + other.queries, self.items + other.items,
                        np.concatenate([self.grades, other.grades]))


@dataclass(frozen=True)
class Suspicion:
    """A finished label check's view of the training pairs, for ``drop_suspects``: ``rank`` per pair (1 = most
    suspect; ``inf`` = never dropped: not in the check, relabelled since, or confirmed by a reviewer) and
    ``source`` (what the stage's metrics record, e.g. "label check 3")."""
    rank: np.ndarray
    source: str


@dataclass(frozen=True)
class StageResult:
    stage: str
    checkpoint: Path
    metrics: dict = field(default_factory=dict)


class StageCancelled(DarlError):
    """``should_stop`` asked the stage to stop; a resumable checkpoint was saved in ``out_dir``."""

    def __init__(self, out_dir: Path, step: int) -> None:
        self.out_dir, self.step = out_dir, step
        super().__init__(f"stage cancelled at step {step}; run it again with the same directory "
                         f"({out_dir}) to resume")


Progress = Callable[[ProgressEvent], None]


def run_stage(config: StageConfig, train: Examples, val: Examples, out_dir: Path, *, parent: Path | None = None,
              new_labels: Examples | None = None, progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None, suspicion: Suspicion | None = None) -> StageResult:
    """Run one stage and return its checkpoint and validation metrics (see module docstring).

    ``parent``: the checkpoint to start from (lp: none; ft: the lp checkpoint; wi: the ft checkpoint;
    dasa: the best model so far; dpo: the reference model). ``new_labels``: dasa's newly labelled pairs
    (dpo also trains on them when given). ``suspicion``: for ``drop_suspects``, a finished label check's
    ranking of the training pairs (see ``Suspicion``) instead of one computed here.
    """
    out_dir = Path(out_dir)
    _validate(config, train, val, parent, new_labels)
    if (out_dir / "metrics.json").is_file() and (out_dir / "model.pt").is_file():
        return StageResult(config.stage, out_dir, json.loads((out_dir / "metrics.json").read_text()))
    dist = distributed.context()
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        record = {"config": config.to_dict(), "parent": str(parent) if parent else None, "processes": dist.world}
        (out_dir / "config.json").write_text(json.dumps(record, indent=2))
    dist.barrier()
    if config.threads:
        torch.set_num_threads(config.threads)
    train, selected = _select_training_pairs(config, train, out_dir, parent, progress, suspicion)
    if not dist.is_main:  # a helper process of a multi-process launch: share the training, then read rank 0's result
        if config.stage != "wi":
            _train_loop(config, train, val, out_dir, parent, holdout_split(config, new_labels)[0], None, should_stop)
        dist.barrier()  # rank 0 picks, calibrates, saves and scores meanwhile
        return StageResult(config.stage, out_dir, json.loads((out_dir / "metrics.json").read_text()))
    start = time.perf_counter()
    holdout, weights_at, alphas = None, None, [None]
    if config.stage == "wi":
        model, weights_at, extra = stages.wi_endpoints(config, Path(parent))
        tuning = extra.pop("tuning")
        alphas = list(config.wi_alphas)
    else:
        new_labels, holdout = holdout_split(config, new_labels)
        model, extra = _train_loop(config, train, val, out_dir, parent, new_labels, progress, should_stop)
        tuning = config.tuning
        if config.stage == "dpo":  # how far towards the DPO weights: picked by posthoc.decide
            save_weights(model, tuning, out_dir / "model_dpo_full.pt")  # the unblended DPO weights, kept
            weights_at, alphas = stages.dpo_blender(Path(parent), model), stages.dpo_candidates(config)
    # The post-hoc choices (alpha, blend, offsets, temperature), each guarded; the figures are out of fold.
    # wi's alpha and dpo's strength are their own phases of the bar; every other step is part of evaluation.
    phase = {"wi": "interpolation", "dpo": "strength pick"}.get(config.stage, "evaluation")
    if phase == "evaluation":
        _emit(progress, config, "evaluation")(0, 0, 0.0, None, f"scoring {len(val)} validation pairs")
    post, oof = posthoc.finish(model, val, holdout, config, _emit(progress, config, phase), weights_at, alphas)
    if phase != "evaluation":
        _emit(progress, config, "evaluation")(0, 0, 0.0, None, f"{phase}: decided on {len(val)} validation pairs")
    extra.update(post, **selected)
    save_weights(model, tuning, out_dir / "model.pt")
    metrics = {**_metrics_of(val, oof["val"], config), **extra}
    if holdout is not None:  # the new labels kept out: mostly shifted pairs, so a second, OOD-leaning val set
        metrics.update(_metrics_of(holdout, oof["holdout"], config, prefix="holdout_"), holdout_pairs=len(holdout))
    metrics["wall_s"] = time.perf_counter() - start
    warning = learning_warning(config.stage, metrics, config.tuning, config.lr,
                               fresh_head=config.stage == "lp" or (config.stage == "ft" and parent is None))
    if warning:  # the stage log says it; db.services.training adds it to the version's notes
        metrics["warnings"] = [warning]
        _emit(progress, config, "evaluation")(0, 0, 0.0, None, f"warning: {warning}")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    dist.barrier()
    _emit(progress, config, "done")(-1, -1, float("nan"), None, "done")
    return StageResult(config.stage, out_dir, metrics)


def _select_training_pairs(config: StageConfig, train: Examples, out_dir: Path, parent: Path | None,
                           progress: Progress | None, suspicion: Suspicion | None = None) -> tuple[Examples, dict]:
    """(the training pairs the stage learns from, what its metrics record about them) under
    ``data_selection``. Rank 0 embeds the pairs (the parent's pooled embeddings, or the pretrained
    backbone's), selects, and saves the rows to ``selection.json``: a resumed run and every process of
    a launch then train on the same rows without selecting again."""
    if config.data_selection == "all" or config.stage not in SELECTING_STAGES:
        return train, {}
    dist = distributed.context()
    saved = out_dir / "selection.json"
    emit = _emit(progress, config, "preparing")
    if dist.is_main and not saved.is_file():
        source: dict = {}
        if suspicion is not None and config.data_selection == "drop_suspects":  # a finished label check's ranking
            chosen = data_selection.drop_ranked(suspicion.rank, config.drop_share)
            source = {"selection_source": suspicion.source}
        else:
            emit(0, 0, 0.0, None, f"data selection ({config.data_selection}): embedding {len(train)} training pairs")
            model = (model_from_weights(Path(parent) / "model.pt") if parent is not None
                     else load_model(config.model_dir, config.num_grades, pooling=config.pooling))
            emb = score_pairs(model, train.queries, train.items, batch_size=config.eval_batch_size,
                              max_length=config.max_length).embeddings
            del model
            groups = np.unique(np.array(train.queries, dtype=object), return_inverse=True)[1]
            chosen = data_selection.select(config.data_selection, emb, train.grades, groups, config.num_grades,
                                           drop_share=config.drop_share, rest_share=config.rest_share,
                                           seed=config.seed)
        names = config.grade_names or default_grade_names(config.num_grades)
        record = {"rows": chosen.rows.tolist(),
                  "summary": {**data_selection.summary(chosen, train.grades, names), **source}}
        saved.with_suffix(".tmp").write_text(json.dumps(record))
        saved.with_suffix(".tmp").replace(saved)
    dist.barrier()
    record = json.loads(saved.read_text())
    emit(0, 0, 0.0, None, f"data selection ({config.data_selection}): training on {len(record['rows'])} of "
                          f"{len(train)} pairs")
    return train.subset(record["rows"]), record["summary"]


def holdout_split(config: StageConfig, new_labels: Examples | None) -> tuple[Examples | None, Examples | None]:
    """(new labels to train on, the share kept out): ``dasa_holdout`` for dasa, ``dpo_holdout`` for dpo;
    (new_labels, None) for other stages or a share of 0.

    The split is fixed by ``seed`` and the share alone, so a dasa stage and the dpo stage after it, run
    with the same seed and share, keep out the same rows: dpo's strength pick then checks labels that
    neither stage trained on (with a dasa stage that trained on all of them, the reference scores its own
    training data there and the check favours it).
    """
    share = {"dasa": config.dasa_holdout, "dpo": config.dpo_holdout}.get(config.stage, 0.0)
    if new_labels is None or share <= 0 or len(new_labels) < 2:
        return new_labels, None
    order = np.random.default_rng([config.seed, 11]).permutation(len(new_labels))
    n_hold = min(len(new_labels) - 1, max(1, round(share * len(new_labels))))
    return new_labels.subset(np.sort(order[n_hold:])), new_labels.subset(np.sort(order[:n_hold]))


def _validate(config: StageConfig, train: Examples, val: Examples, parent: Path | None,
              new_labels: Examples | None) -> None:
    if train.grades is None or val.grades is None:
        raise ConfigError("train and val must be labelled Examples (grades given)")
    for name, ex in (("train", train), ("val", val), ("new_labels", new_labels)):
        if ex is not None and ex.grades is not None and len(ex) and ex.grades.max() >= config.num_grades:
            raise ConfigError(f"{name} has grade {ex.grades.max()} but num_grades is {config.num_grades}")
    if len(train) == 0 or len(val) == 0:
        raise ConfigError(f"train and val must not be empty (got {len(train)} and {len(val)} pairs)")
    if config.stage in ("wi", "dasa", "dpo") and parent is None:
        raise ConfigError(f"stage {config.stage!r} needs a parent checkpoint (pass parent=...)")
    if parent is not None and not (Path(parent) / "model.pt").is_file():
        raise ConfigError(f"parent {parent} is not a finished stage checkpoint (no model.pt)")
    if config.stage == "dasa" and (new_labels is None or new_labels.grades is None or not len(new_labels)):
        raise ConfigError("stage 'dasa' needs new_labels: the labelled pairs picked by selection")


def _emit(progress: Progress | None, config: StageConfig, phase: str = "training"):
    """An ``emit(step, total, epoch, loss, message)`` for one phase: the event carries the stage-wide fraction."""
    def emit(step: int, total: int, epoch: float, loss: float | None, message: str) -> None:
        if progress is not None:
            progress(ProgressEvent(config.stage, step, total, epoch, loss, message, phase,
                                   stage_fraction(config.stage, phase, step, total)))
    return emit


def _epoch_batches(lengths: np.ndarray, rows: np.ndarray, batch_size: int, rng: np.random.Generator) -> list:
    """Shuffled batches of similar-length rows: sort inside chunks of 50 batches, then shuffle batches."""
    rows = rows[rng.permutation(len(rows))]
    chunk = batch_size * 50
    batches = []
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _train_loop(config: StageConfig, train: Examples, val: Examples, out_dir: Path, parent: Path | None,
                new_labels: Examples | None, progress: Progress | None,
                should_stop: Callable[[], bool] | None) -> tuple[RelevanceModel, dict]:
    emit = _emit(progress, config)
    dist = distributed.context()
    model = build_model(config, parent)
    data = train if new_labels is None or config.stage == "ft" else train.concat(new_labels)
    grades = torch.as_tensor(data.grades)
    weight = class_weights_for(config.loss, data.grades, config.num_grades)
    if weight is not None:
        weight = weight.to(model.device)

    # lp: the backbone is frozen, so pool every pair once and train the head on cached features.
    features = None
    if config.stage == "lp":
        cache = out_dir / "features.npy"
        if not cache.is_file():  # every process checks before any writes it (a barrier comes first)
            pooling = _emit(progress, config, "pooling")
            pooling(0, len(data), 0.0, None, f"pooling {len(data)} training pairs")
            mine = dist.shard(np.arange(len(data)))  # under a launch each process pools its slice
            out = score_pairs(model, [data.queries[i] for i in mine], [data.items[i] for i in mine],
                              batch_size=config.eval_batch_size, max_length=config.max_length,
                              progress=lambda done, n: pooling(done, n, 0.0, None, ""))  # a bar move, no log line
            if not dist.active:
                np.save(cache, out.embeddings)
            else:
                np.save(out_dir / f"features.part{dist.rank}.npy", out.embeddings)
                dist.barrier()
                if dist.is_main:
                    whole = np.empty((len(data), out.embeddings.shape[1]), dtype=out.embeddings.dtype)
                    for r in range(dist.world):
                        whole[r::dist.world] = np.load(out_dir / f"features.part{r}.npy")
                    np.save(cache, whole)
                    for r in range(dist.world):
                        (out_dir / f"features.part{r}.npy").unlink()
        dist.barrier()
        features = torch.from_numpy(np.load(cache))
        enc, lengths = None, np.ones(len(data), dtype=np.int64)
    else:
        _emit(progress, config, "preparing")(0, 0, 0.0, None, f"tokenizing {len(data)} training pairs")
        enc = model.tokenize(data.queries, data.items, config.max_length)
        lengths = np.array([len(x) for x in enc["input_ids"]])

    # dpo: the parent is the frozen reference; its logits are computed once and cached.
    pairs = None
    if config.stage == "dpo":
        if dist.is_main:
            stages.dpo_pairs(model, data, config, out_dir)  # computes and caches the reference logits
        dist.barrier()
        pairs = stages.dpo_pairs(model, data, config, out_dir)
        _emit(progress, config, "preparing")(1, 1, 0.0, None,
                                             f"dpo: {int((pairs['rejected'] >= 0).sum())} preference pairs")

    # dasa: every epoch = all new labels + replay_ratio x as many replayed training pairs.
    n_train = len(train)
    def epoch_rows(epoch: int) -> np.ndarray:
        if config.stage != "dasa":
            return np.arange(len(data))
        rng = np.random.default_rng([config.seed, epoch, 7])
        n_replay = min(n_train, int(round(config.replay_ratio * len(new_labels))))
        replay = rng.choice(n_train, size=n_replay, replace=False)
        return np.concatenate([np.arange(n_train, len(data)), replay])

    steps_per_epoch = math.ceil(len(epoch_rows(0)) / config.batch_size)
    total = max(1, math.ceil(config.epochs * steps_per_epoch))
    groups = param_groups(model, config)
    head_params = groups[0]["params"]
    body_params = [p for g in groups[1:] for p in g["params"]]
    optimizer = torch.optim.AdamW(groups)
    warmup = int(config.warmup_ratio * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))

    # average_tail: a running mean of the trained weights after each of the last steps (SWA-style tail averaging)
    trained = head_params + body_params
    average_after = total - int(round(config.average_tail * total)) if config.average_tail > 0 else None
    average: list[torch.Tensor] | None = None
    averaged = 0

    step = 0
    resume = out_dir / "resume.pt"
    rank_rng = out_dir / f"resume.rank{dist.rank}.pt"  # a helper process's own RNG (rank 0's is in resume.pt)
    resumed_loss = None
    trace = LossTrace(total)  # the loss at the stage's start and end: did it learn? (loss_trace.py)
    if resume.is_file():  # pick up exactly where the interrupted run saved
        state = torch.load(resume, map_location="cpu", weights_only=False)
        stages.load_trainable(model, state["weights"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        rng = state
        if not dist.is_main:
            rng = torch.load(rank_rng, map_location="cpu", weights_only=False) if rank_rng.is_file() else {}
            if rng.get("step") != step:  # saved by another number of processes, or lost: resume, not bit-exact
                emit(step, total, step / steps_per_epoch, None, f"rank {dist.rank}: no RNG state saved at step "
                     f"{step}; dropout masks from here differ from an uninterrupted run")
                rng = {}
        _set_rng(rng, model.device)
        average, averaged = state.get("average"), state.get("averaged", 0)
        resumed_loss = state.get("running_loss")
        trace = LossTrace.restore(total, state.get("loss_trace"))
        if average is not None:
            average = [a.to(p.device) for a, p in zip(average, trained, strict=True)]
        emit(step, total, step / steps_per_epoch, resumed_loss, f"resumed at step {step}")

    def save_resume() -> None:
        """Every process saves its RNG; rank 0 also the weights, optimiser and schedule (atomic writes:
        a crash mid-write keeps the old file)."""
        if dist.is_main:
            torch.save({"weights": stages.trainable_tensors(model, config.tuning), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), **_get_rng(model.device), "step": step,
                        "average": average, "averaged": averaged, "running_loss": running,
                        "loss_trace": trace.state()},
                       resume.with_suffix(".tmp"))
            resume.with_suffix(".tmp").replace(resume)
        else:
            torch.save({**_get_rng(model.device), "step": step}, rank_rng.with_suffix(".tmp"))
            rank_rng.with_suffix(".tmp").replace(rank_rng)

    model.train()
    batches, batches_epoch, running, seen, t0 = [], -1, resumed_loss, 0, time.perf_counter()
    while step < total:
        epoch = step // steps_per_epoch
        if epoch != batches_epoch:
            rng = np.random.default_rng([config.seed, epoch])
            batches, batches_epoch = _epoch_batches(lengths, epoch_rows(epoch), config.batch_size, rng), epoch
        batch = batches[step % steps_per_epoch]
        rows = dist.shard(batch)  # all of it in one process; this process's slice under a launch
        optimizer.zero_grad(set_to_none=True)
        if len(rows):
            if features is not None:
                logits = model.head(features[rows].to(model.device))
            else:
                logits, _ = model(**model.collate(enc, rows))
            loss, _parts = darl_loss(logits, grades[rows].to(logits.device), config.loss, weight)
            if pairs is not None:
                loss = config.dpo_sft_weight * loss + stages.batch_dpo_loss(logits, pairs, rows, config)
            if dist.active:  # slices' mean losses weighted by their share: the sum is the whole batch's mean
                loss = loss * (len(rows) / len(batch))
            loss.backward()
        else:
            loss = torch.zeros((), device=model.device)
        if dist.active:
            grads = [_grad(p) for p in head_params + body_params]
            loss = loss.detach().reshape(1)
            dist.sum_(grads + [loss])
        torch.nn.utils.clip_grad_norm_(head_params + body_params, config.grad_clip)
        optimizer.step()
        schedule.step()
        step += 1
        if average_after is not None and step > average_after:
            averaged += 1
            with torch.no_grad():
                if average is None:
                    average = [p.detach().clone() for p in trained]
                else:
                    for a, p in zip(average, trained, strict=True):
                        a.add_(p.detach() - a, alpha=1.0 / averaged)
        seen += len(batch)
        value = loss.item()
        running = value if running is None else 0.9 * running + 0.1 * value
        trace.add(value)
        if step % 10 == 0 or step == total:
            emit(step, total, step / steps_per_epoch, running, f"step {step}/{total} loss {running:.4f}")
        if step % config.save_every == 0 and step < total:
            save_resume()
        if should_stop is not None and step < total and dist.agree(should_stop(), model.device):
            save_resume()
            raise StageCancelled(out_dir, step)
    if average is not None:
        with torch.no_grad():
            for a, p in zip(average, trained, strict=True):
                p.copy_(a)
    model.eval()
    elapsed = time.perf_counter() - t0
    if dist.is_main:  # model.pt is run_stage's to write, after any strength pick and calibration
        torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "step": step},
                   out_dir / "optimizer.pt")
        resume.unlink(missing_ok=True)
    rank_rng.unlink(missing_ok=True)
    return model, {"train_pairs": len(data), "steps": step, "train_loss": running, **trace.metrics(),
                   "train_pairs_per_s": seen / elapsed if elapsed > 0 else None, "tuning": config.tuning,
                   **({"averaged_steps": averaged} if average is not None else {})}


def _get_rng(device: torch.device) -> dict:
    return {"torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng(state: dict, device: torch.device) -> None:
    if state.get("torch_rng") is not None:
        torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def _grad(p: torch.Tensor) -> torch.Tensor:
    """``p.grad``, made zeros when this process's slice did not reach ``p`` (an empty slice)."""
    if p.grad is None:
        p.grad = torch.zeros_like(p)
    return p.grad


def _metrics_of(data: Examples, probs: np.ndarray, config: StageConfig, prefix: str = "val_") -> dict:
    """``evaluate`` of out-of-fold ``probs`` (``posthoc.finish``) plus the number of queries and the
    macro-F1's query-bootstrap 95% interval (a figure on a few queries is a wide one), every key prefixed."""
    m = evaluate(data.grades, probs, data.queries, grade_names=config.grade_names)
    ci = macro_f1_interval(data.grades, probs.argmax(axis=1), data.queries, k=probs.shape[1])
    m.update(queries=ci["queries"], macro_f1_low=ci["low"], macro_f1_high=ci["high"])
    return {f"{prefix}{k}": v for k, v in m.items()}


def predict(model: RelevanceModel, examples: Examples, *, batch_size: int = 128, max_length: int | None = None):
    """Convenience: ``score_pairs`` on an Examples object."""
    return score_pairs(model, examples.queries, examples.items, batch_size=batch_size, max_length=max_length)
