"""Job kinds: a registry of handler functions, ``kind -> handler(ctx) -> result dict``.

Handlers are thin: they call one service (train a stage, run a DASA round, evaluate a version,
compute a map, embed a shard) and translate its progress callback into ``ctx.progress``. They run
inside the runner's child process (see ``worker.py``), so heavy imports happen there, lazily.

A handler must be resumable: ``ctx.workdir`` (``DARL_HOME/jobs/<id>``) survives a re-queue, and a
stage resumes from the checkpoint it left there. Between steps it calls ``ctx.should_stop()`` and
raises ``JobStopped`` when told to (a cancel, or the job was taken away from this runner).

Handlers call the services as ``SYSTEM`` (the worker): the user's role was checked when the job was
queued (``jobs.enqueue``), and the job row keeps who that was (``created_by``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darl_core.errors import ConfigError, JobStopped
from db.services.jobs import JOB_KINDS

Handler = Callable[["JobContext"], dict[str, Any]]
_HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` for ``kind``; a second registration of one kind is refused."""
    def register(fn: Handler) -> Handler:
        if kind not in JOB_KINDS:
            raise ConfigError(f"job kind {kind!r} is not in db.services.jobs.JOB_KINDS; add it there first")
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


# The phase a job panel shows for kinds whose handlers report none of their own (train reports pooling,
# training, ...): with it the panel also shows the time left.
KIND_PHASE = {"select": "selecting", "evaluate": "evaluating", "map": "mapping", "embed": "embedding",
              "check_labels": "checking labels"}


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
    _started: tuple[float, float] | None = None  # (monotonic time, fraction) of the first report
    _parent_pid: int = field(default_factory=os.getppid)

    def progress(self, fraction: float, message: str | None = None, *, loss: float | None = None,
                 step: float | None = None, force: bool = False, phase: str | None = None) -> None:
        """Record progress (0..1), optionally a log line and a loss-curve point (step, loss). With a
        ``phase`` (pooling, training, ...; default ``KIND_PHASE[kind]``) the job also shows it and an estimate
        of the time left."""
        phase = phase or KIND_PHASE.get(self.kind)
        if loss is not None and step is not None and loss == loss:  # NaN != NaN
            self._pending_points.append((float(step), float(loss)))
        now = time.monotonic()
        if self._started is None:
            self._started = (now, fraction)  # a resumed attempt starts part way: time the rest only
        if not (force or message or now - self._last_write >= self.min_interval_s):
            return
        extra: dict[str, Any] = {}
        if phase is not None:
            extra = {"phase": phase, "eta_s": self.eta_s(fraction, now)}
        self._note(self.report(progress=fraction, message=message, points=self._pending_points, **extra))
        self._pending_points = []
        self._last_write = now

    def eta_s(self, fraction: float, now: float | None = None) -> float | None:
        """Seconds left at the pace so far this attempt; None until there is a pace to go by."""
        if self._started is None:
            return None
        t0, f0 = self._started
        elapsed, done = (time.monotonic() if now is None else now) - t0, fraction - f0
        if done < 0.01 or elapsed < 1.0:
            return None
        return max(elapsed * (1.0 - fraction) / done, 0.0)

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


_STEP = re.compile(r"step (\d+)/(\d+) loss ([-+0-9.eE]+|nan)")


@contextmanager
def _service_session(ctx: JobContext) -> Iterator[tuple[Any, Callable[[float, str], None], Callable[[], bool]]]:
    """A session for a service that holds it for a long computation, plus progress / stop callbacks.

    On SQLite every transaction takes the write lock at BEGIN, so a service that reads, computes for
    minutes and then writes would lock out our progress reports (and the UI). The callbacks commit
    the service's session first (it has only read at that point: the services write at the end),
    which releases the lock; its next statement starts a new transaction.
    """
    from db.services.training import PHASE_MESSAGE
    from db.session import is_sqlite, session_scope

    with session_scope() as session:
        sqlite = is_sqlite(session)

        def release() -> None:
            if sqlite and session.in_transaction():
                session.commit()

        def progress(fraction: float, message: str = "") -> None:
            release()
            phased = PHASE_MESSAGE.match(message or "")  # "lp · pooling: ...": the panel shows the phase
            phase = phased["phase"] if phased else None
            m = _STEP.search(message or "")
            if m:  # "stage: step 10/200 loss 0.8123": a loss-curve point, not a log line
                ctx.progress(fraction, None, loss=float(m[3]), step=int(m[1]), phase=phase)
            elif phased and not phased["text"].strip():  # the bar moved within a phase: nothing to log
                ctx.progress(fraction, None, phase=phase)
            else:
                ctx.progress(fraction, message or None, phase=phase)

        def should_stop() -> bool:
            release()
            return ctx.should_stop()

        yield session, progress, should_stop


