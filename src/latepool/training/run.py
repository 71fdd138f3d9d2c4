"""``latepool train``: pooling-aware distillation with sentence-transformers' trainer.

The student is a ``MultiVectorEncoder``; the loss is :class:`~latepool.training.loss.PoolingDistillKLDivLoss`;
the loop, checkpointing, mixed precision and multi-GPU (accelerate / torchrun) are the
sentence-transformers trainer's. An optional dev evaluation after each epoch (NDCG@10 at a chosen
pool factor) keeps the best epoch. The result, and every intermediate checkpoint, is written in
PyLate's layout by default (``checkpoint_format``), which PyLate 1.6 and sentence-transformers >= 6.2
both load, with latepool's training settings recorded in its model card and ``latepool_training.json``.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from sentence_transformers.base.evaluation import BaseEvaluator

import latepool
from latepool.checkpoints import save_checkpoint
from latepool.data import RetrievalDataset
from latepool.evaluation.sweep import evaluate_documents
from latepool.extras import require
from latepool.options import DEFAULT_CACHE_DIR
from latepool.pooling import pool_corpus
from latepool.training.cached_states import StateCache, build_state_cache, training_texts, use_cached_states
from latepool.training.examples import TrainingExamples
from latepool.training.loss import PoolingDistillKLDivLoss

if TYPE_CHECKING:
    from sentence_transformers import MultiVectorEncoder


@dataclass
class TrainConfig:
    """The paper's defaults for pooling-aware fine-tuning.

    ``train_layers=None`` (default) fine-tunes the whole model; ``K >= 0`` trains only the top K
    encoder layers and what follows them, on states cached in ``cache_dir`` (see
    :mod:`latepool.training.cached_states`). ``checkpoint_format`` is the layout of the model and
    its checkpoints (:mod:`latepool.checkpoints`); ``save_total_limit``, ``logging_steps`` and
    ``report_to`` (comma-separated, e.g. ``"tensorboard"``) are the trainer's settings of those names.
    """

    pool_method: str = "kmeans"
    pool_factors: list[float] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    n_ways: int = 16
    batch_size: int = 16
    learning_rate: float = 1e-5
    epochs: float = 3
    warmup_ratio: float = 0.1
    max_steps: int = -1
    normalize_scores: bool = True
    seed: int = 42
    save_steps: int = 50
    eval_pool_factor: float = 4
    mini_batch_size: int | None = None
    teacher_temperature: float = 1.0
    train_layers: int | None = None
    cache_dir: Path = DEFAULT_CACHE_DIR
    cache_dtype: str = "float16"
    checkpoint_format: str = "pylate"
    save_total_limit: int | None = 2
    logging_steps: int = 10
    report_to: str = "none"


class PooledRetrievalEvaluator(BaseEvaluator):
    """NDCG@10 (and the other sweep metrics) on a dev collection with documents pooled at one factor.

    Args:
        dataset: The dev collection.
        pool_method: Pooling method (``none`` evaluates unpooled).
        pool_factor: The factor documents are pooled with.
        name: Prefix of the reported metrics.
    """

    def __init__(
        self, dataset: RetrievalDataset, pool_method: str, pool_factor: float, name: str = "dev", seed: int = 42
    ) -> None:
        super().__init__()
        self.dataset, self.pool_method, self.pool_factor, self.name = dataset, pool_method, pool_factor, name
        self.seed = seed
        self.primary_metric = "ndcg@10"

    def __call__(
        self, model: MultiVectorEncoder, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        queries = model.encode_query(self.dataset.query_texts, convert_to_numpy=False)
        documents = model.encode_document(self.dataset.corpus_texts, convert_to_numpy=False)
        documents = [d.float().cpu() for d in documents]
        if self.pool_method != "none":
            documents = pool_corpus(
                documents, self.pool_method, self.pool_factor, seed=self.seed, show_progress_bar=False
            )
        cell = evaluate_documents(self.dataset, [q.float().cpu() for q in queries], documents, 100)
        return self.prefix_name_to_metrics(cell.metrics, self.name)


def train(
    model: MultiVectorEncoder,
    examples: TrainingExamples,
    output: Path,
    config: TrainConfig,
    dev: RetrievalDataset | None = None,
    card: dict[str, Any] | None = None,
    state_cache: StateCache | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on ``examples`` and save it to ``output``; resumes from ``output/checkpoints``.

    Args:
        model: The student ``MultiVectorEncoder``.
        examples: Distillation examples (see :func:`latepool.training.examples.build_examples`).
        output: Directory of the final model (checkpoints go to ``output/checkpoints``).
        config: Hyperparameters.
        dev: Optional dev collection evaluated after each epoch; the best epoch is kept.
        card: Provenance recorded in the model card (base model, data, teacher).
        state_cache: States for ``config.train_layers`` built beforehand (built from the examples
            when None and ``config.train_layers`` is set).

    Returns:
        The training record written to ``output/latepool_training.json``.
    """
    require("train", "pooling-aware training")
    from sentence_transformers.multi_vector_encoder import MultiVectorEncoderTrainingArguments

    from latepool.training.trainer import LatepoolTrainer

    loss = PoolingDistillKLDivLoss(
        model,
        pool_method=config.pool_method,
        pool_factors=config.pool_factors,
        normalize_scores=config.normalize_scores,
        seed=config.seed,
        mini_batch_size=config.mini_batch_size,
        teacher_temperature=config.teacher_temperature,
    )
    evaluator = None
    if dev is not None:
        evaluator = PooledRetrievalEvaluator(dev, config.pool_method, config.eval_pool_factor, seed=config.seed)
    checkpoints = output / "checkpoints"
    strategy = "epoch" if evaluator else "steps"
    args = MultiVectorEncoderTrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps (transformers 5)
        max_steps=config.max_steps,
        seed=config.seed,
        data_seed=config.seed,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        save_strategy=strategy,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy=strategy if evaluator else "no",
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model="eval_dev_ndcg@10" if evaluator else None,
        logging_steps=config.logging_steps,
        report_to=[name.strip() for name in config.report_to.split(",") if name.strip()] or "none",
    )
    if config.train_layers is not None and state_cache is None:
        texts = training_texts(examples, dev)
        with args.main_process_first(desc="latepool state cache"):  # other ranks then reopen the finished cache
            state_cache = build_state_cache(
                model, texts, config.train_layers, config.cache_dir, dtype=config.cache_dtype
            )
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    with use_cached_states(model, state_cache) if state_cache else nullcontext():
        trainer = LatepoolTrainer(
            model=model,
            args=args,
            train_dataset=examples.to_dataset(),
            loss=loss,
            evaluator=evaluator,
            checkpoint_format=config.checkpoint_format,
        )
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    record = {
        "latepool_version": latepool.__version__,
        "training": {**asdict(config), "examples": len(examples), "skipped": dict(examples.skipped)},
        "state_cache_misses": state_cache.misses if state_cache else None,
        "provenance": card or {},
        "global_step": result.global_step,
        "training_loss": result.training_loss,
        "resumed": resume,
    }
    save_model(model, output, record)
    return record


