"""Shared fixtures: tiny random BERT checkpoints built on the fly, and real data from ../shared."""

from __future__ import annotations

import json
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

collect_ignore = ["pylate_reference.py"]  # runs in PyLate's own virtualenv (see test_checkpoints.py)

WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "by",
    "as",
    "at",
    "from",
    "that",
    "this",
    "which",
    "be",
    "are",
    "were",
    "it",
    "its",
    "has",
    "have",
    "cell",
    "cells",
    "protein",
    "gene",
    "genes",
    "cancer",
    "patients",
    "study",
    "studies",
    "treatment",
    "risk",
    "disease",
    "blood",
    "brain",
    "effect",
    "effects",
    "increase",
    "increased",
    "decrease",
    "reduced",
    "higher",
    "lower",
    "level",
    "levels",
    "expression",
    "mice",
    "human",
    "evidence",
    "claim",
    "supports",
    "abstract",
    "document",
    "query",
    "what",
    "how",
    "why",
    "does",
    "do",
    "not",
    "no",
    "more",
    "less",
    "after",
    "before",
]


def write_tiny_bert(directory: Path, *, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Save a random BERT with a small word-level vocabulary (a real BertTokenizerFast) to ``directory``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]", *string.punctuation, *WORDS]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(dict.fromkeys(vocab)),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(directory)
    BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True).save_pretrained(directory)  # transformers 5: vocab=
    return directory


def write_tiny_modernbert(directory: Path, *, hidden_size: int = 32, layers: int = 3, seed: int = 0) -> Path:
    """Save a random ModernBERT (local attention over 8 tokens, global every third layer) with a BERT tokenizer."""
    from transformers import ModernBertConfig, ModernBertModel

    write_tiny_bert(directory, hidden_size=hidden_size, layers=1, seed=seed)
    vocab_size = json.loads((directory / "config.json").read_text())["vocab_size"]
    torch.manual_seed(seed)
    config = ModernBertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        local_attention=8,
        global_attn_every_n_layers=3,
        max_position_embeddings=512,
        pad_token_id=0,
        cls_token_id=2,
        sep_token_id=3,
        bos_token_id=2,
        eos_token_id=3,
    )
    for stale in directory.glob("*.safetensors"):
        stale.unlink()
    ModernBertModel(config).save_pretrained(directory)
    return directory


def write_tiny_pylate_colbert(directory: Path, *, embedding_dim: int = 16, seed: int = 0) -> Path:
    """A checkpoint in PyLate's (v1-3) save format: BERT at the root, ``pylate.models.Dense.Dense`` projection."""
    from safetensors.torch import save_file

    write_tiny_bert(directory, seed=seed)
    hidden = json.loads((directory / "config.json").read_text())["hidden_size"]
    dense = directory / "1_Dense"
    dense.mkdir()
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": hidden,
                "out_features": embedding_dim,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    generator = torch.Generator().manual_seed(seed + 1)
    save_file(
        {"linear.weight": torch.randn(embedding_dim, hidden, generator=generator)}, str(dense / "model.safetensors")
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (directory / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "model_type": "ColBERT",
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 12,
                "document_length": 64,
                "attend_to_expansion_tokens": False,
                "skiplist_words": list(string.punctuation),
                "similarity_fn_name": "MaxSim",
                "prompts": {},
                "default_prompt_name": None,
            }
        )
    )
    return directory


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Serve ``app`` with the real uvicorn server on a free localhost port; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def running_server():
    """:func:`serve_app`: ``with running_server(app) as url: ...`` (the real uvicorn, on localhost)."""
    return serve_app


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_modernbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_modernbert(tmp_path_factory.mktemp("tiny_modernbert"))


@pytest.fixture(scope="session")
def tiny_pylate_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pylate_colbert(tmp_path_factory.mktemp("tiny_pylate"))


@pytest.fixture(scope="session")
def scifact_texts() -> list[str]:
    """The first 24 SciFact documents (title + text) from ../shared/data."""
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    if not corpus.exists():
        pytest.skip(f"real data not found at {corpus}")
    texts = []
    with corpus.open(encoding="utf-8") as handle:
        for line, _ in zip(handle, range(24)):
            row = json.loads(line)
            texts.append(f"{row['title']} {row['text']}")
    return texts


@pytest.fixture(scope="session")
def minilm_document_embeddings(scifact_texts: list[str]) -> list[torch.Tensor]:
    """Real token embeddings: all-MiniLM-L6-v2 ColBERT (64 dims, document length 300) on SciFact."""
    from latepool.models import load_model

    model = load_model("minilm", device="cpu")
    return model.encode_document(scifact_texts, batch_size=8)


def write_beir_fixture(directory: Path, split: str = "test") -> Path:
    """A 12-document BEIR-layout collection with 4 queries and graded judgments (0, 1 and 2)."""
    documents = [
        ("d0", "Protein study", "the protein expression was increased in human cells after treatment"),
        ("d1", "Blood", "blood levels of the gene were lower in patients with disease"),
        ("d2", "", "mice brain cells increase after treatment with more protein"),
        ("d3", "Cancer risk", "cancer risk was higher in patients with the gene"),
        ("d4", "Evidence", "this abstract does not support the claim"),
        ("d5", "Effects", "effects of treatment on blood and brain levels in mice"),
        ("d6", "Genes", "genes and protein levels were reduced in cancer cells"),
        ("d7", "Study", "a study of human disease risk and more evidence"),
        ("d8", "Decrease", "lower expression and reduced levels after the study"),
        ("d9", "Claim", "what evidence does the document have for the claim"),
        ("d10", "Mice", "mice with lower blood levels"),
        ("d11", "Human cells", "human cells have higher expression of the protein"),
    ]
    queries = [
        ("q1", "protein expression in human cells"),
        ("q2", "cancer risk gene"),
        ("q3", "blood levels in mice"),
        ("q4", "evidence for the claim"),
        ("q5", "a query without judgments"),
    ]
    qrels = [
        ("q1", "d0", 2),
        ("q1", "d11", 1),
        ("q2", "d3", 1),
        ("q2", "d6", 0),
        ("q3", "d10", 2),
        ("q3", "d5", 1),
        ("q4", "d9", 1),
    ]
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    with (directory / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc_id, title, text in documents:
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (directory / "queries.jsonl").open("w", encoding="utf-8") as out:
        for query_id, text in queries:
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (directory / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        out.writelines(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    return directory


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir_fixture(tmp_path / "fixture")
