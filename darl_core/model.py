"""Backbones (encoders and decoder LLMs) with LoRA, pooling and a grade head; batch scoring.

``load_model`` opens any local transformers directory; ``score_pairs`` returns grade probabilities,
the expected grade (a continuous relevance score) and pooled embeddings, in length-bucketed batches
with dynamic padding. Checkpoints are written by training.py and restored by ``load_checkpoint``.

A model may carry a ``ZeroShotBlend`` (the stage option ``zero_shot_blend``): its grade logits then also
use the cosine similarity of the query and the item under the *pretrained* backbone (each text encoded
alone, as a sentence-embedding model was trained to), ``scale * head_logits + weight * cos + bias``.
Fine-tuning the pair encoder on in-distribution labels discards that geometry; kept as a feature it
carries to departments the labels never covered (see posthoc.decide, the zero-shot blend step).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from darl_core.config import LoraSpec
from darl_core.errors import ModelError
from darl_core.metrics import softmax
from darl_core.settings import torch_device, zero_shot_cache_bytes

DECODER_TYPES = {"gpt2", "qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "phi", "phi3", "gpt_neox", "opt"}
LORA_TARGETS = {
    "bert": ("query", "key", "value", "dense"),
    "roberta": ("query", "key", "value", "dense"),
    "xlm-roberta": ("query", "key", "value", "dense"),
    "electra": ("query", "key", "value", "dense"),
    "deberta": ("in_proj", "dense"),
    "deberta-v2": ("query_proj", "key_proj", "value_proj", "dense"),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
}
DECODER_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ITEM_SEPARATOR = " — "
DECODER_TEMPLATE = "Query: {query}\nItem: {item}\nRelevance:"
DEFAULT_MAX_LENGTH = 128  # tokens per pair when neither the caller nor the checkpoint says otherwise


def item_text(title: str, text: str | None = None) -> str:
    """The item text fed to the model: the title, plus `` — text`` when there is text."""
    text = (text or "").strip()
    return f"{title}{ITEM_SEPARATOR}{text}" if text else str(title)


@dataclass(frozen=True)
class ScoreOutput:
    probs: np.ndarray  # [N, K] float32
    logits: np.ndarray  # [N, K] float32
    expected: np.ndarray  # [N] expected grade index, float32
    embeddings: np.ndarray  # [N, D] pooled backbone output, float32

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


class OutputLayer(nn.Module):
    """``z = scale * head_logits + bias``: where decision offsets and a temperature go when a stage keeps
    no ``ZeroShotBlend`` (otherwise they fold into the blend). Kept apart from the head so that a stage
    trained from this checkpoint starts from the head alone, as it does from a blended one."""

    def __init__(self, num_grades: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(num_grades), requires_grad=False)

    def apply_to(self, logits: np.ndarray) -> np.ndarray:
        scale, bias = (t.detach().float().cpu().numpy() for t in (self.scale, self.bias))
        return (scale * logits + bias).astype(np.float32)


class ZeroShotBlend(OutputLayer):
    """``z = scale * head_logits + weight * cos + bias`` over K grades; ``cos`` is ``zero_shot_similarity``.

    Starts as the identity (scale 1, weight and bias 0). Applied by ``score_pairs`` after the head, never
    during training: a stage that trains starts without its parent's blend and fits its own."""

    def __init__(self, num_grades: int) -> None:
        super().__init__(num_grades)
        self.weight = nn.Parameter(torch.zeros(num_grades), requires_grad=False)

    def combine(self, logits: np.ndarray, cos: np.ndarray) -> np.ndarray:
        weight = self.weight.detach().float().cpu().numpy()
        return (self.apply_to(logits) + cos[:, None] * weight).astype(np.float32)


