"""Training and inference speed of the stage runner against plain transformers baselines, one run.

- Training: ``run_stage("ft")`` vs ``transformers.Trainer`` on the same model (default MiniLM + the same
  LoRA + the same head, cross-entropy), the same Home Depot pairs, batch size, learning rate, epochs
  and threads. The Trainer gets the usual recipe: tokenize once with ``padding="max_length"``.
- Inference: ``score_pairs`` (length bucketing + dynamic padding) vs a fixed-padding loop.
- Peak RSS of the process after the stage runner trained the default model (before the Trainer runs).

    nice -n 10 .venv/bin/python bench/train_speed.py --pairs 960 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from darl_core import homedepot  # noqa: E402
from darl_core.config import LossConfig, StageConfig  # noqa: E402
from darl_core.model import add_lora, load_model, score_pairs  # noqa: E402
from darl_core.training import Examples, run_stage  # noqa: E402


class ForTrainer(torch.nn.Module):
    """Our RelevanceModel with the loss inside forward, as Trainer expects."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        logits, _ = self.model(input_ids, attention_mask, token_type_ids)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def trainer_pairs_per_s(config: StageConfig, train: Examples, out: Path) -> float:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = load_model(None, 3)
    add_lora(model, config.lora)
    enc = model.tokenizer(train.queries, train.items, truncation="longest_first", padding="max_length",
                          max_length=config.max_length)
    rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "token_type_ids": enc["token_type_ids"][i], "labels": int(train.grades[i])} for i in range(len(train))]
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=config.batch_size,
                             num_train_epochs=config.epochs, learning_rate=config.lr,
                             warmup_steps=config.warmup_ratio,  # transformers 5: a float < 1 is a ratio
                             weight_decay=config.weight_decay, max_grad_norm=config.grad_clip, save_strategy="no",
                             report_to=[], logging_steps=10_000, use_cpu=True, dataloader_num_workers=0,
                             disable_tqdm=True, seed=0)
    trainer = Trainer(model=ForTrainer(model), args=args, train_dataset=rows)
    t = time.perf_counter()
    trainer.train()
    return len(train) * config.epochs / (time.perf_counter() - t)


def fixed_padding_pairs_per_s(model, ex: Examples, batch: int, max_length: int) -> float:
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(ex), batch):
            enc = model.tokenizer(ex.queries[i:i + batch], ex.items[i:i + batch], truncation="longest_first",
                                  padding="max_length", max_length=max_length, return_tensors="pt")
            model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
    return len(ex) / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=960)
    ap.add_argument("--infer-pairs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--out", default="bench/results/train_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sp = homedepot.load_splits("small")
    tr = sp.train.iloc[:args.pairs]
    train = Examples(tr["query"].tolist(), tr["title"].tolist(), tr["grade"].to_numpy())
    va = sp.val_id.iloc[:64]
    val = Examples(va["query"].tolist(), va["title"].tolist(), va["grade"].to_numpy())
    config = StageConfig("ft", epochs=1, batch_size=32, lr=5e-4, head_lr=5e-4, max_length=args.max_length,
                         loss=LossConfig(class_weights=None), tuning="lora", threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_stage(config, train, val, Path(tmp) / "ours")
        ours_loop = res.metrics["train_pairs_per_s"]
        rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        trainer = trainer_pairs_per_s(config, train, Path(tmp) / "trainer")
    te = sp.test_id.iloc[:args.infer_pairs]
    test = Examples(te["query"].tolist(), te["title"].tolist(), te["grade"].to_numpy())
    model = load_model(None, 3)
    t = time.perf_counter()
    score_pairs(model, test.queries, test.items, batch_size=64, max_length=args.max_length)
    ours_infer = len(test) / (time.perf_counter() - t)
    fixed = fixed_padding_pairs_per_s(model, test, 64, args.max_length)
    lengths = [len(x) for x in model.tokenize(test.queries, test.items, args.max_length)["input_ids"]]
    result = {
        "device": "CPU", "threads": args.threads, "model": "all-MiniLM-L6-v2 + LoRA r16 (all linear layers)",
        "train_pairs": len(train), "batch_size": 32, "max_length": args.max_length,
        "mean_tokens_per_pair": float(np.mean(lengths)),
        "train_pairs_per_s_ours": ours_loop, "train_pairs_per_s_trainer": trainer,
        "train_speedup": ours_loop / trainer, "train_target": 1.5,
        "infer_pairs": len(test), "infer_pairs_per_s_ours": ours_infer, "infer_pairs_per_s_fixed_padding": fixed,
        "infer_speedup": ours_infer / fixed, "infer_target": 2.0,
        "peak_rss_gb_training": rss_gb, "rss_target_gb": 3.0,
        "note": "ours = length-bucketed batches with dynamic padding; Trainer/fixed loop pad to max_length",
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
