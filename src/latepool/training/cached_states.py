"""Cached-feature training: compute the frozen bottom of the encoder once, train only its top.

With ``train_layers=K`` the encoder is cut below its top ``K`` transformer layers. The hidden states
at the cut are computed once per distinct tokenized text (no gradient, no dropout), stored in the
embedding cache's format (memory-mapped, float16 by default) and looked up during training, so each
step runs only the top ``K`` layers, the projection and the loss. ``K=0`` caches the encoder's output
token states and trains only the modules after it (the projection); it works for any encoder.
``K>=1`` needs to know where the layers are, which :data:`ENCODER_FAMILIES` records (BERT, RoBERTa,
XLM-RoBERTa, ModernBERT).

Rows are found by their token ids, not by text: the training collator tokenizes as usual and the
encoder looks each row's ids up, so a text tokenized differently (other lengths, prefixes, query
expansion) can never pick up states made for another tokenization. A row missing from the cache is
computed by the real frozen layers instead, so the cached model stays exact, only slower.

The model's modules, parameter names and ``save`` are untouched (the switch is done by instance
attributes inside :func:`use_cached_states`), so trainer checkpoints and the final save are complete
models that encode like any other.

Example::

    cache = build_state_cache(model, {"query": queries, "document": documents}, train_layers=1,
                              cache_root=Path(".cache/latepool"))
    with use_cached_states(model, cache):
        trainer.train()  # each step runs the top layer, the projection and the loss
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from latepool.cache import FORMAT_VERSION, CachedEmbeddings, cached_arrays
from latepool.fingerprints import hash_tensors, texts_fingerprint
from latepool.models import query_length_of

if TYPE_CHECKING:
    from sentence_transformers import MultiVectorEncoder

logger = logging.getLogger(__name__)

# model_type -> (attribute path of the transformer layer list, attribute of a norm applied after the layers)
ENCODER_FAMILIES: dict[str, tuple[str, str | None]] = {
    "bert": ("encoder.layer", None),
    "roberta": ("encoder.layer", None),
    "xlm-roberta": ("encoder.layer", None),
    "modernbert": ("layers", "final_norm"),
}


@dataclass
class EncoderSplit:
    """Where a ``MultiVectorEncoder``'s encoder is cut for cached training.

    Attributes:
        transformer: The model's input module (sentence-transformers ``Transformer``).
        train_layers: K, the number of top transformer layers that are trained.
        layers: The encoder's transformer layers (empty for K=0).
        embeddings: The encoder's embedding module (None for K=0).
        final_norm: A norm after the layers (ModernBERT), else None.
        frozen: The parameters below the cut (never trained).
    """

    transformer: nn.Module
    train_layers: int
    layers: list[nn.Module]
    embeddings: nn.Module | None
    final_norm: nn.Module | None
    frozen: dict[str, nn.Parameter]
    stash: Tensor | None = field(default=None, repr=False)

    @property
    def cut_layer(self) -> int:
        """Index of the first trained layer (= number of frozen layers); the whole encoder for K=0."""
        return len(self.layers) - self.train_layers if self.train_layers else -1

    def fingerprint(self) -> str:
        """SHA-256 of the frozen parameters, the encoder's configuration and the cut."""
        digest = hashlib.sha256()
        hash_tensors(digest, self.frozen)
        config = self.transformer.get_config_dict() if hasattr(self.transformer, "get_config_dict") else {}
        config = {**config, "query_length": query_length_of(self.transformer)}  # the same in either save layout
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
        digest.update(self.transformer.model.config.to_json_string().encode())
        digest.update(f"cut:{self.train_layers}:{self.cut_layer}".encode())
        return digest.hexdigest()


