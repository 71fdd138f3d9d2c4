"""Persistent pooled multi-vector indexes: storage, exact and candidate search, updates, Qdrant export."""

from latepool.index.index import Hit, Index, check_model
from latepool.index.storage import IndexFormatError

__all__ = ["Hit", "Index", "IndexFormatError", "check_model"]
