"""Stage progress: one bar across all of a stage's phases, each phase a fixed share of it.

A stage is more than its training steps: an lp stage first pools every training pair through the
frozen backbone (most of its time on a large project), dpo computes its reference logits and picks a
strength, every stage scores validation pairs and calibrates at the end. Reporting only steps /
total left the bar at 0% through pooling; each event now carries its ``phase`` and the stage-wide
``fraction``: the phase's span below, filled by the phase's own done / total.
"""

from __future__ import annotations

from dataclasses import dataclass

# Each phase's share of the bar, (start, end), in the order a stage runs them. lp: pooling dominates
# (the head then trains on cached features in seconds); wi: scoring each interpolation weight on val.
SPANS: dict[str, dict[str, tuple[float, float]]] = {
    "lp": {"pooling": (0.0, 0.6), "training": (0.6, 0.9), "evaluation": (0.9, 1.0)},
    "wi": {"interpolation": (0.0, 0.9), "evaluation": (0.9, 1.0)},
    "dpo": {"preparing": (0.0, 0.1), "training": (0.1, 0.75), "strength pick": (0.75, 0.9),
            "evaluation": (0.9, 1.0)},
}
DEFAULT_SPANS = {"preparing": (0.0, 0.05), "training": (0.05, 0.9), "evaluation": (0.9, 1.0)}  # ft, dasa


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    step: int
    total_steps: int
    epoch: float
    loss: float | None
    message: str
    phase: str = ""  # pooling, preparing, training, interpolation, strength pick, evaluation, done
    fraction: float | None = None  # of the whole stage, 0..1 (None: not known)


def stage_fraction(stage: str, phase: str, done: float, total: float) -> float:
    """Where ``done`` of ``total`` in ``phase`` puts the stage's bar (1.0 once the stage is done)."""
    if phase == "done":
        return 1.0
    lo, hi = SPANS.get(stage, DEFAULT_SPANS).get(phase, (0.0, 0.0))
    share = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
    return lo + (hi - lo) * share
