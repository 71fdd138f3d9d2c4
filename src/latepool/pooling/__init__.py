"""Token pooling: span, hierarchical (Ward) and k-means, batched, on CPU or GPU.

``pool_documents`` is the functional entry point (``pool_corpus`` runs it over a whole corpus); the
``*TokenPooling`` classes wrap it as sentence-transformers ``BaseTokenPooling`` modules for
``encode_document(token_pooling=...)`` and for saving inside a checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from latepool.options import KMEANS_BACKENDS, POOL_METHODS
from latepool.pooling.functional import pool_corpus, pool_documents

if TYPE_CHECKING:
    from latepool.pooling.modules import (
        HierarchicalTokenPooling,
        KMeansTokenPooling,
        SpanTokenPooling,
        make_token_pooling,
    )

_MODULES = ("HierarchicalTokenPooling", "KMeansTokenPooling", "SpanTokenPooling", "make_token_pooling")


def __getattr__(name: str) -> Any:
    """The sentence-transformers modules, imported on first use: a process that only pools or searches
    does not load sentence-transformers and transformers (about 350 MB resident)."""
    if name in _MODULES:
        from latepool.pooling import modules

        return getattr(modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KMEANS_BACKENDS",
    "POOL_METHODS",
    "HierarchicalTokenPooling",
    "KMeansTokenPooling",
    "SpanTokenPooling",
    "make_token_pooling",
    "pool_corpus",
    "pool_documents",
]
