"""The embedding cache: reuse, invalidation, and crash safety."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latepool import models
from latepool.cache import cached_encode, model_fingerprint

TEXTS = [
    f"the protein {w} in human cells after treatment number {i}" for i, w in enumerate(["increase", "decrease"] * 6)
]
IDS = [f"d{i}" for i in range(len(TEXTS))]


class CountingModel:
    """Wraps a model and counts the texts it encodes; ``fail_after`` calls raise (an interrupted run)."""

    def __init__(self, model, fail_after: int | None = None) -> None:
        self.model, self.encoded, self.calls, self.fail_after = model, 0, 0, fail_after

    def encode_document(self, texts, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.calls += 1
        self.encoded += len(texts)
        return self.model.encode_document(texts, **kwargs)

    def encode_query(self, texts, **kwargs):
        self.encoded += len(texts)
        return self.model.encode_query(texts, **kwargs)


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir):
    return models.build_colbert(tiny_bert_dir, embedding_dim=8, query_length=8, document_length=32, device="cpu")


def encode(model, root: Path, *, fingerprint: str, texts=TEXTS, max_length: int = 32, shard_size: int = 4):
    return cached_encode(
        model,
        IDS[: len(texts)],
        texts,
        task="document",
        cache_root=root,
        max_length=max_length,
        shard_size=shard_size,
        model_hash=fingerprint,
        show_progress_bar=False,
    )


def test_cache_is_reused_and_matches_direct_encoding(tiny_model, tmp_path: Path) -> None:
    fingerprint = model_fingerprint(tiny_model)
    counting = CountingModel(tiny_model)
    first = encode(counting, tmp_path, fingerprint=fingerprint)
    assert counting.encoded == len(TEXTS)
    second = encode(counting, tmp_path, fingerprint=fingerprint)
    assert counting.encoded == len(TEXTS)  # nothing encoded again
    direct = tiny_model.encode_document(TEXTS)
    for cached, expected in zip(second.tensors(), direct):
        assert cached.shape == expected.shape
        assert torch.allclose(cached, expected, atol=2e-3)  # float16 storage
    assert first.manifest == second.manifest and first.manifest["vectors"] == sum(len(d) for d in direct)


def test_cache_is_rebuilt_when_model_texts_or_settings_change(tiny_model, tmp_path: Path) -> None:
    fingerprint = model_fingerprint(tiny_model)
    counting = CountingModel(tiny_model)
    encode(counting, tmp_path, fingerprint=fingerprint)
    encode(counting, tmp_path, fingerprint=fingerprint, max_length=16)
    assert counting.encoded == 2 * len(TEXTS)
    encode(counting, tmp_path, fingerprint=fingerprint, texts=[*TEXTS[:-1], "another text"])
    assert counting.encoded == 3 * len(TEXTS)
    with torch.no_grad():
        tiny_model[1].linear.weight[0, 0] += 1.0
    try:
        changed = model_fingerprint(tiny_model)
        assert changed != fingerprint
        encode(counting, tmp_path, fingerprint=changed)
        assert counting.encoded == 4 * len(TEXTS)
    finally:
        with torch.no_grad():
            tiny_model[1].linear.weight[0, 0] -= 1.0


def test_interrupted_build_is_never_trusted_and_resumes(tiny_model, tmp_path: Path) -> None:
    fingerprint = model_fingerprint(tiny_model)
    interrupted = CountingModel(tiny_model, fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        encode(interrupted, tmp_path / "a", fingerprint=fingerprint)
    entries = list((tmp_path / "a").iterdir())
    assert all(entry.name.endswith(".partial") for entry in entries)  # no entry under a final name
    resumed = CountingModel(tiny_model)
    result = encode(resumed, tmp_path / "a", fingerprint=fingerprint)
    assert resumed.encoded == len(TEXTS) - 4  # the finished shard was kept
    clean = encode(CountingModel(tiny_model), tmp_path / "b", fingerprint=fingerprint)
    assert all(torch.equal(a, b) for a, b in zip(result.tensors(), clean.tensors()))


def test_damaged_or_foreign_entry_is_rebuilt(tiny_model, tmp_path: Path) -> None:
    fingerprint = model_fingerprint(tiny_model)
    counting = CountingModel(tiny_model)
    entry_files = encode(counting, tmp_path, fingerprint=fingerprint)
    entry = next(p for p in tmp_path.iterdir() if not p.name.endswith(".partial"))
    vectors = entry / "vectors.f16"
    vectors.write_bytes(vectors.read_bytes()[:-2])  # truncated
    rebuilt = encode(counting, tmp_path, fingerprint=fingerprint)
    assert counting.encoded == 2 * len(TEXTS)
    assert rebuilt.manifest["vectors"] == entry_files.manifest["vectors"]
    manifest = entry / "manifest.json"
    manifest.write_text(manifest.read_text().replace(fingerprint, "0" * 64))  # made for another model
    encode(counting, tmp_path, fingerprint=fingerprint)
    assert counting.encoded == 3 * len(TEXTS)
