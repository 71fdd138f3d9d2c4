"""Teachers that score (query, document) pairs for distillation.

Four kinds, detected from the checkpoint (``--teacher-type`` overrides):

- ``cross-encoder``: a sequence-classification reranker, via sentence-transformers' ``CrossEncoder``
  (raw logits).
- ``llm-reranker``: a causal LM scored by the logit of "Yes" after the prompt of
  bge-reranker-v2-gemma, the paper's teacher: ``"A: {query}\\nB: {passage}\\n{instruction}"``.
- ``bi-encoder``: a sentence-transformers dense model (cosine similarity).
- ``colbert``: a ``MultiVectorEncoder`` (MaxSim), e.g. the student itself unpooled: a label-free
  teacher.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch

from latepool.models import MINILM_ALIASES
from latepool.options import TEACHER_TYPES

LLM_RERANKER_INSTRUCTION = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query "
    "by providing a prediction of either 'Yes' or 'No'."
)


class Teacher(Protocol):
    def score(self, query: str, documents: list[str]) -> list[float]:
        """Teacher scores of ``documents`` for ``query`` (higher is more relevant)."""


def _read_json(name_or_path: str, filename: str) -> dict | list | None:
    path = Path(name_or_path) / filename
    if Path(name_or_path).is_dir():
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(name_or_path, filename)).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 (a missing file, or no hub access: decided below)
        return None


def detect_teacher_type(name_or_path: str) -> str:
    """The teacher kind of a checkpoint, from its configuration files.

    Raises ``ValueError`` when the kind cannot be told (pass ``--teacher-type`` then).
    """
    if name_or_path.lower() in MINILM_ALIASES:
        return "bi-encoder"
    config = _read_json(name_or_path, "config.json") or {}
    architectures = config.get("architectures") or []
    if "HF_ColBERT" in architectures:
        return "colbert"
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "llm-reranker"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "cross-encoder"
    st_config = _read_json(name_or_path, "config_sentence_transformers.json") or {}
    if st_config.get("model_type") in ("ColBERT", "MultiVectorEncoder") or "query_prefix" in st_config:
        return "colbert"
    modules = _read_json(name_or_path, "modules.json")
    if modules:
        return "bi-encoder"
    raise ValueError(f"cannot tell which kind of teacher {name_or_path!r} is; pass --teacher-type {TEACHER_TYPES}")


def _memoized(memo: dict[str, object], texts: list[str], encode) -> list:
    """Embeddings of ``texts``, encoding (with ``encode(list_of_texts)``) only those not in ``memo``.

    Mined candidates repeat across queries, so each document is encoded once per run.
    """
    missing = list(dict.fromkeys(t for t in texts if t not in memo))
    if missing:
        memo.update(zip(missing, encode(missing)))
    return [memo[t] for t in texts]


class CrossEncoderTeacher:
    """A sentence-transformers ``CrossEncoder``; scores are its raw logits."""

    def __init__(self, name_or_path: str, device: str | None = None, batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(name_or_path, device=device)
        self.batch_size = batch_size

    def score(self, query: str, documents: list[str]) -> list[float]:
        pairs = [(query, document) for document in documents]
        scores = self.model.predict(pairs, batch_size=self.batch_size, activation_fn=torch.nn.Identity())
        return [float(s) for s in scores]


class LLMRerankerTeacher:
    """A causal-LM reranker scored by the "Yes" logit (bge-reranker-v2-gemma's recipe)."""

    def __init__(
        self, name_or_path: str, device: str | None = None, batch_size: int = 8, max_length: int = 1024
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(name_or_path, torch_dtype=dtype).to(self.device).eval()
        self.yes_id = self.tokenizer("Yes", add_special_tokens=False)["input_ids"][0]
        self.batch_size, self.max_length = batch_size, max_length

    def prompt(self, query: str, document: str) -> str:
        """The reranker's input text for one pair."""
        return f"A: {query}\nB: {document}\n{LLM_RERANKER_INSTRUCTION}"

    @torch.inference_mode()
    def score(self, query: str, documents: list[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(documents), self.batch_size):
            texts = [self.prompt(query, d) for d in documents[start : start + self.batch_size]]
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            logits = self.model(**batch.to(self.device)).logits[:, -1, :]
            scores.extend(logits[:, self.yes_id].float().tolist())
        return scores


class BiEncoderTeacher:
    """A sentence-transformers dense model: cosine similarity; document embeddings are memoized."""

    def __init__(self, name_or_path: str, device: str | None = None, batch_size: int = 64) -> None:
        from latepool.training.mining import load_retriever

        self.model = load_retriever(name_or_path, device=device)
        self.batch_size = batch_size
        self._documents: dict[str, torch.Tensor] = {}

    def _encode(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True, normalize_embeddings=True)

    def score(self, query: str, documents: list[str]) -> list[float]:
        query_vector = self._encode([query])[0]
        return (torch.stack(_memoized(self._documents, documents, self._encode)) @ query_vector).tolist()


class ColBERTTeacher:
    """A ``MultiVectorEncoder`` scoring by MaxSim (unpooled)."""

    def __init__(self, name_or_path: str, device: str | None = None, batch_size: int = 32) -> None:
        from latepool.models import load_model

        self.model = load_model(name_or_path, device=device)
        self.batch_size = batch_size
        self._documents: dict[str, torch.Tensor] = {}

    def _encode(self, texts: list[str]) -> list[torch.Tensor]:
        return self.model.encode_document(texts, batch_size=self.batch_size)

    def score(self, query: str, documents: list[str]) -> list[float]:
        query_embeddings = self.model.encode_query([query])
        document_embeddings = _memoized(self._documents, documents, self._encode)
        return self.model.similarity(query_embeddings, document_embeddings)[0].tolist()


def load_teacher(name_or_path: str, teacher_type: str | None = None, device: str | None = None) -> Teacher:
    """Load a teacher of ``teacher_type`` (detected when None)."""
    kind = teacher_type or detect_teacher_type(name_or_path)
    classes = {
        "cross-encoder": CrossEncoderTeacher,
        "llm-reranker": LLMRerankerTeacher,
        "bi-encoder": BiEncoderTeacher,
        "colbert": ColBERTTeacher,
    }
    if kind not in classes:
        raise ValueError(f"teacher type must be one of {TEACHER_TYPES}, got {kind!r}")
    return classes[kind](name_or_path, device=device)
