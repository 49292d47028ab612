"""Tiny BERT and Qwen2 backbones built from configs (no downloads), sharing the packaged tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from darl_core.settings import default_model_dir
from db.services.users import SYSTEM

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _copy_tokenizer(dest: Path) -> None:
    src = default_model_dir()
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dest / name)


def make_tiny(kind: str, dest: Path, dropout: float | None = None) -> Path:
    """Save a 2-layer, hidden-32 ``bert`` or ``qwen2`` model with the MiniLM tokenizer into ``dest``.

    ``dropout`` (bert): hidden and attention dropout, when a test needs training to be deterministic
    whatever the batch is split into."""
    from transformers import AutoModel, BertConfig, Qwen2Config

    torch.manual_seed(0)
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "bert":
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128)
        if dropout is not None:
            config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    elif kind == "qwen2":
        config = Qwen2Config(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1, intermediate_size=64, max_position_embeddings=128,
                             pad_token_id=0, architectures=["Qwen2ForCausalLM"])
    else:
        raise ValueError(kind)
    AutoModel.from_config(config).save_pretrained(dest)
    _copy_tokenizer(dest)
    return dest


WORDS = ["drill", "paint", "hose", "saw", "lamp", "door", "tile", "fan", "sink", "rake"]


def make_examples(n: int, k: int, seed: int):  # noqa: ANN201 - darl_core.training.Examples
    """``n`` toy pairs on a ``k``-grade scale: the top grade when the query word is in the item."""
    from darl_core.training import Examples

    rng = np.random.default_rng(seed)
    queries = [str(rng.choice(WORDS)) for _ in range(n)]
    items = [f"{rng.choice(WORDS)} {rng.choice(WORDS)} pro" for _ in range(n)]
    grades = [k - 1 if q in it else int(rng.integers(0, k - 1)) for q, it in zip(queries, items, strict=True)]
    return Examples(queries, items, np.array(grades))


def seed_tiny_project(session, model_dir: Path, n: int = 60) -> None:  # noqa: ANN001
    """Project ``tiny`` on ``model_dir`` with ``n`` imported grades, every 4th pair in the val split."""
    from db.services.projects import create_project

    project = create_project(session, "tiny", ["irrelevant", "weak", "strong"], settings={"model_dir": str(model_dir)}, actor=SYSTEM)
    _add_graded(session, project.id, make_examples(n, 3, 7), "", lambda i: "val" if i % 4 == 0 else None)


def add_new_labels(session, project_id: int, n: int = 12, seed: int = 21) -> None:  # noqa: ANN001
    """``n`` graded pool pairs labelled now: a round's worth of new labels for a dasa stage."""
    _add_graded(session, project_id, make_examples(n, 3, seed), "n", lambda i: "pool")


def _add_graded(session, project_id: int, ex, prefix: str, split) -> None:  # noqa: ANN001
    from db.models import Item, LabelEvent, LabelKind, Pair, Query

    for i, (q, it, g) in enumerate(zip(ex.queries, ex.items, ex.grades, strict=True)):
        query = Query(project_id=project_id, key=f"{prefix}q{i}", text=q)
        item = Item(project_id=project_id, key=f"{prefix}i{i}", title=it)
        session.add_all([query, item])
        session.flush()
        pair = Pair(project_id=project_id, query_id=query.id, item_id=item.id, split=split(i))
        session.add(pair)
        session.flush()
        session.add(LabelEvent(pair_id=pair.id, kind=LabelKind.imported, grade=int(g)))
    session.flush()
