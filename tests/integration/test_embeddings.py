"""Embedding cache (only new pairs are embedded) and multi-layer pooling on a tiny BERT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from darl_core.embeddings import EmbeddingCache, embed_cached, pooled_layers
from darl_core.errors import ConfigError


def _fake(calls: list[int]):  # type: ignore[no-untyped-def]
    def compute(queries, items):  # type: ignore[no-untyped-def]
        calls.append(len(queries))
        emb = np.array([[len(q), len(i)] for q, i in zip(queries, items, strict=True)], np.float32)
        return emb, -emb
    return compute


def test_cache_embeds_only_new_pairs_and_keeps_order(tmp_path: Path) -> None:
    cache = EmbeddingCache("v7", root=tmp_path)
    calls: list[int] = []
    emb, logits = embed_cached(cache, [1, 2, 3], ["a", "bb", "ccc"], ["x", "y", "z"], _fake(calls), chunk=2)
    assert calls == [2, 1] and emb[:, 0].tolist() == [1, 2, 3] and logits[0, 0] == -1
    emb, _ = embed_cached(cache, [4, 3, 1], ["dddd", "ccc", "a"], ["w", "z", "x"], _fake(calls))
    assert calls == [2, 1, 1]  # only pair 4 was new
    assert emb[:, 0].tolist() == [4, 3, 1]
    ids, _, _ = EmbeddingCache("v7", root=tmp_path).load()
    assert sorted(ids) == ["1", "2", "3", "4"]
    assert EmbeddingCache("v8", root=tmp_path).load()[0] == []  # keyed by model version
    with pytest.raises(ConfigError, match="'../x'"):
        EmbeddingCache("../x", root=tmp_path)


def test_pooled_layers_on_a_tiny_bert(tmp_path: Path) -> None:
    from darl_core.model import load_model, score_pairs
    from tests.integration.tiny_models import make_tiny

    model = load_model(make_tiny("bert", tmp_path / "tiny"), pooling="mean")
    q, i = ["cordless drill", "white paint"], ["18v drill kit", "interior paint gallon"]
    feats = pooled_layers(model, q, i)
    assert {"L0", "L2", "L2q", "L2i"} <= set(feats)
    # The last layer over the whole pair is exactly the model's own pooled embedding.
    np.testing.assert_allclose(feats["L2"], score_pairs(model, q, i).embeddings, atol=1e-5)
    assert not np.allclose(feats["L2q"], feats["L2i"])