class RelevanceModel(nn.Module):
    """Backbone (optionally LoRA-wrapped) + pooling + a linear head over K ordered grades (+ an optional
    ``OutputLayer`` and ``ZeroShotBlend`` that score_pairs applies after the head, in that order)."""

    def __init__(self, backbone: nn.Module, tokenizer, num_grades: int, *, model_dir: str,
                 pooling: str, is_decoder: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.num_grades = num_grades
        self.model_dir = model_dir
        self.pooling = pooling
        self.is_decoder = is_decoder
        self.lora: LoraSpec | None = None
        hidden = backbone.config.hidden_size if hasattr(backbone.config, "hidden_size") else backbone.config.n_embd
        self.head = nn.Linear(hidden, num_grades)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.blend: ZeroShotBlend | None = None
        self.output: OutputLayer | None = None
        # True once any stage in this model's lineage changed the backbone's own weights (full or partial
        # fine-tuning): its checkpoints must then carry the whole backbone, whatever a later stage tunes.
        self.base_tuned = False
        # The token budget the model was trained and scored with (StageConfig.max_length); score_pairs and
        # zero_shot_similarity use it unless told otherwise, so a checkpoint scores the same everywhere.
        self.max_length: int = DEFAULT_MAX_LENGTH

    # -- the output layer: folded decision offsets and temperatures -------------------------------
    def _output_layer(self) -> OutputLayer:
        if self.output is None:
            self.output = OutputLayer(self.num_grades).to(self.device)
        return self.output

    @torch.no_grad()
    def shift_logits(self, offsets: Sequence[float]) -> None:
        """Add per-grade ``offsets`` to every logit score_pairs returns (into the blend's bias, or the
        output layer's; never the head's, which later stages train from)."""
        bias = (self.blend or self._output_layer()).bias
        bias.add_(torch.as_tensor(list(offsets), dtype=bias.dtype, device=bias.device))

    @torch.no_grad()
    def divide_logits(self, temperature: float) -> None:
        """Divide every logit score_pairs returns by ``temperature`` (argmax unchanged)."""
        layer = self.blend or self._output_layer()
        for t in layer.parameters():  # scale and bias (and the blend's cosine weight)
            t.div_(temperature)

    @property
    def hidden_size(self) -> int:
        return self.head.in_features

    def spec(self) -> dict:
        """What ``load_checkpoint`` needs to rebuild this model before loading weights."""
        return {"model_dir": self.model_dir, "num_grades": self.num_grades, "pooling": self.pooling,
                "max_length": self.max_length,
                "lora": None if self.lora is None else {**self.lora.__dict__,
                                                         "target_modules": list(self.lora.target_modules or ())}}

    def encode_batch(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**kwargs).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.device  # batches are built on the CPU; they follow the model to its device
        pooled = self.encode_batch(input_ids.to(dev), attention_mask.to(dev),
                                   None if token_type_ids is None else token_type_ids.to(dev))
        return self.head(pooled.to(self.head.weight.dtype)), pooled

    # -- text -> tensors -------------------------------------------------------------------------
    def tokenize(self, queries: Sequence[str], items: Sequence[str], max_length: int) -> dict[str, list]:
        """Tokenize without padding (padding happens per batch in ``collate``)."""
        if len(queries) != len(items):
            raise ModelError(f"queries and items must have the same length, got {len(queries)} and {len(items)}")
        if self.is_decoder:
            texts = [DECODER_TEMPLATE.format(query=q, item=i) for q, i in zip(queries, items, strict=True)]
            enc = self.tokenizer(texts, truncation=True, max_length=max_length)
        else:
            enc = self.tokenizer(list(map(str, queries)), list(map(str, items)), truncation="longest_first",
                                 max_length=max_length)
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def collate(self, enc: dict[str, list], rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """Right-pad the chosen rows to their longest member (dynamic padding)."""
        width = max(len(enc["input_ids"][r]) for r in rows)
        pad_id = self.tokenizer.pad_token_id
        out: dict[str, torch.Tensor] = {}
        for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
            if key not in enc:
                continue
            out[key] = torch.tensor([enc[key][r] + [fill] * (width - len(enc[key][r])) for r in rows],
                                    dtype=torch.long)
        return out


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mean over real tokens, the first token (CLS), or the last real token (decoders, right-padded)."""
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.long().sum(1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ModelError(f"unknown pooling {pooling!r}; use mean, cls or last")


def _is_decoder(config) -> bool:
    archs = " ".join(getattr(config, "architectures", None) or [])
    return config.model_type in DECODER_TYPES or "CausalLM" in archs or "LMHead" in archs


def _default_pooling(model_dir: Path, decoder: bool) -> str:
    if decoder:
        return "last"
    st_pool = model_dir / "1_Pooling" / "config.json"
    if st_pool.is_file():  # sentence-transformers directories say how they were trained to pool
        cfg = json.loads(st_pool.read_text())
        return "cls" if cfg.get("pooling_mode_cls_token") else "mean"
    return "mean"


def load_model(model_dir: str | Path | None = None, num_grades: int = 3, *, pooling: str = "auto",
               lora: LoraSpec | None = None, dtype: torch.dtype = torch.float32) -> RelevanceModel:
    """Open a local transformers directory as a RelevanceModel (``None``: the default backbone).

    ``lora`` wraps the backbone with peft LoRA adapters (base weights frozen). The head starts at
    zero (uniform grade probabilities) until a stage trains it.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from darl_core.settings import default_model_dir

    path = Path(model_dir) if model_dir is not None else default_model_dir()
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} is not a transformers model directory (no config.json); "
                         "pass a directory saved with save_pretrained().")
    if not isinstance(num_grades, int) or not 2 <= num_grades <= 10:
        raise ModelError(f"num_grades must be an integer in 2..10, got {num_grades!r}")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        backbone = AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the model at {path}: {exc}") from exc
    decoder = _is_decoder(config)
    if decoder:
        tokenizer.padding_side = "right"  # last-token pooling reads position mask.sum()-1
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ModelError(f"the tokenizer at {path} has neither a pad nor an eos token to pad with")
            tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise ModelError(f"the tokenizer at {path} has no pad token")
    chosen = _default_pooling(path, decoder) if pooling == "auto" else pooling
    model = RelevanceModel(backbone, tokenizer, num_grades, model_dir=str(path.resolve()), pooling=chosen,
                           is_decoder=decoder)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    if lora is not None:
        add_lora(model, lora)
    model.to(torch_device())
    model.eval()
    return model


