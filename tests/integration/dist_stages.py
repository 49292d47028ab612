"""lp then ft on a tiny BERT, as ``test_distributed.py`` runs it: alone, or under ``accelerate launch``.

    python tests/integration/dist_stages.py MODEL_DIR OUT_DIR
    accelerate launch --cpu --num_processes 2 tests/integration/dist_stages.py MODEL_DIR OUT_DIR
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
from darl_core.training import run_stage  # noqa: E402


def main(model_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    train, val = make_examples(48, 3, 0), make_examples(24, 3, 1)
    common = dict(batch_size=8, max_length=24, seed=0, loss=LossConfig(class_weights=None))
    lp = run_stage(StageConfig("lp", model_dir=model_dir, epochs=2, head_lr=1e-2, **common), train, val,
                   Path(out) / "lp")
    ft = run_stage(StageConfig("ft", epochs=1, lr=1e-3, head_lr=1e-3, tuning="full", **common), train, val,
                   Path(out) / "ft", parent=lp.checkpoint)
    ctx = distributed.context()
    print(json.dumps({"rank": ctx.rank, "world": ctx.world, "steps": ft.metrics["steps"],
                      "val_macro_f1": ft.metrics["val_macro_f1"]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
