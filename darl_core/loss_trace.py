"""Did a stage learn anything? The training loss at the start and the end of a stage, and a warning when it
barely fell.

A model that predicts every grade equally scores ln K under class-weighted cross-entropy (the `ce` baseline's
loss), and a fresh head starts there. Full tuning of every layer at lr 1e-4 sometimes never leaves that point:
in ``bench/robustness.py`` at the default profile, `ce` given 1,000 DASA labels ended two of three seeds at a
loss of 1.095 and 1.071 against ln 3 = 1.099 and scored about 10 macro-F1 points below `ce` without them;
``bench/ce_stability.py`` has the lower-lr reruns. Such a stage finishes without an error, so the product says
so in the stage log and the versions table instead of leaving it to the test figures.

The check is made only for stages that train a fresh grade head: lp, and an ft without a parent (the `ce`
baseline, or ft from the backbone). They start near ln K, so a healthy run lowers the loss well past
``MIN_DROP``: lp on frozen MiniLM features fell 8.5-16.8% from its first steps to its last on the five Home
Depot variants. The `ce` runs of the robustness benchmark (no trace recorded then) ended 15-27% below ln 3 on
6,000 pairs and about 4% below it on 1,345 (variant c: 84 steps; final loss 1.05), while the collapsed runs
ended 0.4% and 2.6% below ln 3. An ft from an lp checkpoint starts
from a trained head and may rightly not lower it (a LoRA ft of one epoch on Home Depot ended 1.4% above its
start and still beat its lp), so it is not judged; nor are wi (trains nothing), dasa and dpo (continue from a
tuned model). On very noisy labels with little training (1 epoch, 2 layers) a `ce` run can stay near ln K
too; the warning then says what is true, that the model learned little, and suggests comparing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MIN_DROP = 0.03  # a loss that fell by less than this share from the stage's first steps to its last: warned
WINDOW = 20  # steps averaged at each end (at most a tenth of the stage's steps)


@dataclass
class LossTrace:
    """The first and the last ``window`` step losses of a stage (kept across a resume via ``state``)."""

    total_steps: int
    first: list[float] = field(default_factory=list)
    last: deque = field(default_factory=deque)

    @property
    def window(self) -> int:
        return max(1, min(WINDOW, self.total_steps // 10))

    def add(self, value: float) -> None:
        if value != value:  # NaN: nothing to learn from
            return
        if len(self.first) < self.window:
            self.first.append(float(value))
        self.last.append(float(value))
        while len(self.last) > self.window:
            self.last.popleft()

    def state(self) -> dict:
        return {"first": list(self.first), "last": list(self.last)}

    @classmethod
    def restore(cls, total_steps: int, state: dict | None) -> LossTrace:
        trace = cls(total_steps)
        if state:
            trace.first = [float(v) for v in state.get("first", [])]
            trace.last = deque(float(v) for v in state.get("last", []))
        return trace

    def metrics(self) -> dict:
        if not self.first or not self.last:
            return {}
        return {"train_loss_start": sum(self.first) / len(self.first),
                "train_loss_end": sum(self.last) / len(self.last)}


def learning_warning(stage: str, metrics: dict, tuning: str, lr: float, *, fresh_head: bool) -> str | None:
    """A warning for the stage log when a stage that trained a fresh head (``fresh_head``: lp, or ft without a
    parent) barely lowered its loss; else None."""
    start, end = metrics.get("train_loss_start"), metrics.get("train_loss_end")
    if not fresh_head or start is None or end is None or start <= 0:
        return None
    drop = 1.0 - end / start
    if drop >= MIN_DROP:
        return None
    advice = ("a lower lr often helps (full tuning of every layer: try --lr 3e-5)" if tuning == "full" and stage == "ft"
              else "check the labels and the settings (lr, epochs)")
    moved = f"fell {drop:.1%}" if drop >= 0 else f"rose {-drop:.1%}"
    return (f"training barely lowered its loss ({start:.3f} -> {end:.3f}: it {moved}, under {MIN_DROP:.0%}); the "
            f"model may have learned little or nothing at lr {lr:g}. Compare its validation figures with a "
            f"baseline; {advice}")
