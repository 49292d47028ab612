"""Tiny BERT and Qwen2 backbones: loading, pooling, scoring, LoRA and checkpoint round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import make_tiny  # tests/integration is on sys.path (pytest prepend mode)

from darl_core.config import LoraSpec
from darl_core.errors import ModelError
from darl_core.model import item_text, load_model, model_from_weights, save_weights, score_pairs

torch.set_num_threads(1)
QUERIES = ["cordless drill", "white paint", "garden hose 50 ft", "led lamp"]
ITEMS = ["18v cordless drill kit with two batteries", "interior paint, white, 1 gal",
         "garden hose — 50 ft heavy duty rubber", "ceiling fan"]


@pytest.fixture(scope="module", params=["bert", "qwen2"])
def tiny(request, tmp_path_factory) -> Path:
    return make_tiny(request.param, tmp_path_factory.mktemp(request.param))


def test_item_text():
    assert item_text("Drill", "18 V") == "Drill — 18 V"
    assert item_text("Drill", "  ") == item_text("Drill") == "Drill"


def test_pooling_and_pad_token_per_family(tiny):
    model = load_model(tiny, 3)
    if model.backbone.config.model_type == "qwen2":
        assert model.is_decoder and model.pooling == "last" and model.tokenizer.padding_side == "right"
    else:
        assert not model.is_decoder and model.pooling == "mean"
    assert model.tokenizer.pad_token_id is not None


@pytest.mark.parametrize("k", [3, 5])
def test_score_pairs_shapes_and_bucketing_do_not_change_outputs(tiny, k):
    torch.manual_seed(0)
    model = load_model(tiny, k)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    calls = []
    out = score_pairs(model, QUERIES, ITEMS, batch_size=3, progress=lambda d, n: calls.append((d, n)))
    assert out.probs.shape == (4, k) and out.logits.shape == (4, k) and out.expected.shape == (4,)
    assert out.embeddings.shape == (4, model.hidden_size) and out.embeddings.dtype == np.float32
    np.testing.assert_allclose(out.probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(out.expected, out.probs @ np.arange(k), atol=1e-5)
    assert calls[-1] == (4, 4)
    # one pair at a time (no padding at all) must give the same numbers as padded, bucketed batches
    single = np.concatenate([score_pairs(model, [q], [i]).logits for q, i in zip(QUERIES, ITEMS, strict=True)])
    np.testing.assert_allclose(out.logits, single, atol=1e-5)
    assert len(score_pairs(model, [], []).probs) == 0


def test_zero_shot_blend_scores_padding_free_and_round_trips(tiny, tmp_path):
    """The blend's pretrained cosine on encoders and decoders: batched and padded equals one text at a time,
    score_pairs applies scale * logits + weight * cos + bias, and save/load keeps it."""
    from darl_core.model import ZeroShotBlend, load_checkpoint, zero_shot_similarity

    torch.manual_seed(0)
    model = load_model(tiny, 3)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    cos = zero_shot_similarity(model, QUERIES, ITEMS, batch_size=3)
    single = np.concatenate([zero_shot_similarity(model, [q], [i]) for q, i in zip(QUERIES, ITEMS, strict=True)])
    np.testing.assert_allclose(cos, single, atol=1e-5)
    assert cos.shape == (4,) and np.all(np.abs(cos) <= 1 + 1e-6)
    assert zero_shot_similarity(model, ["same text"], ["same text"])[0] == pytest.approx(1.0, abs=1e-5)
    plain = score_pairs(model, QUERIES, ITEMS).logits
    model.blend = ZeroShotBlend(3)
    with torch.no_grad():
        model.blend.scale.fill_(0.5)
        model.blend.weight.copy_(torch.tensor([-1.0, 0.0, 2.0]))
        model.blend.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    blended = score_pairs(model, QUERIES, ITEMS).logits
    np.testing.assert_allclose(blended, 0.5 * plain + cos[:, None] * [-1.0, 0.0, 2.0] + [0.1, 0.2, 0.3], atol=1e-5)
    save_weights(model, "head", tmp_path / "model.pt")
    np.testing.assert_allclose(score_pairs(load_checkpoint(tmp_path), QUERIES, ITEMS).logits, blended, atol=1e-5)


def test_lora_changes_adapters_and_leaves_base_frozen(tiny):
    torch.manual_seed(0)
    model = load_model(tiny, 3, lora=LoraSpec(r=4, alpha=8, dropout=0.0))
    base = {k: v.clone() for k, v in model.backbone.state_dict().items() if "lora_" not in k}
    lora = {k: v.clone() for k, v in model.backbone.state_dict().items() if "lora_" in k}
    assert lora, "no LoRA tensors were added"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    enc = model.tokenize(QUERIES, ITEMS, 32)
    model.train()
    for _ in range(3):
        logits, _ = model(**model.collate(enc, range(4)))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([2, 2, 1, 0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in base.items())
    assert any(not torch.equal(after[k], v) for k, v in lora.items() if "lora_B" in k)


@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_save_load_gives_identical_logits(tiny, tmp_path, tuning):
    torch.manual_seed(1)
    model = load_model(tiny, 4, lora=LoraSpec(r=4) if tuning == "lora" else None)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if tuning == "full" or "lora_" in name or name.startswith("head."):
                p.add_(0.05 * torch.randn_like(p))
    save_weights(model, tuning, tmp_path / "model.pt")
    restored = model_from_weights(tmp_path / "model.pt")
    a = score_pairs(model, QUERIES, ITEMS).logits
    b = score_pairs(restored, QUERIES, ITEMS).logits
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, score_pairs(load_model(tiny, 4), QUERIES, ITEMS).logits)


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path)


def test_text_vector_cache_is_bounded_and_least_recently_used_goes_first():
    from darl_core.model import TextVectorCache

    cache = TextVectorCache(max_bytes=3 * 16)  # three float32 vectors of 4
    for i in range(3):
        cache.put((64, f"t{i}"), np.full(4, i, dtype=np.float32))
    assert cache.get((64, "t0"))[0] == 0  # t0 is now the most recent
    cache.put((64, "t3"), np.full(4, 3, dtype=np.float32))
    assert cache.get((64, "t1")) is None and len(cache) == 3 and cache.bytes == 48
    assert cache.get((32, "t0")) is None  # another max_length is another text
    cache.put((64, "huge"), np.zeros(100, dtype=np.float32))  # larger than the bound: not kept
    assert cache.get((64, "huge")) is None and len(cache) == 3


def test_zero_shot_similarity_encodes_each_text_once_per_model(tiny, monkeypatch):
    from darl_core import model as model_mod

    model = load_model(tiny, 3)
    encoded: list[int] = []
    real = model_mod.pretrained_backbone

    def counting(m):
        ctx = real(m)
        backbone = ctx.__enter__()
        hook = backbone.register_forward_hook(lambda mod, args, kwargs, out: encoded.append(
            int(kwargs["input_ids"].shape[0])), with_kwargs=True)

        class Ctx:
            def __enter__(self):
                return backbone

            def __exit__(self, *exc):
                hook.remove()
                return ctx.__exit__(*exc)
        return Ctx()
    monkeypatch.setattr(model_mod, "pretrained_backbone", counting)
    first = model_mod.zero_shot_similarity(model, QUERIES, ITEMS)
    assert sum(encoded) == len(set(QUERIES) | set(ITEMS))
    encoded.clear()
    again = model_mod.zero_shot_similarity(model, QUERIES[::-1] + ["new query"], ITEMS[::-1] + [ITEMS[0]])
    assert sum(encoded) == 1  # only the new text
    np.testing.assert_allclose(again[:4][::-1], first, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("DARL_ZS_CACHE_MB", "0")
    cold = load_model(tiny, 3)
    encoded.clear()
    np.testing.assert_allclose(model_mod.zero_shot_similarity(cold, QUERIES, ITEMS), first, rtol=1e-5, atol=1e-6)
    model_mod.zero_shot_similarity(cold, QUERIES, ITEMS)
    assert sum(encoded) == 2 * len(set(QUERIES) | set(ITEMS))  # cache off: encoded every time