def split_encoder(model: nn.Module, train_layers: int) -> EncoderSplit:
    """Cut ``model``'s encoder below its top ``train_layers`` layers.

    Args:
        model: A ``MultiVectorEncoder`` whose first module is a sentence-transformers ``Transformer``.
        train_layers: K >= 0.

    Returns:
        The split.

    Raises:
        ValueError: K < 0, K larger than the encoder's depth, or K >= 1 on an unsupported family.
    """
    if isinstance(train_layers, bool) or not isinstance(train_layers, int) or train_layers < 0:
        raise ValueError(f"train_layers must be an integer >= 0, got {train_layers!r}")
    transformer = model[0]
    encoder = getattr(transformer, "model", None)
    if encoder is None:
        raise ValueError(f"cached training needs a Transformer input module, got {type(transformer).__name__}")
    if train_layers == 0:
        frozen = {f"0.{name}": p for name, p in transformer.named_parameters()}
        return EncoderSplit(transformer, 0, [], None, None, frozen)
    model_type = encoder.config.model_type
    if model_type not in ENCODER_FAMILIES:
        raise ValueError(
            f"train_layers >= 1 supports the {sorted(ENCODER_FAMILIES)} families, not {model_type!r}; "
            "use train_layers=0 (projection only) or full fine-tuning"
        )
    layers_path, norm_name = ENCODER_FAMILIES[model_type]
    layers = encoder.get_submodule(layers_path)
    if train_layers > len(layers):
        raise ValueError(f"train_layers={train_layers} exceeds the encoder's {len(layers)} layers")
    cut = len(layers) - train_layers
    frozen_modules = {"embeddings": encoder.embeddings} | {f"{layers_path}.{i}": layers[i] for i in range(cut)}
    frozen = {
        f"0.model.{prefix}.{name}": parameter
        for prefix, module in frozen_modules.items()
        for name, parameter in module.named_parameters()
    }
    final_norm = getattr(encoder, norm_name) if norm_name else None
    return EncoderSplit(transformer, train_layers, list(layers), encoder.embeddings, final_norm, frozen)


def row_keys(input_ids: Tensor, attention_mask: Tensor, pad_token_id: int | None) -> list[tuple[bytes, int]]:
    """A key and a length per tokenized row: the ids up to the last attended or non-padding position.

    Example::

        >>> [length for _, length in row_keys(torch.tensor([[2, 7, 3, 0]]), torch.tensor([[1, 1, 1, 0]]), 0)]
        [3]
    """
    ids = input_ids.detach().cpu().numpy().astype(np.int64)
    used = attention_mask.detach().cpu().numpy().astype(bool)
    if pad_token_id is not None:
        used |= ids != pad_token_id
    keys = []
    for row, row_used in zip(ids, used):
        length = int(np.flatnonzero(row_used)[-1]) + 1 if row_used.any() else 0
        keys.append((hashlib.blake2b(row[:length].tobytes(), digest_size=16).digest(), length))
    return keys


def bottom_states(split: EncoderSplit, features: dict[str, Any]) -> Tensor:
    """The hidden states at the cut for a tokenized batch (no gradient): ``(B, W, hidden)``."""
    patched = [(layer, _pass_through) for layer in split.layers[split.cut_layer :]] if split.train_layers else []
    if split.final_norm is not None:
        patched.append((split.final_norm, _identity))
    with torch.no_grad(), _patched_forwards(patched):
        training = split.transformer.training
        split.transformer.eval()
        try:
            output = type(split.transformer).forward(split.transformer, dict(features))
        finally:
            split.transformer.train(training)
    return output["token_embeddings"]


