"""sentence-transformers token-pooling modules backed by :func:`latepool.pooling.pool_documents`.

Use them per call (``model.encode_document(docs, token_pooling=KMeansTokenPooling(4))``), at the
end of a ``MultiVectorEncoder`` pipeline (saved and loaded with the checkpoint), or standalone
(``pooling.pool(embeddings)``). Unlike sentence-transformers' base class, a whole batch is pooled
in one call, so the torch k-means clusters all documents of the batch together.

A checkpoint saved with one of these modules in its pipeline names a class outside
sentence-transformers, so it loads with ``MultiVectorEncoder(path, trust_remote_code=True)`` (with
latepool installed); checkpoints that pool per call load as usual.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sentence_transformers.multi_vector_encoder.modules import BaseTokenPooling
from torch import Tensor

from latepool.options import KMEANS_BACKENDS, POOL_METHODS
from latepool.pooling.batch import check_num_protected_tokens, check_pool_factor
from latepool.pooling.functional import pool_documents


class _DocumentPooling(BaseTokenPooling):
    """Shared body of the latepool pooling modules; subclasses only name their ``method``."""

    method: ClassVar[str]
    config_keys: list[str] = ["pool_factor", "num_protected_tokens", "normalize_embeddings", "backend", "seed", "tasks"]

    def __init__(
        self,
        pool_factor: float = 1.0,
        *,
        num_protected_tokens: int = 1,
        normalize_embeddings: bool = False,
        backend: str = "torch",
        seed: int = 42,
        tasks: str | list[str] | None = None,
    ) -> None:
        super().__init__(tasks=tasks)
        if backend not in KMEANS_BACKENDS:
            raise ValueError(f"backend must be one of {KMEANS_BACKENDS}, got {backend!r}.")
        self.pool_factor = check_pool_factor(pool_factor)
        self.num_protected_tokens = check_num_protected_tokens(num_protected_tokens)
        self.normalize_embeddings = normalize_embeddings
        self.backend = backend
        self.seed = seed

    def _pool_kwargs(self) -> dict[str, Any]:
        return dict(
            method=self.method,
            pool_factor=self.pool_factor,
            num_protected_tokens=self.num_protected_tokens,
            normalize_embeddings=self.normalize_embeddings,
            backend=self.backend,
            seed=self.seed,
        )

    def forward(self, features: dict[str, Tensor], task: str | None = None) -> dict[str, Tensor]:
        """Pool ``features["token_embeddings"]`` under ``features["attention_mask"]`` (pipeline use)."""
        if not self.applies_to(task) or features["token_embeddings"].shape[0] == 0:
            return features
        pooled, mask = pool_documents(
            features["token_embeddings"], attention_mask=features["attention_mask"], **self._pool_kwargs()
        )
        features["token_embeddings"], features["attention_mask"] = pooled, mask
        return features

    def pool(
        self,
        embeddings: list[Tensor] | Tensor,
        *,
        task: str | None = None,
        attention_mask: Tensor | None = None,
        padding_side: str = "right",
    ) -> list[Tensor] | Tensor:
        """Pool a list of ``(n_i, dim)`` tensors (returns a list) or a padded ``(B, T, dim)`` tensor.

        Args:
            embeddings: The documents' token embeddings.
            task: Inputs of a task outside :attr:`tasks` pass through (``None`` counts as document).
            attention_mask: ``(B, T)`` mask of real tokens for the padded form.
            padding_side: Accepted for sentence-transformers compatibility; the output is right-padded.

        Returns:
            Pooled embeddings in the input's form (a padded tensor is zero where there is no row).
        """
        if not self.applies_to(task):
            return embeddings
        if isinstance(embeddings, Tensor):
            pooled, mask = pool_documents(embeddings, attention_mask=attention_mask, **self._pool_kwargs())
            return pooled * mask[..., None]
        return pool_documents(list(embeddings), **self._pool_kwargs())

    def pool_one(self, embedding: Tensor, **kwargs: Any) -> Tensor:
        """Pool one ``(num_tokens, dim)`` document."""
        return pool_documents([embedding], **self._pool_kwargs())[0]


class KMeansTokenPooling(_DocumentPooling):
    """K-means token pooling (the paper's default): batched torch k-means, or sklearn's reference.

    Args:
        pool_factor: Keep about ``1 / pool_factor`` of each document's poolable tokens (>= 1).
        num_protected_tokens: Leading tokens kept unpooled. Default 1.
        normalize_embeddings: L2-normalize the output vectors. Default False (plain means).
        backend: ``"torch"`` (batched, default) or ``"sklearn"`` (per-document ``KMeans``).
        seed: k-means seed.
        tasks: Tasks pooled; default ``["document"]``: queries are never pooled.

    Example::

        pooling = KMeansTokenPooling(pool_factor=4)
        docs = model.encode_document(texts, token_pooling=pooling)
    """

    method = "kmeans"


class HierarchicalTokenPooling(_DocumentPooling):
    """Ward hierarchical token pooling on cosine distance.

    Same clusters as sentence-transformers' ``HierarchicalTokenPooling(normalize_embeddings=False)``
    and PyLate >= 1.4, with the distance matrices of a batch computed in one product. Takes the same
    arguments as :class:`KMeansTokenPooling` (``backend`` and ``seed`` are unused).
    """

    method = "hierarchical"


class SpanTokenPooling(_DocumentPooling):
    """Span token pooling: means of consecutive windows of about ``pool_factor`` tokens.

    Takes the same arguments as :class:`KMeansTokenPooling` (``backend`` and ``seed`` are unused).
    """

    method = "span"


_MODULES: dict[str, type[_DocumentPooling]] = {
    "kmeans": KMeansTokenPooling,
    "hierarchical": HierarchicalTokenPooling,
    "span": SpanTokenPooling,
}


def make_token_pooling(method: str, pool_factor: float, **kwargs: Any) -> _DocumentPooling:
    """Build the pooling module for ``method`` (``kmeans``, ``hierarchical`` or ``span``).

    Example::

        >>> make_token_pooling("span", 2).pool_factor
        2.0
    """
    if method not in _MODULES:
        raise ValueError(f"method must be one of {POOL_METHODS}, got {method!r}.")
    return _MODULES[method](pool_factor, **kwargs)