def lora_targets(model_type: str, decoder: bool) -> tuple[str, ...]:
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    if decoder:
        return DECODER_LORA_TARGETS
    raise ModelError(f"no default LoRA target modules for model type {model_type!r}; "
                     "set LoraSpec.target_modules explicitly")


def add_lora(model: RelevanceModel, spec: LoraSpec) -> RelevanceModel:
    """Wrap the backbone with LoRA (all of its linear layers by default); base weights stay frozen."""
    from peft import LoraConfig, get_peft_model

    if model.lora is not None:
        raise ModelError("this model already has LoRA adapters")
    model_type = model.backbone.config.model_type
    targets = spec.target_modules or lora_targets(model_type, model.is_decoder)
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=list(targets),
                     fan_in_fan_out=model_type == "gpt2", bias="none")
    model.backbone = get_peft_model(model.backbone, cfg)
    model.lora = LoraSpec(r=spec.r, alpha=spec.alpha, dropout=spec.dropout, target_modules=tuple(targets))
    return model


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of row indices with similar lengths (longest first, so memory peaks early)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def score_pairs(model: RelevanceModel, queries: Sequence[str], items: Sequence[str], *, batch_size: int = 64,
                max_length: int | None = None, progress: Callable[[int, int], None] | None = None) -> ScoreOutput:
    """Score query-item pairs: grade probabilities, logits, expected grade and pooled embeddings.
    ``max_length`` defaults to the model's own (the one its stage trained and validated with)."""
    max_length = model.max_length if max_length is None else max_length
    if batch_size <= 0:
        raise ModelError(f"batch_size must be positive, got {batch_size!r}")
    n = len(queries)
    k, d = model.num_grades, model.hidden_size
    logits = np.zeros((n, k), dtype=np.float32)
    emb = np.zeros((n, d), dtype=np.float32)
    if n:
        was_training = model.training
        model.eval()
        enc = model.tokenize(queries, items, max_length)
        done = 0
        for rows in length_buckets([len(x) for x in enc["input_ids"]], batch_size):
            batch = model.collate(enc, rows)
            out_logits, pooled = model(**batch)
            logits[rows] = out_logits.float().cpu().numpy()
            emb[rows] = pooled.float().cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, n)
        model.train(was_training)
        if model.output is not None:
            logits = model.output.apply_to(logits)
        if model.blend is not None:
            logits = model.blend.combine(logits, zero_shot_similarity(model, queries, items, batch_size=batch_size,
                                                                    max_length=max_length))
    probs = softmax(logits).astype(np.float32)
    expected = (probs * np.arange(k, dtype=np.float32)).sum(axis=1).astype(np.float32)
    return ScoreOutput(probs=probs, logits=logits, expected=expected, embeddings=emb)