@dataclass
class StateCache:
    """Cached hidden states at the cut, found by each row's token ids.

    Attributes:
        fingerprint: :meth:`EncoderSplit.fingerprint` of the split the states were made with.
        entries: The cache entries (one per task).
        index: Row key -> (entry number, text number).
        pad_token_id: The tokenizer's padding id (used to find each row's length).
        misses: Batches with a row that was not found (computed by the frozen layers instead).
    """

    fingerprint: str
    entries: list[CachedEmbeddings]
    index: dict[bytes, tuple[int, int]]
    pad_token_id: int | None
    misses: int = 0

    def lookup(self, features: dict[str, Any], hidden_size: int) -> Tensor | None:
        """The batch's cached states, zero-padded to its width, or None when a row is not cached."""
        input_ids, mask = features["input_ids"], features["attention_mask"]
        states = torch.zeros(*input_ids.shape, hidden_size, dtype=torch.float32)
        for row, (key, length) in enumerate(row_keys(input_ids, mask, self.pad_token_id)):
            found = self.index.get(key)
            if found is None:
                self.misses += 1
                return None
            entry = self.entries[found[0]]
            start, stop = entry.offsets[found[1]], entry.offsets[found[1] + 1]
            states[row, :length] = torch.from_numpy(np.array(entry.vectors[start:stop], dtype=np.float32))
        return states.to(input_ids.device)


def build_state_cache(
    model: nn.Module,
    texts: dict[str, list[str]],
    train_layers: int,
    cache_root: Path,
    *,
    batch_size: int = 32,
    shard_size: int = 512,
    dtype: str = "float16",
    show_progress_bar: bool = True,
) -> StateCache:
    """Compute (or reopen) the states at the cut for every text, per task.

    Args:
        model: The ``MultiVectorEncoder`` to be trained.
        texts: ``{"query": [...], "document": [...]}`` (duplicates are stored once).
        train_layers: K (see :func:`split_encoder`).
        cache_root: Directory of cache entries (shared with the embedding cache).
        batch_size: Texts per forward pass.
        shard_size: Texts per resumable shard: a killed build resumes from its last whole shard.
        dtype: Storage type, ``float16`` (default) or ``float32``.
        show_progress_bar: Show progress.

    Returns:
        The cache, ready for :func:`use_cached_states`.
    """
    split = split_encoder(model, train_layers)
    fingerprint = split.fingerprint()
    tokenizer = split.transformer.tokenizer
    entries, index = [], {}
    for task, task_texts in texts.items():
        unique = list(dict.fromkeys(task_texts))
        identity = {
            "format_version": FORMAT_VERSION,
            "kind": "encoder_states",
            "split_hash": fingerprint,
            "train_layers": train_layers,
            "texts_hash": texts_fingerprint([str(i) for i in range(len(unique))], unique),
            "task": task,
            "count": len(unique),
        }
        entry = cached_arrays(
            lambda chunk, task=task: _encode_states(model, split, chunk, task, batch_size),
            unique,
            identity,
            cache_root=cache_root,
            prefix=f"states-k{train_layers}-{task}",
            shard_size=shard_size,
            dtype=dtype,
            description=f"Caching {task} states (train_layers={train_layers})",
            show_progress_bar=show_progress_bar,
        )
        for number, (key, _) in enumerate(_keys_of(model, unique, task, tokenizer.pad_token_id, batch_size * 8)):
            index[key] = (len(entries), number)
        entries.append(entry)
    return StateCache(fingerprint, entries, index, tokenizer.pad_token_id)


def training_texts(examples, dev=None) -> dict[str, list[str]]:
    """The distinct query and document texts of training examples (and of a dev collection).

    Args:
        examples: :class:`~latepool.training.examples.TrainingExamples`.
        dev: Optional :class:`~latepool.data.RetrievalDataset` evaluated during training.

    Returns:
        ``{"query": [...], "document": [...]}`` in first-seen order.
    """
    columns = examples.columns
    queries = list(columns["query"]) + (list(dev.query_texts) if dev else [])
    documents = [text for name, texts in columns.items() if name.startswith("document_") for text in texts]
    documents += list(dev.corpus_texts) if dev else []
    return {"query": list(dict.fromkeys(queries)), "document": list(dict.fromkeys(documents))}


def _keys_of(model: MultiVectorEncoder, texts: list[str], task: str, pad_token_id: int | None, batch_size: int):
    for start in range(0, len(texts), batch_size):
        features = model.preprocess(texts[start : start + batch_size], task=task)
        yield from row_keys(features["input_ids"], features["attention_mask"], pad_token_id)


