"""latepool: pooling-aware late-interaction retrieval on sentence-transformers' MultiVectorEncoder."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("latepool")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from latepool.index import Index
from latepool.pooling import (
    HierarchicalTokenPooling,
    KMeansTokenPooling,
    SpanTokenPooling,
    pool_documents,
)

__all__ = [
    "Index",
    "HierarchicalTokenPooling",
    "KMeansTokenPooling",
    "SpanTokenPooling",
    "__version__",
    "pool_documents",
]
