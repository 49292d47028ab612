"""Tiny BERT and Qwen2 backbones built from configs (no downloads), sharing the packaged tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from darl_core.settings import default_model_dir

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _copy_tokenizer(dest: Path) -> None:
    src = default_model_dir()
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dest / name)


def make_tiny(kind: str, dest: Path) -> Path:
    """Save a 2-layer, hidden-32 ``bert`` or ``qwen2`` model with the MiniLM tokenizer into ``dest``."""
    from transformers import AutoModel, BertConfig, Qwen2Config

    torch.manual_seed(0)
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "bert":
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128)
    elif kind == "qwen2":
        config = Qwen2Config(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128,
                             pad_token_id=0, architectures=["Qwen2ForCausalLM"])
    else:
        raise ValueError(kind)
    AutoModel.from_config(config).save_pretrained(dest)
    _copy_tokenizer(dest)
    return dest