def _encode_states(
    model: MultiVectorEncoder, split: EncoderSplit, texts: list[str], task: str, batch_size: int
) -> list[np.ndarray]:
    """States at the cut for ``texts`` (batched by length), one ``(length, hidden)`` array per text."""
    pad_token_id = split.transformer.tokenizer.pad_token_id
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    arrays: list[np.ndarray | None] = [None] * len(texts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        features = model.preprocess([texts[i] for i in chosen], task=task)
        features = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in features.items()}
        states = bottom_states(split, features).float().cpu().numpy()
        keys = row_keys(features["input_ids"], features["attention_mask"], pad_token_id)
        for position, (row, (_, length)) in enumerate(zip(chosen, keys)):
            arrays[row] = states[position, :length]
    return arrays


@contextmanager
def use_cached_states(model: nn.Module, cache: StateCache) -> Iterator[EncoderSplit]:
    """Run ``model`` on cached states inside the block, with the frozen parameters frozen.

    Inside the block every forward pass (training, ``encode_query``, ``encode_document``) takes the
    states at the cut from ``cache`` and runs only what is above it. On exit the model is restored
    exactly: forwards, ``requires_grad`` flags, and a cache marker used by the evaluation cache.

    Args:
        model: The ``MultiVectorEncoder`` the cache was built for.
        cache: From :func:`build_state_cache`.

    Raises:
        ValueError: The model's frozen part is not the one the cache was made with.
    """
    train_layers = _train_layers_of(cache)
    split = split_encoder(model, train_layers)
    if split.fingerprint() != cache.fingerprint:
        raise ValueError("the state cache was made for another model, cut or tokenization; rebuild it")
    hidden = split.transformer.get_embedding_dimension()
    flags = {name: p.requires_grad for name, p in split.frozen.items()}

    def transformer_forward(features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        states = cache.lookup(features, hidden)
        if states is None:
            states = bottom_states(split, features)
        if train_layers == 0:
            features["token_embeddings"] = states.to(_dtype_of(split.transformer))
            return features
        split.stash = states.to(_dtype_of(split.transformer))
        try:
            return type(split.transformer).forward(split.transformer, features, **kwargs)
        finally:
            split.stash = None

    patched: list[tuple[nn.Module, Any]] = [(split.transformer, transformer_forward)]
    if train_layers:
        patched.append((split.embeddings, _stash_or_original(split, split.embeddings)))
        patched += [(layer, _stash_pass_through(split, layer)) for layer in split.layers[: split.cut_layer]]
    try:
        for parameter in split.frozen.values():
            parameter.requires_grad_(False)
        with _patched_forwards(patched):
            yield split
    finally:
        for name, parameter in split.frozen.items():
            parameter.requires_grad_(flags[name])


def _train_layers_of(cache: StateCache) -> int:
    layers = {entry.manifest["train_layers"] for entry in cache.entries}
    if len(layers) != 1:
        raise ValueError(f"a state cache needs exactly one train_layers value, found {sorted(layers)}")
    return layers.pop()


def _dtype_of(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _stash_or_original(split: EncoderSplit, module: nn.Module):
    original = type(module).forward

    def forward(*args: Any, **kwargs: Any) -> Tensor:
        return split.stash if split.stash is not None else original(module, *args, **kwargs)

    return forward


def _stash_pass_through(split: EncoderSplit, module: nn.Module):
    original = type(module).forward

    def forward(hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return hidden_states if split.stash is not None else original(module, hidden_states, *args, **kwargs)

    return forward


def _pass_through(hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    return hidden_states


def _identity(hidden_states: Tensor) -> Tensor:
    return hidden_states


@contextmanager
def _patched_forwards(patches: list[tuple[nn.Module, Any]]) -> Iterator[None]:
    """Give each module an instance-level ``forward`` for the block; the previous one is restored after."""
    saved = [(module, module.__dict__.get("forward")) for module, _ in patches]
    try:
        for module, forward in patches:
            module.forward = forward
        yield
    finally:
        for module, previous in reversed(saved):
            if previous is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = previous
