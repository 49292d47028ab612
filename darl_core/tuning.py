"""Which weights a stage trains and at what learning rate: the starting model with its tuning set up
(``build_model``: full, LoRA, head only; only the top ``train_layers``) and the optimiser's groups
(``param_groups``: head lr, backbone lr, optional layer-wise decay). ``darl_core.training`` runs the loop.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from darl_core.config import StageConfig
from darl_core.errors import ConfigError
from darl_core.model import RelevanceModel, add_lora, load_model, model_from_weights

LAYER_RE = re.compile(r"\.(?:layer|layers|h)\.(\d+)\.")


def build_model(config: StageConfig, parent: Path | None) -> RelevanceModel:
    """The starting model: the parent's weights (or the bare backbone) with this stage's tuning set up."""
    torch.manual_seed(config.seed)
    if parent is not None:
        model = model_from_weights(Path(parent) / "model.pt")
        # A trained stage's logits are the head's: it fits its own blend, offsets and temperature if asked to.
        model.blend = model.output = None
        if model.num_grades != config.num_grades:
            raise ConfigError(f"parent has {model.num_grades} grades, config.num_grades is {config.num_grades}")
    else:
        model = load_model(config.model_dir, config.num_grades, pooling=config.pooling)
    if config.tuning == "lora" and model.lora is None:
        add_lora(model, config.lora)
    model.base_tuned = model.base_tuned or config.tuning == "full"
    model.max_length = config.max_length  # saved with the checkpoint: what scoring it later uses by default
    lowest = _lowest_trained_layer(model, config.train_layers)
    for name, p in model.backbone.named_parameters():
        in_scope = lowest is None or _layer_index(name) >= lowest  # embeddings (-1) fall below any cut
        if config.tuning == "full":
            p.requires_grad_(in_scope)
        elif config.tuning == "head":
            p.requires_grad_(False)
        else:
            p.requires_grad_("lora_" in name and in_scope)
    return model


def param_groups(model: RelevanceModel, config: StageConfig) -> list[dict]:
    """AdamW groups: the head at ``head_lr``, then the trainable backbone at ``lr``. With
    ``layer_lr_decay`` < 1 each transformer layer gets its own group: layer i of n at
    lr * decay**(n - 1 - i), the embeddings at lr * decay**n, anything above the layers (a final norm)
    at lr. Lower layers then move less, keeping more of the pretrained features (layer-wise lr decay,
    as in ELECTRA's and many BERT fine-tuning recipes)."""
    groups = [{"params": list(model.head.parameters()), "lr": config.head_lr, "weight_decay": 0.0}]
    body = [(name, p) for name, p in model.backbone.named_parameters() if p.requires_grad]
    if not body:
        return groups
    if config.layer_lr_decay == 1.0:
        return groups + [{"params": [p for _, p in body], "lr": config.lr, "weight_decay": config.weight_decay}]
    n = _num_layers(model)
    by_depth: dict[int, list] = {}
    for name, p in body:
        by_depth.setdefault(_layer_index(name), []).append(p)
    for index in sorted(by_depth):
        steps = n if index < 0 else max(0, n - 1 - index)  # beyond the layers (10**6): no decay
        groups.append({"params": by_depth[index], "lr": config.lr * config.layer_lr_decay ** steps,
                       "weight_decay": config.weight_decay})
    return groups


def _num_layers(model: RelevanceModel) -> int:
    config = model.backbone.config
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if n is None:
        raise ConfigError("`layer_lr_decay` and `train_layers` need a backbone whose config names num_hidden_layers")
    return int(n)


def _layer_index(name: str) -> int:
    match = LAYER_RE.search(name)
    return int(match.group(1)) if match else (-1 if "embed" in name or "wte" in name or "wpe" in name else 10**6)


def _lowest_trained_layer(model: RelevanceModel, train_layers: int | None) -> int | None:
    """Training only the top layers means backward stops there: ~2x cheaper steps for 2 of 6 layers."""
    if train_layers is None:
        return None
    return max(0, _num_layers(model) - train_layers)