@handler("train")
def train_job(ctx: JobContext) -> dict[str, Any]:
    """Train one stage (lp / ft / wi / dasa / dpo), register the version, then queue its evaluation."""
    from db.services import jobs, training
    from db.services.users import SYSTEM

    p = ctx.params
    with _service_session(ctx) as (session, progress, should_stop):
        version = training.train_stage(session, p["project"], p["stage"], from_version=p.get("from_version"),
                                       overrides=p.get("overrides") or {}, progress=progress,
                                       should_stop=should_stop, actor=SYSTEM)
        version.job_id = ctx.job_id
        out = {"version_id": int(version.id), "version": version.name}
        if p.get("evaluate", True) and any(k.startswith("test_") for k in version.metrics or {}):
            out["evaluation_job"] = jobs.enqueue(session, "evaluate", {"version_id": version.id},
                                                 project_id=version.project_id, actor=SYSTEM).id
        return out


@handler("select")
def select_job(ctx: JobContext) -> dict[str, Any]:
    """Embed the pool with a version (after its embedding shards), score OOD, open a DASA round."""
    from db.services import maps, rounds
    from db.services.users import SYSTEM

    p = ctx.params
    if p.get("shards"):
        maps.run_shards([int(i) for i in p["shards"]], lambda f, m: ctx.progress(f, m), ctx.should_stop,
                        actor=SYSTEM)
    with _service_session(ctx) as (session, progress, _stop):
        rnd = rounds.run_selection(session, p["project"], int(p["budget"]), version=p.get("version"),
                                   progress=progress, created_by=p.get("created_by"), by=p.get("by", "pair"),
                                   per_query=int(p.get("per_query", 10)), aggregate=p.get("aggregate", "mean"),
                                   actor=SYSTEM)
        return {"round_id": int(rnd.id), "size": int(p["budget"])}


@handler("evaluate")
def evaluate_job(ctx: JobContext) -> dict[str, Any]:
    """Score a version on the labelled test_id / test_ood pairs and store metrics + pair scores."""
    from db.services import evaluation
    from db.services.users import SYSTEM

    summary = evaluation.evaluate_version_job(int(ctx.params["version_id"]), progress=ctx.progress,
                                              should_stop=ctx.should_stop, actor=SYSTEM)
    return {"version_id": int(ctx.params["version_id"]), **summary}


@handler("map")
def map_job(ctx: JobContext) -> dict[str, Any]:
    """Fit a UMAP map of a version's pair embeddings and store it (coordinates + clusters)."""
    from db.services import maps
    from db.services.users import SYSTEM

    p = ctx.params
    return maps.compute_map_job(int(p["version_id"]), progress=ctx.progress, should_stop=ctx.should_stop,
                                n_neighbors=int(p.get("n_neighbors", 15)), refit=bool(p.get("refit")),
                                shards=[int(i) for i in p.get("shards") or []], seed=p.get("seed"),
                                actor=SYSTEM)


@handler("embed")
def embed_job(ctx: JobContext) -> dict[str, Any]:
    """Embed one shard of a version's pairs into the shared embedding cache (see maps/selection)."""
    from db.services import maps
    from db.services.users import SYSTEM

    return maps.embed_shard_job(int(ctx.params["version_id"]), [int(i) for i in ctx.params["pair_ids"]],
                                progress=ctx.progress, should_stop=ctx.should_stop, actor=SYSTEM)




@handler("check_labels")
def check_labels_job(ctx: JobContext) -> dict[str, Any]:
    """Embed the labelled pairs, cross-fit the grade head (or refit ce per fold) and store the label check."""
    from db.services import label_check
    from db.services.users import SYSTEM

    p = ctx.params
    with _service_session(ctx) as (session, progress, _stop):
        check = label_check.run_label_check(session, p["project"], p.get("version"), progress,
                                            method=p.get("method", "ordinal"), refit=bool(p.get("refit")),
                                            refit_overrides=p.get("refit_overrides"), should_stop=_stop,
                                            created_by=p.get("created_by"), job_id=ctx.job_id, actor=SYSTEM)
        return {"check_id": int(check.id), "pairs": int(check.pairs), "suspects": int(check.suspects)}
