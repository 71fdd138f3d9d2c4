"""Persistent pooled multi-vector indexes: storage, exact and candidate search, updates, Qdrant export."""

from latepool.index.index import (
    DocumentsExistError,
    DocumentsNotFoundError,
    Hit,
    Index,
    IndexInputError,
    check_model,
    prepare_query_model,
)
from latepool.index.storage import IndexFormatError

__all__ = [
    "DocumentsExistError",
    "DocumentsNotFoundError",
    "Hit",
    "Index",
    "IndexFormatError",
    "IndexInputError",
    "check_model",
    "prepare_query_model",
]
