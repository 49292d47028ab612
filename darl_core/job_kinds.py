"""Job kinds: a registry of handler functions, ``kind -> handler(ctx) -> result dict``.

Handlers are thin: they call one service (train a stage, run a DASA round, evaluate a version,
compute a map, embed a shard) and translate its progress callback into ``ctx.progress``. They run
inside the runner's child process (see ``worker.py``), so heavy imports happen there, lazily.

A handler must be resumable: ``ctx.workdir`` (``DARL_HOME/jobs/<id>``) survives a re-queue, and a
stage resumes from the checkpoint it left there. Between steps it calls ``ctx.should_stop()`` and
raises ``JobStopped`` when told to (a cancel, or the job was taken away from this runner).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darl_core.errors import ConfigError, DarlError

Handler = Callable[["JobContext"], dict[str, Any]]
_HANDLERS: dict[str, Handler] = {}


class JobStopped(DarlError):
    """Raised by a handler when ``should_stop()`` said so; the runner records why."""


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` for ``kind``; a second registration of one kind is refused."""
    def register(fn: Handler) -> Handler:
        if kind in _HANDLERS:
            raise ConfigError(f"job kind {kind!r} is already registered (by {_HANDLERS[kind].__name__})")
        _HANDLERS[kind] = fn
        return fn
    return register


def known_kinds() -> frozenset[str]:
    return frozenset(_HANDLERS)


def get_handler(kind: str) -> Handler:
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise ConfigError(f"no handler for job kind {kind!r}; known: {sorted(_HANDLERS)}") from None


@dataclass
class JobContext:
    """What a handler sees: its parameters, a work directory, and the reporting callbacks."""

    job_id: int
    kind: str
    params: dict[str, Any]
    project_id: int | None
    attempt: int
    workdir: Path
    report: Callable[..., str]  # (progress=, message=, points=) -> "ok" | "cancel" | "lost"
    stop_reason: str | None = None
    min_interval_s: float = 0.5
    _last_write: float = 0.0
    _last_check: float = 0.0
    _pending_points: list[tuple[float, float]] = field(default_factory=list)
    _parent_pid: int = field(default_factory=os.getppid)

    def progress(self, fraction: float, message: str | None = None, *, loss: float | None = None,
                 step: float | None = None, force: bool = False) -> None:
        """Record progress (0..1), optionally a log line and a loss-curve point (step, loss)."""
        if loss is not None and step is not None and loss == loss:  # NaN != NaN
            self._pending_points.append((float(step), float(loss)))
        now = time.monotonic()
        if not (force or message or now - self._last_write >= self.min_interval_s):
            return
        self._note(self.report(progress=fraction, message=message, points=self._pending_points))
        self._pending_points = []
        self._last_write = now

    def log(self, message: str) -> None:
        self._note(self.report(message=message))

    def should_stop(self) -> bool:
        """True when the job was cancelled, taken away, or this runner's worker died."""
        if self.stop_reason is None and os.getppid() != self._parent_pid:
            self.stop_reason = "worker gone"
        now = time.monotonic()
        if self.stop_reason is None and now - self._last_check >= 0.1:
            self._last_check = now
            self._note(self.report())
        return self.stop_reason is not None

    def stop(self) -> JobStopped:
        return JobStopped(f"job {self.job_id} stopped: {self.stop_reason}")

    def _note(self, answer: str) -> None:
        if answer == "cancel":
            self.stop_reason = "cancel requested"
        elif answer == "lost":
            self.stop_reason = "job no longer ours"


# --- built-in kinds ------------------------------------------------------------------------------------