def save_model(model: MultiVectorEncoder, output: Path, record: dict[str, Any]) -> None:
    """Save the model in the configured checkpoint format and record latepool's training settings in its card."""
    pooling = record["training"]
    model.model_card_data.add_tags(["latepool", "token-pooling", f"pooling:{pooling['pool_method']}"])
    save_checkpoint(model, output, pooling["checkpoint_format"])
    (output / "latepool_training.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    provenance = record.get("provenance", {})
    lines = [
        "",
        "## latepool pooling-aware training",
        "",
        f"- latepool version: {record['latepool_version']}",
        f"- base model: {provenance.get('base_model', 'unknown')}",
        f"- training data: {provenance.get('data', 'unknown')} (scores: {provenance.get('scores', 'unknown')})",
        f"- teacher: {provenance.get('teacher', 'unknown')}",
        f"- pooling in the loss: {pooling['pool_method']}, "
        f"pool factor drawn uniformly from {pooling['pool_factors']} per batch",
        f"- n-ways {pooling['n_ways']}, batch {pooling['batch_size']}, lr {pooling['learning_rate']}, "
        f"epochs {pooling['epochs']}, warmup {pooling['warmup_ratio']}, max steps {pooling['max_steps']}, "
        f"normalized scores {pooling['normalize_scores']}, seed {pooling['seed']}",
        f"- trained layers: {_trained_layers(pooling.get('train_layers'))}",
        f"- steps run: {record['global_step']}, training loss {record['training_loss']:.4f}",
        f"- checkpoint format: {pooling['checkpoint_format']} "
        "(`pylate`: `pylate.models.ColBERT(model_name_or_path=...)` and "
        "`sentence_transformers.MultiVectorEncoder(...)` both load it)",
        "",
    ]
    with (output / "README.md").open("a", encoding="utf-8") as card:
        card.write("\n".join(lines))


def _trained_layers(train_layers: int | None) -> str:
    if train_layers is None:
        return "all (full fine-tuning)"
    return f"top {train_layers} encoder layers and the modules after the encoder, on cached states"
