"""Identities of models and texts: SHA-256 digests that say when cached or indexed work was made from the same inputs.

The embedding cache keys its entries by them, and an index records its model's and resumes a
build only over the same texts. Importing this module loads torch only, no model code.

Example::

    >>> texts_fingerprint(["a"], ["x"]) == texts_fingerprint(["a"], ["x"]) != texts_fingerprint(["a"], ["y"])
    True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def model_fingerprint(model: torch.nn.Module, state_cache: str | None = None) -> str:
    """SHA-256 of a model's weights (names, shapes, dtypes, bytes) and its modules' configurations.

    Args:
        model: The model.
        state_cache: The fingerprint of the state cache the model encodes through
            (:func:`latepool.training.cached_states.use_cached_states`), if any: the bottom of the
            encoder then comes from stored states, so its outputs get their own identity.
    """
    digest = hashlib.sha256()
    hash_tensors(digest, model.state_dict())
    for module in model.children():
        config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
        digest.update(
            f"{type(module).__module__}.{type(module).__qualname__}:".encode()
            + json.dumps(config, sort_keys=True, default=str).encode()
        )
    if state_cache:
        digest.update(f"state_cache:{state_cache}".encode())
    return digest.hexdigest()


def hash_tensors(digest: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Feed named tensors (names, shapes, dtypes and bytes, in name order) into a ``hashlib`` digest."""
    for name, tensor in sorted(tensors.items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())


def texts_fingerprint(ids: list[str], texts: list[str]) -> str:
    """SHA-256 of the (id, text) pairs, in order."""
    digest = hashlib.sha256()
    for identifier, text in zip(ids, texts, strict=True):
        digest.update(f"{len(identifier)}:{identifier}{len(text)}:{text}".encode())
    return digest.hexdigest()