@contextmanager
def pretrained_backbone(model: RelevanceModel) -> Iterator[nn.Module]:
    """The backbone as pretrained: LoRA adapters switched off (when nothing else in the backbone was
    tuned), or (full or partial fine-tuning) a frozen copy loaded from ``model.model_dir`` once per
    model object."""
    if model.lora is not None and not model.base_tuned:
        with model.backbone.disable_adapter():
            yield model.backbone
        return
    ref = model.__dict__.get("_pretrained")  # a plain attribute: not a submodule, never saved or trained
    if ref is None:
        from transformers import AutoModel

        try:
            ref = AutoModel.from_pretrained(model.model_dir, local_files_only=True,
                                            dtype=next(model.backbone.parameters()).dtype)
        except (OSError, ValueError) as exc:
            raise ModelError(f"the zero-shot blend needs the pretrained backbone at {model.model_dir}: {exc}") from exc
        ref.to(model.device).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        model.__dict__["_pretrained"] = ref
    yield ref


class TextVectorCache:
    """Unit vectors of texts under the pretrained backbone, least recently used first out, bounded in
    bytes. The pretrained backbone never changes for a model object, so the vectors stay valid for its
    whole life; a stage scores its validation pairs several times (blend fit, offsets, temperature,
    metrics) and pays for their texts once."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._vecs: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self.bytes = 0

    def get(self, key: tuple[int, str]) -> np.ndarray | None:
        vec = self._vecs.get(key)
        if vec is not None:
            self._vecs.move_to_end(key)
        return vec

    def put(self, key: tuple[int, str], vec: np.ndarray) -> None:
        if vec.nbytes > self.max_bytes or key in self._vecs:
            return
        self._vecs[key] = vec
        self.bytes += vec.nbytes
        while self.bytes > self.max_bytes:
            self.bytes -= self._vecs.popitem(last=False)[1].nbytes

    def __len__(self) -> int:
        return len(self._vecs)


def text_vector_cache(model: RelevanceModel) -> TextVectorCache:
    """The model's cache (a plain attribute: never saved, never a submodule), sized by DARL_ZS_CACHE_MB."""
    cache = model.__dict__.get("_text_vectors")
    if cache is None:
        cache = model.__dict__["_text_vectors"] = TextVectorCache(zero_shot_cache_bytes())
    return cache


@torch.inference_mode()
def zero_shot_similarity(model: RelevanceModel, queries: Sequence[str], items: Sequence[str], *,
                         batch_size: int = 64, max_length: int | None = None) -> np.ndarray:
    """Cosine of each query and item under the pretrained backbone, each text encoded on its own (pooled
    as the model pools; repeated texts once, and texts this model encoded before at this ``max_length``
    not again while they fit in its ``TextVectorCache``). [N] float32."""
    max_length = model.max_length if max_length is None else max_length
    if len(queries) != len(items):
        raise ModelError(f"queries and items must have the same length, got {len(queries)} and {len(items)}")
    if not len(queries):
        return np.zeros(0, dtype=np.float32)
    texts = sorted(set(map(str, queries)) | set(map(str, items)))
    where = {t: i for i, t in enumerate(texts)}
    vecs = np.zeros((len(texts), model.hidden_size), dtype=np.float32)
    cache = text_vector_cache(model)
    todo = []
    for row, text in enumerate(texts):
        vec = cache.get((max_length, text))
        if vec is None:
            todo.append(row)
        else:
            vecs[row] = vec
    if todo:
        enc = {k: v for k, v in model.tokenizer([texts[r] for r in todo], truncation=True,
                                                max_length=max_length).items()
               if k in ("input_ids", "attention_mask", "token_type_ids")}
        fresh = np.zeros((len(todo), model.hidden_size), dtype=np.float32)
        with pretrained_backbone(model) as backbone:
            was_training = backbone.training
            backbone.eval()
            for rows in length_buckets([len(x) for x in enc["input_ids"]], batch_size):
                batch = {k: v.to(model.device) for k, v in model.collate(enc, rows).items()}
                hidden = backbone(**batch).last_hidden_state
                fresh[rows] = pool(hidden, batch["attention_mask"], model.pooling).float().cpu().numpy()
            backbone.train(was_training)
        fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
        vecs[todo] = fresh
        for row, vec in zip(todo, fresh, strict=True):
            cache.put((max_length, texts[row]), vec.copy())
    q = vecs[[where[str(t)] for t in queries]]
    i = vecs[[where[str(t)] for t in items]]
    return (q * i).sum(axis=1).astype(np.float32)


