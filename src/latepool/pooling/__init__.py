"""Token pooling: span, hierarchical (Ward) and k-means, batched, on CPU or GPU.

``pool_documents`` is the functional entry point (``pool_corpus`` runs it over a whole corpus); the
``*TokenPooling`` classes wrap it as sentence-transformers ``BaseTokenPooling`` modules for
``encode_document(token_pooling=...)`` and for saving inside a checkpoint.
"""

from latepool.pooling.functional import KMEANS_BACKENDS, POOL_METHODS, pool_corpus, pool_documents
from latepool.pooling.modules import (
    HierarchicalTokenPooling,
    KMeansTokenPooling,
    SpanTokenPooling,
    make_token_pooling,
)

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
