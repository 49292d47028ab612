"""What the zero-shot blend (``StageConfig.zero_shot_blend``) costs at scoring time, against the same model
without it, in one run.

With a blend, ``score_pairs`` also encodes every distinct query and item on its own with the pretrained
backbone (``model.zero_shot_similarity``): LoRA models switch their adapters off for that pass, fully or
partly fine-tuned models load a frozen copy of the backbone once per model object. This script scores the
same pairs with and without a blend, alternating the two ``--repeats`` times, for both kinds, and reports
pairs/s (median) without a blend, with it on a cold text cache (a first scoring: every distinct text
encoded) and with it warm (the texts cached, as when a stage rescores its validation pairs), how many
distinct texts the pass encoded, and the frozen copy's memory.
The pairs are a seeded sample of Home Depot's unlabelled pool (titles and queries repeat there, as in a
real catalogue), or of the demo catalogue when the Home Depot data is absent.

    .venv/bin/python bench/blend_cost.py                # 4,000 pairs, 1 thread, 3 repeats
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import load_window, save  # noqa: E402
from darl_core import homedepot  # noqa: E402
from darl_core.config import LoraSpec  # noqa: E402
from darl_core.errors import DarlError  # noqa: E402
from darl_core.model import (  # noqa: E402
    ZeroShotBlend,
    add_lora,
    load_model,
    score_pairs,
    text_vector_cache,
    zero_shot_similarity,
)


def sample_pairs(n: int, seed: int) -> tuple[list[str], list[str], str]:
    try:
        pool = homedepot.load_splits("small").pool
        source = "Home Depot pool (profile small)"
        queries, items = pool["query"].tolist(), pool["title"].tolist()
    except DarlError:
        from darl_core.demo import generate

        frame = generate()
        source = "demo catalogue"
        queries, items = frame["query"].tolist(), frame["title"].tolist()
    rows = np.random.default_rng(seed).permutation(len(queries))[:n]
    return [queries[i] for i in rows], [items[i] for i in rows], source


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/blend_cost.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    queries, items, source = sample_pairs(args.pairs, args.seed)
    distinct = len(set(queries) | set(items))
    kw = {"batch_size": args.batch_size, "max_length": args.max_length}
    result: dict = {"device": "CPU", "threads": args.threads, "model": "all-MiniLM-L6-v2", "source": source,
                    "pairs": len(queries), "distinct_texts": distinct, "max_length": args.max_length,
                    "batch_size": args.batch_size, "repeats": args.repeats}
    for kind in ("full", "lora"):
        model = load_model(None, 3)
        if kind == "lora":
            add_lora(model, LoraSpec())
        blend = ZeroShotBlend(3)
        with torch.no_grad():
            blend.weight.copy_(torch.tensor([-2.0, 0.0, 2.0]))
        rss_before = rss_mb()
        t = time.perf_counter()
        zero_shot_similarity(model, queries[:8], items[:8], **kw)  # first call: the frozen copy loads here
        first_call_s = time.perf_counter() - t
        copy_mb = sum(p.numel() * p.element_size() for p in model.__dict__["_pretrained"].parameters()) / 2 ** 20 \
            if "_pretrained" in model.__dict__ else 0.0
        times: dict[str, list[float]] = {"plain": [], "blend_cold": [], "blend_warm": []}
        outs = {}
        for _ in range(args.repeats):
            for name in times:
                model.blend = None if name == "plain" else blend
                if name == "blend_cold":  # what a first scoring of these pairs pays: the text cache empty
                    model.__dict__.pop("_text_vectors", None)
                t = time.perf_counter()
                outs[name] = score_pairs(model, queries, items, **kw)
                times[name].append(time.perf_counter() - t)
        cached = len(text_vector_cache(model))
        model.blend = None
        model.__dict__.pop("_text_vectors", None)
        t = time.perf_counter()
        zero_shot_similarity(model, queries, items, **kw)
        similarity_s = time.perf_counter() - t
        plain, cold, warm = (len(queries) / statistics.median(times[n]) for n in times)
        assert np.array_equal(outs["plain"].embeddings, outs["blend_cold"].embeddings)
        assert np.allclose(outs["blend_cold"].logits, outs["blend_warm"].logits, atol=1e-5)
        result[kind] = {"pairs_per_s_plain": plain, "pairs_per_s_blend_cold": cold, "pairs_per_s_blend_warm": warm,
                        "slowdown_cold": plain / cold, "slowdown_warm": plain / warm,
                        "similarity_pass_s": similarity_s, "texts_cached": cached,
                        "seconds": times, "first_call_s": first_call_s,
                        "frozen_copy_mb": copy_mb, "peak_rss_growth_mb": rss_mb() - rss_before}
        print(f"{kind}: {plain:.0f} pairs/s plain; with the blend {cold:.0f} cold ({plain / cold:.2f}x slower), "
              f"{warm:.0f} with its texts cached ({plain / warm:.2f}x); similarity pass {similarity_s:.1f} s over "
              f"{distinct} distinct texts; frozen copy {copy_mb:.0f} MB", flush=True)
        del model
    result["load"] = load_window(load_start)
    save(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