@handler("sleep")
def sleep_job(ctx: JobContext) -> dict[str, Any]:
    """A checkpointed no-op for smoke tests and for testing the runner: ``steps`` x ``step_s`` seconds.

    ``record``: a file to which each finished step appends "job attempt step pid" (tests use it to
    prove a job ran exactly once); ``fail``: raise an error at that step.
    """
    steps, step_s = int(ctx.params.get("steps", 10)), float(ctx.params.get("step_s", 0.2))
    ckpt = ctx.workdir / "sleep.json"
    start = json.loads(ckpt.read_text())["step"] if ckpt.is_file() else 0
    if start:
        ctx.log(f"resumed from checkpoint at step {start}")
    record = ctx.params.get("record")
    for step in range(start, steps):
        if ctx.should_stop():
            raise ctx.stop()
        time.sleep(step_s)
        if ctx.params.get("fail") == step:
            raise ConfigError(f"sleep job asked to fail at step {step}")
        if record:
            with open(record, "a") as fh:
                fh.write(f"{ctx.job_id} {ctx.attempt} {step} {os.getpid()}\n")
        ckpt.write_text(json.dumps({"step": step + 1}))
        ctx.progress((step + 1) / steps, loss=1.0 / (step + 1), step=step + 1)
    return {"steps": steps, "resumed_from": start}


def _stage_progress(ctx: JobContext) -> Callable[[Any], None]:
    """Adapt training's ProgressEvent(stage, step, total_steps, epoch, loss, message) to ctx.progress."""
    def on_event(ev: Any) -> None:
        if ev.total_steps and ev.total_steps > 0 and ev.step >= 0:
            ctx.progress(ev.step / ev.total_steps, None, loss=ev.loss, step=ev.step)
        elif ev.message:
            ctx.progress(1.0 if ev.message == "done" else 0.0, f"{ev.stage}: {ev.message}", force=True)
    return on_event


@handler("train")
def train_job(ctx: JobContext) -> dict[str, Any]:
    """Train one stage (lp / ft / wi / dasa / dpo) and register the new model version."""
    from db.services import training
    from db.session import session_scope

    p = ctx.params
    with session_scope() as session:
        version = training.train_stage(session, p["project"], p["stage"], from_version=p.get("from_version"),
                                       overrides=p.get("overrides") or {}, progress=_stage_progress(ctx),
                                       should_stop=ctx.should_stop)
        return {"version_id": int(version.id)}


@handler("select")
def select_job(ctx: JobContext) -> dict[str, Any]:
    """Embed the pool with a version, score OOD, and open a DASA selection round."""
    from db.services import rounds
    from db.session import session_scope

    p = ctx.params
    with session_scope() as session:
        rnd = rounds.run_selection(session, p["project"], int(p["budget"]), version=p.get("version"),
                                   progress=lambda *a: ctx.progress(_fraction(a), None))
        return {"round_id": int(rnd.id) if hasattr(rnd, "id") else rnd}


@handler("evaluate")
def evaluate_job(ctx: JobContext) -> dict[str, Any]:
    """Score a version on the labelled test_id / test_ood pairs and store metrics + pair scores."""
    from db.services import evaluation

    summary = evaluation.evaluate_version_job(int(ctx.params["version_id"]), progress=ctx.progress,
                                              should_stop=ctx.should_stop)
    return {"version_id": int(ctx.params["version_id"]), **summary}


@handler("map")
def map_job(ctx: JobContext) -> dict[str, Any]:
    """Fit a UMAP map of a version's pair embeddings and store it (coordinates + clusters)."""
    from db.services import maps

    return maps.compute_map_job(int(ctx.params["version_id"]), progress=ctx.progress,
                                should_stop=ctx.should_stop, n_neighbors=int(ctx.params.get("n_neighbors", 15)))


@handler("embed")
def embed_job(ctx: JobContext) -> dict[str, Any]:
    """Embed one shard of a version's pairs into the shared embedding cache (see maps/selection)."""
    from db.services import maps

    return maps.embed_shard_job(int(ctx.params["version_id"]), [int(i) for i in ctx.params["pair_ids"]],
                                progress=ctx.progress, should_stop=ctx.should_stop)


def _fraction(args: tuple[Any, ...]) -> float:
    """Progress callbacks come as (fraction,) or (done, total)."""
    if len(args) >= 2 and args[1]:
        return float(args[0]) / float(args[1])
    return float(args[0]) if args else 0.0
