"""latepool: pooling-aware late-interaction retrieval on sentence-transformers' MultiVectorEncoder."""

from typing import TYPE_CHECKING, Any

from latepool.index import Index
from latepool.pooling import pool_documents
from latepool.version import __version__

if TYPE_CHECKING:
    from latepool.pooling import HierarchicalTokenPooling, KMeansTokenPooling, SpanTokenPooling


def __getattr__(name: str) -> Any:
    """The token-pooling modules, imported with sentence-transformers on first use (see ``latepool.pooling``)."""
    if name in ("HierarchicalTokenPooling", "KMeansTokenPooling", "SpanTokenPooling"):
        import latepool.pooling

        return getattr(latepool.pooling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Index",
    "HierarchicalTokenPooling",
    "KMeansTokenPooling",
    "SpanTokenPooling",
    "__version__",
    "pool_documents",
]
