"""The loss trace of a stage (darl_core/loss_trace.py): its two ends, kept across a resume, and the warning
for a stage that trains a fresh head yet barely lowers its loss."""

from __future__ import annotations

import math

import pytest

from darl_core.loss_trace import MIN_DROP, LossTrace, learning_warning


def test_the_trace_keeps_the_first_and_last_window_of_steps() -> None:
    trace = LossTrace(total_steps=100)  # window: a tenth of the steps, at most 20 -> 10
    for step in range(100):
        trace.add(2.0 - step / 100)
    trace.add(math.nan)  # a NaN step is skipped, not averaged in
    m = trace.metrics()
    assert m["train_loss_start"] == pytest.approx(2.0 - 4.5 / 100)  # steps 0..9
    assert m["train_loss_end"] == pytest.approx(2.0 - 94.5 / 100)  # steps 90..99
    assert LossTrace(total_steps=5).window == 1 and LossTrace(total_steps=1000).window == 20
    assert LossTrace(total_steps=10).metrics() == {}  # nothing recorded yet


def test_a_restored_trace_goes_on_as_if_never_cut() -> None:
    whole, first = LossTrace(40), LossTrace(40)
    values = [1.1 - 0.01 * i for i in range(40)]
    for v in values:
        whole.add(v)
    for v in values[:13]:
        first.add(v)
    resumed = LossTrace.restore(40, first.state())
    for v in values[13:]:
        resumed.add(v)
    assert resumed.metrics() == pytest.approx(whole.metrics())


@pytest.mark.parametrize(("stage", "start", "end", "fresh", "warned", "advice"), [
    ("ft", 1.0986, 1.0947, True, True, "try --lr 3e-5"),  # the collapsed default-profile ce_plus_labels
    ("ft", 1.0986, 1.20, True, True, "try --lr 3e-5"),  # a rising loss is warned too
    ("lp", 1.10, 1.09, True, True, "check the labels"),  # a probe that learned nothing: no lr advice
    ("lp", 1.3805, 1.2347, True, False, None),  # a healthy linear probe on Home Depot (10.6%)
    ("ft", 1.0, 1.0 - MIN_DROP, True, False, None),  # exactly the threshold: not warned
    ("ft", 1.2619, 1.2799, False, False, None),  # ft from an lp head (measured: +1.4%, and it beat its lp)
    ("dasa", 1.0, 1.0, False, False, None),  # continues from a tuned model: not judged by its loss
])
def test_the_warning(stage: str, start: float, end: float, fresh: bool, warned: bool, advice: str | None) -> None:
    text = learning_warning(stage, {"train_loss_start": start, "train_loss_end": end}, "full", 1e-4, fresh_head=fresh)
    assert (text is not None) == warned
    if warned:
        assert advice in text and f"{start:.3f} -> {end:.3f}" in text
    assert learning_warning(stage, {}, "full", 1e-4, fresh_head=fresh) is None  # stored before the trace existed
