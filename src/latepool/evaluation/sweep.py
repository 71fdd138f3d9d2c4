"""The evaluation sweep: encode each corpus once, then pool, score and measure every (method, pool factor).

Pool factor 1 is the unpooled model: it is scored once per dataset and reported for every method.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from latepool.cache import cached_encode
from latepool.data import RetrievalDataset
from latepool.evaluation.metrics import mean_metrics
from latepool.fingerprints import model_fingerprint
from latepool.index.codec import Codec
from latepool.index.storage import bytes_per_vector, round_trip
from latepool.models import query_length_of
from latepool.options import DEFAULT_CACHE_DIR, RESIDUAL_BITS
from latepool.pooling import pool_corpus
from latepool.scoring import PackedDocuments, maxsim_topk

if TYPE_CHECKING:
    from sentence_transformers import MultiVectorEncoder

logger = logging.getLogger(__name__)


@dataclass
class SweepConfig:
    """What one sweep evaluates.

    Attributes:
        methods: Pooling methods (``kmeans``, ``hierarchical``, ``span``).
        pool_factors: Pool factors; 1 means unpooled.
        top_k: Documents kept per query (run files and metrics@100).
        batch_size: Encoding batch size.
        pool_batch_size: Documents pooled per call.
        backend: k-means backend (``sklearn`` is the paper's reference bit for bit only with
            ``cache_dtype="float32"``: float16 cached vectors cluster slightly differently).
        seed: k-means seed.
        cache_dir: Where encoded embeddings are cached.
        cache_dtype: Storage type of the embedding cache, ``float16`` or ``float32``.
        state_cache: Fingerprint of the state cache the model encodes through, if the sweep runs
            inside :func:`latepool.training.cached_states.use_cached_states` (part of the cache key).
        show_progress_bar: Show encoding and pooling progress.
        dtypes: Storage types of the index the pooled vectors would live in (``float32``: as they
            are; ``float16``, ``int8``, ``residual4``, ``residual2``, ``residual1``: encoded and
            decoded the way :class:`latepool.index.Index` stores them). Each is one more cell.
    """

    methods: list[str] = field(default_factory=lambda: ["kmeans", "hierarchical", "span"])
    pool_factors: list[float] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    top_k: int = 100
    batch_size: int = 32
    pool_batch_size: int = 256
    backend: str = "torch"
    seed: int = 42
    cache_dir: Path = DEFAULT_CACHE_DIR
    cache_dtype: str = "float16"
    state_cache: str | None = None
    show_progress_bar: bool = True
    dtypes: list[str] = field(default_factory=lambda: ["float32"])


@dataclass
class CellResult:
    """One (dataset, method, pool factor, storage type) cell of the sweep.

    ``bytes_per_document`` is what a document takes in an index of ``dtype`` (its vectors times
    :func:`latepool.index.storage.bytes_per_vector`; ``float32``: 4 bytes a dimension).
    """

    dataset: str
    method: str
    pool_factor: float
    metrics: dict[str, float]
    vectors: int
    bytes_float16: int
    encode_s: float
    pool_s: float
    search_s: float
    run: dict[str, dict[str, float]] = field(repr=False, default_factory=dict)
    dtype: str = "float32"
    bytes_per_document: float = 0.0

    def row(self) -> dict[str, object]:
        """The flat row written to results.csv."""
        fields = asdict(self)
        fields.pop("run")
        return {
            **{key: fields[key] for key in ("dataset", "method", "pool_factor", "dtype")},
            **self.metrics,
            **{
                key: fields[key]
                for key in ("vectors", "bytes_float16", "bytes_per_document", "encode_s", "pool_s", "search_s")
            },
        }


def encode_dataset(
    model: MultiVectorEncoder,
    dataset: RetrievalDataset,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    batch_size: int = 32,
    model_name: str = "",
    cache_dtype: str = "float16",
    state_cache: str | None = None,
    show_progress_bar: bool = True,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Token embeddings of a collection's documents and queries, through the embedding cache.

    Args:
        model: The encoder; lengths come from its ``Transformer``.
        dataset: The collection.
        cache_dir: The embedding cache directory.
        batch_size: Encoding batch size.
        model_name: Recorded in the cache manifests.
        cache_dtype: The cache's storage type (``float16`` or ``float32``).
        state_cache: Fingerprint of the state cache the model encodes through, if any.
        show_progress_bar: Show the documents' encoding progress.

    Returns:
        ``(documents, queries)``: float32 ``(n_i, dim)`` tensors in the dataset's order.
    """
    transformer = model[0]
    encode = partial(
        cached_encode,
        model,
        cache_root=cache_dir,
        batch_size=batch_size,
        model_name=model_name,
        model_hash=model_fingerprint(model, state_cache),
        dtype=cache_dtype,
    )
    documents = encode(
        dataset.corpus_ids,
        dataset.corpus_texts,
        task="document",
        show_progress_bar=show_progress_bar,
        max_length=getattr(transformer, "document_length", None),
    ).tensors()
    with _QueryWidthNotice(query_length_of(transformer)):
        queries = encode(
            dataset.query_ids,
            dataset.query_texts,
            task="query",
            show_progress_bar=False,
            max_length=query_length_of(transformer),
        ).tensors()
    return documents, queries