# -- checkpoint weights -------------------------------------------------------------------------
def trainable_state(model: RelevanceModel, tuning: str) -> dict[str, torch.Tensor]:
    """The backbone tensors a stage changed (LoRA tensors, all backbone tensors, or none), on the CPU."""
    if tuning == "head":
        return {}
    if tuning == "lora":
        return {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items() if "lora_" in k}
    return {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}


def saved_tuning(model: RelevanceModel, tuning: str) -> str:
    """What a checkpoint of ``model`` must carry so that ``model_from_weights`` rebuilds it exactly: the
    whole backbone (``full``) once any stage of its lineage tuned the backbone's own weights, else its
    LoRA tensors when it has adapters, else nothing (``head``). The stage's own ``tuning`` is not
    enough: a LoRA or head-only stage on a fully tuned parent, or a head-only stage on a LoRA parent,
    must keep what the parent changed."""
    if tuning == "full" or model.base_tuned:
        return "full"
    return "lora" if model.lora is not None else "head"


def save_weights(model: RelevanceModel, tuning: str, path: Path) -> None:
    tuning = saved_tuning(model, tuning)
    torch.save({"backbone": trainable_state(model, tuning),
                "head": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
                "blend": None if model.blend is None else {k: v.detach().cpu() for k, v in model.blend.state_dict().items()},
                "output": None if model.output is None else {k: v.detach().cpu() for k, v in model.output.state_dict().items()},
                "spec": model.spec(), "tuning": tuning}, path)


def load_weights(model: RelevanceModel, path: Path) -> RelevanceModel:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.head.load_state_dict(state["head"])
    if state.get("blend") is not None:
        model.blend = ZeroShotBlend(model.num_grades).to(model.device)
        model.blend.load_state_dict(state["blend"])
    if state.get("output") is not None:
        model.output = OutputLayer(model.num_grades).to(model.device)
        model.output.load_state_dict(state["output"])
    if state["backbone"]:
        missing = set(state["backbone"]) - set(model.backbone.state_dict())
        if missing:
            raise ModelError(f"checkpoint {path} has weights this backbone lacks, e.g. {sorted(missing)[:3]}")
        model.backbone.load_state_dict(state["backbone"], strict=False)
    model.base_tuned = state.get("tuning") == "full"
    return model


def model_from_weights(path: Path) -> RelevanceModel:
    """Rebuild the backbone described in a weights file, then load the weights."""
    return load_weights(model_from_spec(torch.load(path, map_location="cpu", weights_only=True)["spec"]), path)


def model_from_spec(spec: dict) -> RelevanceModel:
    """The bare backbone (and empty LoRA adapters) described by ``RelevanceModel.spec()``."""
    lora = LoraSpec(**{**spec["lora"], "target_modules": tuple(spec["lora"]["target_modules"])}) \
        if spec.get("lora") else None
    model = load_model(spec["model_dir"], spec["num_grades"], pooling=spec["pooling"], lora=lora)
    model.max_length = int(spec.get("max_length") or DEFAULT_MAX_LENGTH)  # checkpoints before it was saved: 128
    return model


def load_checkpoint(path: str | Path) -> RelevanceModel:
    """Restore any stage's checkpoint directory (or its ``model.pt``) as an eval-mode model."""
    p = Path(path)
    weights = p / "model.pt" if p.is_dir() else p
    if not weights.is_file():
        raise ModelError(f"no checkpoint at {p}: expected a stage directory containing model.pt")
    model = model_from_weights(weights)
    model.eval()
    return model
