"""Pooled pair embeddings per model version, cached on disk under ``DARL_HOME`` and reused.

The cache of one model version is a folder ``DARL_HOME/embeddings/<key>/`` of append-only parts
(``part-*.npz``: pair ids, embeddings, grade logits). ``embed_cached`` loads what is there and embeds
only the pairs it lacks, so later rounds pay for new pairs only. Parts are written to a temporary
name and renamed, so a crash never leaves a half-written part, and two writers never clash.

``pooled_layers`` pools several hidden layers (and the query / item segments) in one forward pass:
the last layer is rarely the best for OOD detection (Darrin et al. 2023).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from darl_core.errors import ConfigError
from darl_core.settings import darl_home

Compute = Callable[[Sequence[str], Sequence[str]], tuple[np.ndarray, np.ndarray | None]]
Progress = Callable[[int, int], None]


def _safe(key: str) -> str:
    if not key or not re.fullmatch(r"[A-Za-z0-9_.=+-]+", key) or key in (".", ".."):
        raise ConfigError(f"embedding cache key must be letters, digits or _.=+-, got {key!r}")
    return key


class EmbeddingCache:
    """Embeddings (and grade logits) of pairs under one model version, keyed by pair id."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.key = _safe(key)
        self.dir = (root or darl_home() / "embeddings") / self.key

    def load(self) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
        """(pair ids as strings, embeddings [N, D], logits [N, K] or None); first copy of an id wins."""
        ids: list[str] = []
        embs, logits = [], []
        for part in sorted(self.dir.glob("part-*.npz")):
            with np.load(part, allow_pickle=False) as z:
                ids.extend(z["ids"].tolist())
                embs.append(z["embeddings"])
                logits.append(z["logits"] if "logits" in z.files else None)
        if not embs:
            return [], None, None
        emb = np.concatenate(embs)
        lg = np.concatenate(logits) if all(x is not None for x in logits) else None
        _, first = np.unique(np.asarray(ids), return_index=True)
        if len(first) < len(ids):
            keep = np.sort(first)
            ids = [ids[i] for i in keep]
            emb, lg = emb[keep], (lg[keep] if lg is not None else None)
        return ids, emb, lg

    def add(self, pair_ids: Sequence[object], embeddings: np.ndarray, logits: np.ndarray | None = None) -> None:
        if len(pair_ids) == 0:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(list(self.dir.glob('part-*.npz'))):06d}-{uuid.uuid4().hex[:8]}"
        tmp = self.dir / f".{name}.tmp.npz"
        arrays = {"ids": np.asarray([str(i) for i in pair_ids]), "embeddings": np.asarray(embeddings, np.float32)}
        if logits is not None:
            arrays["logits"] = np.asarray(logits, np.float32)
        np.savez(tmp, **arrays)
        os.replace(tmp, self.dir / f"{name}.npz")


def embed_cached(cache: EmbeddingCache, pair_ids: Sequence[object], queries: Sequence[str],
                 items: Sequence[str], compute: Compute, *, chunk: int = 4096,
                 progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings (and logits, when ``compute`` gives them) of ``pair_ids`` in order; only the pairs
    missing from ``cache`` are computed, in chunks that are saved as they finish (resumable)."""
    if not len(pair_ids) == len(queries) == len(items):
        raise ConfigError(f"pair_ids, queries and items differ in length: "
                          f"{len(pair_ids)}, {len(queries)}, {len(items)}")
    keys = [str(i) for i in pair_ids]
    have_ids, have_emb, have_logits = cache.load()
    where = {k: i for i, k in enumerate(have_ids)}
    missing = [i for i, k in enumerate(keys) if k not in where]
    done = len(keys) - len(missing)
    for s in range(0, len(missing), chunk):
        rows = missing[s:s + chunk]
        emb, logits = compute([queries[i] for i in rows], [items[i] for i in rows])
        cache.add([keys[i] for i in rows], emb, logits)
        done += len(rows)
        if progress is not None:
            progress(done, len(keys))
    if missing:
        have_ids, have_emb, have_logits = cache.load()
        where = {k: i for i, k in enumerate(have_ids)}
    if not keys:
        return np.zeros((0, 0), np.float32), None
    order = np.array([where[k] for k in keys], dtype=np.int64)
    return have_emb[order], (have_logits[order] if have_logits is not None else None)


def model_compute(model, *, batch_size: int = 64, progress: Progress | None = None) -> Compute:  # noqa: ANN001
    """A ``Compute`` from a ``darl_core.model.RelevanceModel``: pooled embeddings and grade logits."""
    from darl_core.model import score_pairs

    def run(queries: Sequence[str], items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        out = score_pairs(model, queries, items, batch_size=batch_size)
        return out.embeddings, out.logits
    return run


def lazy_compute(artifact_path: str | None) -> Compute:
    """``model_compute`` of a checkpoint (None: the pretrained backbone), loaded on the first call only,
    so a run whose pairs are all in the cache never loads a model."""
    from darl_core.model import load_checkpoint, load_model

    model = None

    def run(queries: Sequence[str], items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        nonlocal model
        if model is None:
            model = load_model() if artifact_path is None else load_checkpoint(artifact_path)
        return model_compute(model)(queries, items)
    return run


@torch.inference_mode()
def pooled_layers(model, queries: Sequence[str], items: Sequence[str], *, layers: Sequence[int] | None = None,  # noqa: ANN001
                  batch_size: int = 64, max_length: int = 128,
                  progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Mean-pooled hidden states of several layers in one pass, over the whole pair (``L{i}``) and,
    for encoders with segment ids, over the query (``L{i}q``) and item (``L{i}i``) tokens alone."""
    from darl_core.model import length_buckets

    enc = model.tokenize(queries, items, max_length)
    n = len(queries)
    out: dict[str, np.ndarray] = {}
    done = 0
    for rows in length_buckets([len(x) for x in enc["input_ids"]], batch_size):
        batch = {k: v.to(model.device) for k, v in model.collate(enc, rows).items()}
        hidden = model.backbone(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].float()
        segments = {"": mask}
        if "token_type_ids" in batch:
            item_mask = batch["token_type_ids"].float() * mask
            segments.update({"q": mask - item_mask, "i": item_mask})
        for layer in layers if layers is not None else range(len(hidden)):
            for tag, m in segments.items():
                pooled = (hidden[layer] * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
                name = f"L{layer % len(hidden)}{tag}"
                if name not in out:
                    out[name] = np.zeros((n, pooled.shape[1]), np.float32)
                out[name][rows] = pooled.float().cpu().numpy()
        done += len(rows)
        if progress is not None:
            progress(done, n)
    return out
