"""Persistent pooled multi-vector indexes: storage, exact and candidate search, updates, Qdrant export.

The rooms: :mod:`~latepool.index.storage` (the files), :mod:`~latepool.index.codec` (centroids and
residuals), :mod:`~latepool.index.search` and :mod:`~latepool.index.kernels` (exact and candidate
search), :mod:`~latepool.index.snapshot` (a committed state, as readers see it),
:mod:`~latepool.index.writer` and :mod:`~latepool.index.locks` (every change), and
:mod:`~latepool.index.index` (``Index``: a reader with a text front end). Only ``index`` loads a model.
"""

from latepool.index.errors import DocumentsExistError, DocumentsNotFoundError, IndexInputError
from latepool.index.index import Hit, Index, check_model, prepare_query_model
from latepool.index.locks import IndexBusyError
from latepool.index.storage import IndexFormatError

__all__ = [
    "DocumentsExistError",
    "DocumentsNotFoundError",
    "Hit",
    "Index",
    "IndexBusyError",
    "IndexFormatError",
    "IndexInputError",
    "check_model",
    "prepare_query_model",
]
