"""The choices a user makes by name, in one light module.

The command line builds its parser from these without importing torch or a model (``latepool
--help`` answers at once); the modules that implement each choice import its names from here.

Example::

    >>> POOL_METHODS, DTYPES
    (('kmeans', 'hierarchical', 'span'), ('float16', 'int8', 'residual4', 'residual2', 'residual1'))
"""

from __future__ import annotations

import os
from pathlib import Path

POOL_METHODS: tuple[str, ...] = ("kmeans", "hierarchical", "span")  # token pooling (latepool.pooling)
KMEANS_BACKENDS: tuple[str, ...] = ("torch", "sklearn")  # batched torch k-means, or the paper's sklearn reference
TRAIN_POOL_METHODS: tuple[str, ...] = (*POOL_METHODS, "none")  # pooling inside the training loss
RESIDUAL_BITS = {"residual4": 4, "residual2": 2, "residual1": 1}  # residual codecs: bits per dimension
DTYPES: tuple[str, ...] = ("float16", "int8", *RESIDUAL_BITS)  # how an index stores its vectors
TEACHER_TYPES: tuple[str, ...] = ("cross-encoder", "llm-reranker", "bi-encoder", "colbert")
CHECKPOINT_FORMATS: tuple[str, ...] = ("pylate", "sentence-transformers")
QDRANT_PREFETCH = 800  # Qdrant search: candidate documents rescored by exact MaxSim (latepool.index.qdrant)
DEFAULT_CACHE_DIR = Path(os.environ.get("LATEPOOL_CACHE") or Path.home() / ".cache" / "latepool")