class _QueryWidthNotice(logging.Filter):
    """Replaces sentence-transformers' warning that queries filled the query width with a note that says
    it is expected (ColBERT encodes every query at one fixed width, the paper's 48 tokens)."""

    PREFIX = "One or more queries filled the entire query_expansion length"

    def __init__(self, width: int | None) -> None:
        super().__init__()
        self.width, self.seen = width, False
        self.logger = logging.getLogger("sentence_transformers.base.modules.transformer")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(self.PREFIX):
            self.seen = True
            return False
        return True

    def __enter__(self) -> _QueryWidthNotice:
        self.logger.addFilter(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeFilter(self)
        if self.seen:
            logger.warning(
                "some queries are longer than the query length (%s tokens) and were cut there; this is expected: "
                "ColBERT encodes every query at this one width (--query-length changes it)",
                self.width,
            )


def sweep_dataset(
    model: MultiVectorEncoder, dataset: RetrievalDataset, config: SweepConfig, model_name: str = ""
) -> Iterator[CellResult]:
    """Evaluate ``model`` on ``dataset`` for every method and pool factor of ``config``.

    Args:
        model: A ``MultiVectorEncoder``.
        dataset: The collection.
        config: Methods, pool factors and settings.
        model_name: Recorded in the cache manifests.

    Yields:
        One :class:`CellResult` per (method, pool factor), methods in order, pool factors ascending.
    """
    started = time.perf_counter()
    documents, queries = encode_dataset(
        model,
        dataset,
        config.cache_dir,
        config.batch_size,
        model_name,
        config.cache_dtype,
        config.state_cache,
        config.show_progress_bar,
    )
    encode_s = time.perf_counter() - started

    unpooled: list[CellResult] = []
    for method in config.methods:
        for pool_factor in sorted(config.pool_factors):
            if pool_factor == 1 and unpooled:
                yield from (CellResult(**{**asdict(cell), "method": method, "run": cell.run}) for cell in unpooled)
                continue
            started = time.perf_counter()
            pooled = documents
            if pool_factor != 1:
                pooled = pool_corpus(
                    documents,
                    method,
                    pool_factor,
                    backend=config.backend,
                    seed=config.seed,
                    batch_size=config.pool_batch_size,
                    show_progress_bar=config.show_progress_bar,
                )
            pool_s = time.perf_counter() - started
            for dtype, stored in stored_forms(pooled, config.dtypes, config.seed):
                cell = evaluate_documents(dataset, queries, stored, config.top_k)
                cell.method, cell.pool_factor, cell.encode_s, cell.pool_s = method, pool_factor, encode_s, pool_s
                cell.dtype = dtype
                cell.bytes_per_document = cell.vectors * _bytes_per_vector(dtype, stored) / max(len(stored), 1)
                if pool_factor == 1:
                    unpooled.append(cell)
                yield cell


def stored_forms(
    documents: list[torch.Tensor], dtypes: list[str], seed: int = 0
) -> Iterator[tuple[str, list[torch.Tensor]]]:
    """``(dtype, documents as an index of that dtype returns them)`` for each dtype.

    Residual dtypes share one set of centroids trained on the documents; each fits its own buckets.
    """
    centroids = None
    for dtype in dtypes:
        codec = None
        if dtype in RESIDUAL_BITS:
            vectors = torch.cat(documents)
            centroids = centroids or Codec.train(vectors, seed=seed)
            codec = centroids.with_bits(RESIDUAL_BITS[dtype], vectors, seed=seed)
        yield dtype, round_trip(documents, dtype, codec)


def _bytes_per_vector(dtype: str, documents: list[torch.Tensor]) -> float:
    dim = documents[0].shape[-1] if documents else 0
    return 4 * dim if dtype == "float32" else bytes_per_vector(dtype, dim)


def evaluate_documents(
    dataset: RetrievalDataset, queries: list[torch.Tensor], documents: list[torch.Tensor], top_k: int
) -> CellResult:
    """Score every query against ``documents`` (exact MaxSim), keep the top k, and compute the metrics."""
    started = time.perf_counter()
    scores, indices = maxsim_topk(queries, PackedDocuments.pack(documents), top_k)
    search_s = time.perf_counter() - started
    run = {
        query_id: {dataset.corpus_ids[int(i)]: float(s) for s, i in zip(row_scores, row_ids)}
        for query_id, row_scores, row_ids in zip(dataset.query_ids, scores.tolist(), indices.tolist())
    }
    vectors = sum(len(d) for d in documents)
    dim = documents[0].shape[-1] if documents else 0
    return CellResult(
        dataset=dataset.name,
        method="none",
        pool_factor=1,
        metrics=mean_metrics(run, dataset.qrels),
        vectors=vectors,
        bytes_float16=vectors * dim * 2,
        encode_s=0.0,
        pool_s=0.0,
        search_s=search_s,
        run=run,
    )
