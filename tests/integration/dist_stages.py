"""lp then ft on a tiny BERT, as ``test_distributed.py`` runs it: alone, or under ``accelerate launch``.

    python tests/integration/dist_stages.py MODEL_DIR OUT_DIR
    accelerate launch --cpu --num_processes 2 tests/integration/dist_stages.py MODEL_DIR OUT_DIR [STOP_AFTER]

With STOP_AFTER, the ft stage is cancelled after that many steps (a resume point is saved) and the
script reports ``{"rank": …, "stopped": step}``; run it again without to resume.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tiny_models import make_examples  # noqa: E402

from darl_core import distributed  # noqa: E402
from darl_core.config import LossConfig, StageConfig  # noqa: E402
from darl_core.training import Examples, StageCancelled, run_stage  # noqa: E402


def varied(ex: Examples) -> Examples:
    """Items of different lengths: the processes' slices of a batch pad to different lengths and so draw
    different numbers of dropout values (their RNGs part ways)."""
    return Examples(ex.queries, [it + " extra" * (i % 7) for i, it in enumerate(ex.items)], ex.grades)


def main(model_dir: str, out: str, stop_after: int | None = None) -> None:
    torch.set_num_threads(1)
    train, val = varied(make_examples(48, 3, 0)), varied(make_examples(24, 3, 1))
    common = dict(batch_size=8, max_length=24, seed=0, loss=LossConfig(class_weights=None))
    lp = run_stage(StageConfig("lp", model_dir=model_dir, epochs=2, head_lr=1e-2, **common), train, val,
                   Path(out) / "lp")
    ctx = distributed.context()
    calls = [0]

    def stop() -> bool:
        calls[0] += 1
        return calls[0] == stop_after
    try:
        ft = run_stage(StageConfig("ft", epochs=1, lr=1e-3, head_lr=1e-3, tuning="full", **common), train, val,
                       Path(out) / "ft", parent=lp.checkpoint, should_stop=stop if stop_after else None)
    except StageCancelled as stopped:
        print(json.dumps({"rank": ctx.rank, "world": ctx.world, "stopped": stopped.step}), flush=True)
        return
    print(json.dumps({"rank": ctx.rank, "world": ctx.world, "steps": ft.metrics["steps"],
                      "val_macro_f1": ft.metrics["val_macro_f1"]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
