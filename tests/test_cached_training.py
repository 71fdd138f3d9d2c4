"""Cached-feature training (``train_layers=K``): same loss and gradients as the uncached path, a cache
that is rebuilt whenever what it depends on changes, and saved checkpoints that encode like the model."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch

pytest.importorskip("datasets")

from sentence_transformers import MultiVectorEncoder  # noqa: E402
from sentence_transformers.multi_vector_encoder.data_collator import MultiVectorEncoderDataCollator  # noqa: E402

from latepool.cli import main  # noqa: E402
from latepool.models import build_colbert  # noqa: E402
from latepool.training.cached_states import (  # noqa: E402
    build_state_cache,
    split_encoder,
    use_cached_states,
)
from latepool.training.loss import PoolingDistillKLDivLoss  # noqa: E402

QUERIES = ["protein expression in human cells", "blood levels in mice"]
DOCUMENTS = [
    ["the protein expression was increased in human cells after the treatment", "mice with lower blood levels"],
    ["cancer risk was higher in patients with the gene and more risk", "effects of treatment on blood and brain"],
    ["this abstract does not support the claim", "genes and protein levels were reduced in cancer cells of mice"],
]
TEACHER = [[3.0, 1.0, -1.0], [2.0, 2.5, 0.0]]


def colbert(directory: Path) -> MultiVectorEncoder:
    model = build_colbert(directory, embedding_dim=8, query_length=8, document_length=24, device="cpu", seed=3)
    model.eval()  # no dropout: both paths must see the same computation
    return model


def batch(model: MultiVectorEncoder) -> list[dict]:
    collator = MultiVectorEncoderDataCollator(preprocess_fn=model.preprocess)
    rows = [
        {"query": q, **{f"document_{i + 1}": DOCUMENTS[i][r] for i in range(3)}, "label": TEACHER[r]}
        for r, q in enumerate(QUERIES)
    ]
    collated = collator(rows)
    columns = ["query", "document_1", "document_2", "document_3"]
    features = [
        {key[len(c) + 1 :]: value for key, value in collated.items() if key.startswith(c + "_")} for c in columns
    ]
    return features, collated["label"]


def loss_and_gradients(model: MultiVectorEncoder, method: str) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    features, labels = batch(model)
    loss = PoolingDistillKLDivLoss(model, pool_method=method, pool_factors=[3], seed=0)
    value = loss(features, labels)
    value.backward()
    gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return value.item(), gradients


@pytest.mark.parametrize("family", ["bert", "modernbert"])
@pytest.mark.parametrize("train_layers", [0, 1])
@pytest.mark.parametrize("method", ["kmeans", "none"])
def test_cached_loss_and_gradients_equal_the_uncached_path(
    family: str, train_layers: int, method: str, tiny_bert_dir: Path, tiny_modernbert_dir: Path, tmp_path: Path
) -> None:
    model = colbert(tiny_bert_dir if family == "bert" else tiny_modernbert_dir)
    texts = {"query": QUERIES, "document": [d for column in DOCUMENTS for d in column]}
    cache = build_state_cache(model, texts, train_layers, tmp_path, dtype="float32", show_progress_bar=False)
    split = split_encoder(model, train_layers)
    for parameter in split.frozen.values():
        parameter.requires_grad_(False)  # the uncached reference trains the same parameters
    expected_loss, expected = loss_and_gradients(model, method)
    for parameter in split.frozen.values():
        parameter.requires_grad_(True)
    with use_cached_states(model, cache):
        cached_loss, cached = loss_and_gradients(model, method)
    assert cache.misses == 0
    assert cached_loss == pytest.approx(expected_loss, rel=1e-5, abs=1e-7)
    trained = {n for n in expected}
    assert trained == set(cached) and trained.isdisjoint({n for n in split.frozen})
    layer_names = "encoder.layer" if family == "bert" else "layers"
    top = {n for n in trained if f"{layer_names}.{len(split.layers) - 1}." in n}
    assert bool(top) == (train_layers == 1)  # K=1 trains the top layer, K=0 only the projection
    for name in trained:
        torch.testing.assert_close(cached[name], expected[name], rtol=1e-4, atol=1e-6)
    assert all(p.requires_grad for p in model.parameters())  # restored on exit


def test_float16_cache_stays_close(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model = colbert(tiny_bert_dir)
    texts = {"query": QUERIES, "document": [d for column in DOCUMENTS for d in column]}
    cache = build_state_cache(model, texts, 1, tmp_path, show_progress_bar=False)
    expected = model.encode_document(texts["document"], convert_to_numpy=False)
    with use_cached_states(model, cache):
        cached = model.encode_document(texts["document"], convert_to_numpy=False)
    assert cache.misses == 0
    for a, b in zip(expected, cached):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-3)


def test_rows_missing_from_the_cache_are_computed_exactly(tiny_modernbert_dir: Path, tmp_path: Path) -> None:
    model = colbert(tiny_modernbert_dir)
    cache = build_state_cache(model, {"document": DOCUMENTS[0]}, 2, tmp_path, dtype="float32", show_progress_bar=False)
    other = ["an unseen document about brain cells", DOCUMENTS[0][1]]
    expected = model.encode_document(other, convert_to_numpy=False)
    with use_cached_states(model, cache):
        got = model.encode_document(other, convert_to_numpy=False)
    assert cache.misses >= 1
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b)


def entries(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.name.startswith("states-")}


def test_cache_is_rebuilt_when_model_lengths_or_k_change(tiny_bert_dir: Path, tmp_path: Path) -> None:
    texts = {"document": DOCUMENTS[0]}
    model = colbert(tiny_bert_dir)
    build_state_cache(model, texts, 1, tmp_path, show_progress_bar=False)
    seen = entries(tmp_path)
    build_state_cache(model, texts, 1, tmp_path, show_progress_bar=False)
    assert entries(tmp_path) == seen  # same model, lengths and K: reused
    with torch.no_grad():
        model[1].linear.weight.add_(1.0)  # above the cut: the states do not depend on it
    build_state_cache(model, texts, 1, tmp_path, show_progress_bar=False)
    assert entries(tmp_path) == seen
    changes = []
    with torch.no_grad():
        model[0].model.embeddings.word_embeddings.weight[5:].mul_(1.01)  # below the cut
    changes.append(build_state_cache(model, texts, 1, tmp_path, show_progress_bar=False))
    model[0].document_length = 12
    changes.append(build_state_cache(model, texts, 1, tmp_path, show_progress_bar=False))
    changes.append(build_state_cache(model, texts, 0, tmp_path, show_progress_bar=False))
    assert len(entries(tmp_path)) == len(seen) + 3
    assert len({cache.fingerprint for cache in changes}) == 3
    assert max(len(e.vectors) for e in changes[1].entries) < len(changes[0].entries[0].vectors)  # shorter rows
    with pytest.raises(ValueError, match="another model"), use_cached_states(model, changes[0]):
        pass


def _killed_build(directory: str, cache_root: str) -> None:
    model = colbert(Path(directory))
    documents = [f"{d} number {i}" for i in range(6) for d in DOCUMENTS[0]]
    calls = {"n": 0}
    original = MultiVectorEncoder.preprocess

    def dying(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # two shards written, the third never finishes
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    MultiVectorEncoder.preprocess = dying
    build_state_cache(model, {"document": documents}, 1, Path(cache_root), batch_size=4, shard_size=4)


def test_a_killed_cache_build_is_not_trusted(tiny_bert_dir: Path, tmp_path: Path) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=_killed_build, args=(str(tiny_bert_dir), str(tmp_path))
    )
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL
    assert all(name.endswith(".partial") for name in entries(tmp_path))  # nothing under a final name
    partial = next(tmp_path.glob("states-*.partial"))
    assert len(list(partial.glob("shard-*.npz"))) == 2
    model = colbert(tiny_bert_dir)
    documents = [f"{d} number {i}" for i in range(6) for d in DOCUMENTS[0]]
    cache = build_state_cache(model, {"document": documents}, 1, tmp_path, shard_size=4, show_progress_bar=False)
    assert not any(name.endswith(".partial") for name in entries(tmp_path))
    expected = model.encode_document(documents, convert_to_numpy=False)
    with use_cached_states(model, cache):
        got = model.encode_document(documents, convert_to_numpy=False)
    assert cache.misses == 0
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=0, atol=5e-3)


def test_bad_train_layers(tiny_bert_dir: Path) -> None:
    model = colbert(tiny_bert_dir)
    for bad in (-1, 3, 1.5):
        with pytest.raises(ValueError, match="train_layers"):
            split_encoder(model, bad)


@pytest.mark.parametrize("train_layers", ["0", "1"])
def test_train_command_with_cached_states_saves_a_complete_model(
    tiny_bert_dir: Path, beir_dir: Path, tmp_path: Path, train_layers: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"query_id": q, "document_ids": ids, "scores": [3.0, 2.0, 1.0], "labels": ["positive", "hard", "random"]}
        for q, ids in (("q1", ["d0", "d3", "d4"]), ("q2", ["d3", "d0", "d9"]), ("q3", ["d10", "d1", "d2"]))
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "scores.parquet")
    start = build_colbert(tiny_bert_dir, embedding_dim=8, query_length=12, document_length=32, seed=42, device="cpu")
    arguments = ["train", "--model", str(tiny_bert_dir), "--scores", str(tmp_path / "scores.parquet")]
    arguments += ["--data", str(beir_dir), "--split", "test", "--n-ways", "3", "--batch-size", "2", "--lr", "1e-2"]
    arguments += ["--max-steps", "3", "--query-length", "12", "--document-length", "32", "--embedding-dim", "8"]
    arguments += ["--train-layers", train_layers, "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main([*arguments, "--output", str(tmp_path / "model")]) == 0
    record = json.loads((tmp_path / "model" / "latepool_training.json").read_text())
    assert record["training"]["train_layers"] == int(train_layers) and record["state_cache_misses"] == 0
    trained = MultiVectorEncoder(str(tmp_path / "model"), device="cpu")
    before, after = start.state_dict(), trained.state_dict()
    assert before.keys() == after.keys()  # complete: frozen layers included
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("1.") for k in changed)  # the projection was trained
    assert any(".encoder.layer.1." in k for k in changed) == (train_layers == "1")
    assert not any("embeddings" in k or ".encoder.layer.0." in k for k in changed)  # below the cut: untouched
    # The saved model keeps the cut's identity: a state cache made for the start still serves it.
    assert (
        split_encoder(trained, int(train_layers)).fingerprint() == split_encoder(start, int(train_layers)).fingerprint()
    )
    # The saved model encodes exactly like the in-memory model given the same weights.
    start.load_state_dict(after)
    documents = ["the protein expression was increased", "blood levels of the gene"]
    for a, b in zip(start.encode_document(documents), trained.encode_document(documents)):
        assert (a == b).all()
