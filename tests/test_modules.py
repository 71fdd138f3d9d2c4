"""Pooling modules inside MultiVectorEncoder (per call and saved in a checkpoint) and the PyLate-style facade."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from sentence_transformers import MultiVectorEncoder

from latepool import models
from latepool.pooling import HierarchicalTokenPooling, KMeansTokenPooling, SpanTokenPooling, pool_documents

TEXTS = [
    "the protein expression was increased in human cells after treatment .",
    "blood levels of the gene were lower in patients with disease , and the risk was higher .",
    "evidence",
    "this study of mice does not support the claim that brain cells increase after treatment with more protein",
]


@pytest.fixture(scope="module")
def tiny_colbert(tiny_bert_dir) -> MultiVectorEncoder:
    return models.build_colbert(tiny_bert_dir, embedding_dim=16, query_length=12, document_length=64, device="cpu")


@pytest.mark.parametrize("pooling_class", [KMeansTokenPooling, HierarchicalTokenPooling, SpanTokenPooling])
def test_per_call_pooling_equals_functional(tiny_colbert, pooling_class) -> None:
    pooling = pooling_class(3)
    pooled = tiny_colbert.encode_document(TEXTS, token_pooling=pooling, batch_size=4)
    plain = tiny_colbert.encode_document(TEXTS, batch_size=4)
    expected = pool_documents(plain, method=pooling_class.method, pool_factor=3)
    assert [len(p) for p in pooled] == [len(e) for e in expected]
    assert all(torch.allclose(p, e, atol=1e-6) for p, e in zip(pooled, expected))
    queries = tiny_colbert.encode_query(TEXTS, token_pooling=pooling)
    assert all(torch.equal(a, b) for a, b in zip(queries, tiny_colbert.encode_query(TEXTS)))  # never pooled


@pytest.mark.parametrize("pooling_class", [KMeansTokenPooling, HierarchicalTokenPooling, SpanTokenPooling])
def test_pooling_saved_in_checkpoint_pools_identically(tiny_colbert, pooling_class, tmp_path) -> None:
    pooling = pooling_class(2.5, num_protected_tokens=2, seed=7)
    with_pooling = MultiVectorEncoder(modules=[*tiny_colbert, pooling], device="cpu")
    before = with_pooling.encode_document(TEXTS, batch_size=2)
    with_pooling.save(str(tmp_path / "model"))
    saved = json.loads((tmp_path / "model" / "modules.json").read_text())
    assert saved[-1]["type"] == f"latepool.pooling.modules.{pooling_class.__name__}"

    with pytest.raises(ValueError, match="trust_remote_code"):  # sentence-transformers' guard on outside modules
        MultiVectorEncoder(str(tmp_path / "model"), device="cpu")
    loaded = MultiVectorEncoder(str(tmp_path / "model"), device="cpu", trust_remote_code=True)
    module = loaded[len(loaded) - 1]
    assert isinstance(module, pooling_class)
    assert (module.pool_factor, module.num_protected_tokens, module.seed) == (2.5, 2, 7)
    after = loaded.encode_document(TEXTS, batch_size=2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, after))
    expected = pool_documents(
        tiny_colbert.encode_document(TEXTS),
        method=pooling_class.method,
        pool_factor=2.5,
        num_protected_tokens=2,
        seed=7,
    )
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after, expected))


def test_module_pool_accepts_sentence_transformers_forms() -> None:
    pooling = KMeansTokenPooling(2)
    docs = [torch.nn.functional.normalize(torch.randn(n, 8), dim=-1) for n in (9, 4)]
    padded = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True)
    mask = torch.arange(9) < torch.tensor([9, 4])[:, None]
    out = pooling.pool(padded, attention_mask=mask)
    from_list = pooling.pool(docs)
    assert out.shape == (2, 5, 8)
    assert torch.allclose(out[1, 3:], torch.zeros(2, 8))  # padding rows are zero
    assert torch.allclose(out[0], from_list[0], atol=1e-6)
    assert torch.allclose(pooling.pool_one(docs[1]), from_list[1])
    assert pooling.pool(docs, task="query") is docs


def test_module_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="pool_factor"):
        KMeansTokenPooling(0)
    with pytest.raises(ValueError, match="num_protected_tokens"):
        SpanTokenPooling(2, num_protected_tokens=-2)
    with pytest.raises(ValueError, match="backend"):
        KMeansTokenPooling(2, backend="cuda")


def test_colbert_facade_matches_multi_vector_encoder(tiny_pylate_dir) -> None:
    encoder = MultiVectorEncoder(str(tiny_pylate_dir), device="cpu")
    facade = models.ColBERT(model_name_or_path=str(tiny_pylate_dir), device="cpu")

    queries = facade.encode(TEXTS[:2], is_query=True)
    expected_queries = encoder.encode_query(TEXTS[:2], convert_to_numpy=True)
    assert all(isinstance(q, np.ndarray) for q in queries)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(queries, expected_queries))
    assert queries[0].shape == (12, 16)  # PyLate's query expansion to query_length

    documents = facade.encode(TEXTS, is_query=False)
    expected_documents = encoder.encode_document(TEXTS)
    assert all(np.allclose(a, b.numpy(), atol=1e-6) for a, b in zip(documents, expected_documents))

    for method in ("kmeans", "hierarchical", "span"):
        pooled = facade.encode(TEXTS, is_query=False, pool_factor=2, pool_method=method, protected_tokens=1)
        reference = pool_documents(expected_documents, method=method, pool_factor=2)
        assert all(np.allclose(a, b.numpy(), atol=1e-6) for a, b in zip(pooled, reference))
    sklearn_pooled = facade.encode(TEXTS, is_query=False, pool_factor=4, pool_method="kmeans", use_sklearn=True)
    reference = pool_documents(expected_documents, method="kmeans", pool_factor=4, backend="sklearn")
    assert all(np.allclose(a, b.numpy(), atol=1e-6) for a, b in zip(sklearn_pooled, reference))
    single = facade.encode(TEXTS[0], is_query=False, pool_factor=2, pool_method="span")
    assert single.ndim == 2


def test_searching_and_pooling_do_not_import_sentence_transformers_until_a_module_is_asked_for() -> None:
    script = (
        "import sys, latepool, latepool.index, latepool.pooling\n"
        "heavy = [m for m in ('sentence_transformers', 'transformers', 'scipy.cluster') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert latepool.KMeansTokenPooling.__module__ == 'latepool.pooling.modules'\n"
        "assert 'sentence_transformers' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
