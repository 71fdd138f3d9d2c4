"""latepool: pooling-aware late-interaction retrieval on sentence-transformers' MultiVectorEncoder.

``Index``, ``pool_documents`` and the token-pooling modules load on first use, so ``import latepool``
(and ``latepool --help``) loads no torch and no model code.
"""

from typing import TYPE_CHECKING, Any

from latepool.version import __version__

if TYPE_CHECKING:
    from latepool.index import Index
    from latepool.pooling import HierarchicalTokenPooling, KMeansTokenPooling, SpanTokenPooling, pool_documents

_LAZY = {
    "Index": "latepool.index",
    "pool_documents": "latepool.pooling",
    "HierarchicalTokenPooling": "latepool.pooling",
    "KMeansTokenPooling": "latepool.pooling",
    "SpanTokenPooling": "latepool.pooling",
}


def __getattr__(name: str) -> Any:
    """``Index``, ``pool_documents`` and the token-pooling modules, imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Index",
    "HierarchicalTokenPooling",
    "KMeansTokenPooling",
    "SpanTokenPooling",
    "__version__",
    "pool_documents",
]
