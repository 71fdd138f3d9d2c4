"""The evaluation sweep: encode each corpus once, then pool, score and measure every (method, pool factor).

Pool factor 1 is the unpooled model: it is scored once per dataset and reported for every method.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from latepool.cache import cached_encode, model_fingerprint
from latepool.data import RetrievalDataset
from latepool.evaluation.metrics import mean_metrics
from latepool.pooling import pool_documents
from latepool.scoring import PackedDocuments, maxsim_topk


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
    """

    methods: list[str] = field(default_factory=lambda: ["kmeans", "hierarchical", "span"])
    pool_factors: list[float] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    top_k: int = 100
    batch_size: int = 32
    pool_batch_size: int = 256
    backend: str = "torch"
    seed: int = 42
    cache_dir: Path = Path(".cache/latepool")
    cache_dtype: str = "float16"


@dataclass
class CellResult:
    """One (dataset, method, pool factor) cell of the sweep."""

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

    def row(self) -> dict[str, object]:
        """The flat row written to results.csv."""
        fields = asdict(self)
        fields.pop("run")
        return {
            **{key: fields[key] for key in ("dataset", "method", "pool_factor")},
            **self.metrics,
            **{key: fields[key] for key in ("vectors", "bytes_float16", "encode_s", "pool_s", "search_s")},
        }


def encode_dataset(
    model,
    dataset: RetrievalDataset,
    cache_dir: Path,
    batch_size: int = 32,
    model_name: str = "",
    cache_dtype: str = "float16",
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Token embeddings of a collection's documents and queries, through the embedding cache.

    Lengths come from the model's ``Transformer`` (``document_length``, ``query_length``);
    ``cache_dtype`` is the cache's storage type (``float16`` or ``float32``).

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
        model_hash=model_fingerprint(model),
        dtype=cache_dtype,
    )
    documents = encode(
        dataset.corpus_ids,
        dataset.corpus_texts,
        task="document",
        max_length=getattr(transformer, "document_length", None),
    ).tensors()
    queries = encode(
        dataset.query_ids,
        dataset.query_texts,
        task="query",
        show_progress_bar=False,
        max_length=getattr(transformer, "query_length", None),
    ).tensors()
    return documents, queries


def sweep_dataset(model, dataset: RetrievalDataset, config: SweepConfig, model_name: str = "") -> Iterator[CellResult]:
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
        model, dataset, config.cache_dir, config.batch_size, model_name, config.cache_dtype
    )
    encode_s = time.perf_counter() - started

    unpooled = None
    for method in config.methods:
        for pool_factor in sorted(config.pool_factors):
            if pool_factor == 1 and unpooled is not None:
                yield CellResult(**{**asdict(unpooled), "method": method, "run": unpooled.run})
                continue
            started = time.perf_counter()
            pooled = documents if pool_factor == 1 else pool_corpus(documents, method, pool_factor, config)
            pool_s = time.perf_counter() - started
            cell = evaluate_documents(dataset, queries, pooled, config.top_k)
            cell.method, cell.pool_factor, cell.encode_s, cell.pool_s = method, pool_factor, encode_s, pool_s
            if pool_factor == 1:
                unpooled = cell
            yield cell


def pool_corpus(
    documents: list[torch.Tensor], method: str, pool_factor: float, config: SweepConfig
) -> list[torch.Tensor]:
    """Pool a whole corpus in batches of ``config.pool_batch_size`` documents, with a progress bar."""
    order = sorted(range(len(documents)), key=lambda i: len(documents[i]))  # similar lengths batch well
    pooled: list[torch.Tensor] = [documents[0]] * len(documents)
    step = config.pool_batch_size
    for start in tqdm(range(0, len(order), step), desc=f"Pooling {method} PF{pool_factor:g}", leave=False):
        batch = order[start : start + step]
        outputs = pool_documents(
            [documents[i] for i in batch],
            method=method,
            pool_factor=pool_factor,
            backend=config.backend,
            seed=config.seed,
        )
        for index, output in zip(batch, outputs):
            pooled[index] = output
    return pooled


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
