"""Checkpoint formats: PyLate's layout (the default) and sentence-transformers' ``MultiVectorEncoder`` layout.

A latepool model is a ``MultiVectorEncoder`` of four kinds of module: the backbone ``Transformer``
(query / document lengths, query expansion), one or more token-level ``Dense`` projections, a
``MultiVectorMask`` (the document skiplist) and a token-level ``Normalize``. PyLate 1.6 (on
sentence-transformers 5.x) keeps the same model in another layout, which
sentence-transformers >= 6.2 also loads:

::

    OUT/
      config.json, model.safetensors, tokenizer*   the Hugging Face backbone
      sentence_bert_config.json                    {"max_seq_length", "do_lower_case"}
      1_Dense/config.json, 1_Dense/model.safetensors   "pylate.models.Dense.Dense" (linear.weight)
      modules.json                                 [Transformer, Dense, ...]
      config_sentence_transformers.json            "model_type": "ColBERT", query/document prefix,
                                                   query/document length, do_query_expansion,
                                                   attend_to_expansion_tokens, skiplist_words

Masking and normalization are implicit in PyLate, so they are not modules there. :func:`save_pylate`
writes that layout and refuses models PyLate would encode differently (a text prompt that is not a
single token, a skiplist applied to queries, no normalization, another module in the pipeline).

Example::

    from latepool.checkpoints import save_checkpoint
    save_checkpoint(model, "out", checkpoint_format="pylate")  # loads in PyLate 1.6 and ST >= 6.2
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from sentence_transformers import MultiVectorEncoder
from sentence_transformers.base.modules import Dense, Normalize, Transformer
from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

from latepool.options import CHECKPOINT_FORMATS

PYLATE_TRANSFORMER = "sentence_transformers.models.Transformer"
PYLATE_DENSE = "pylate.models.Dense.Dense"


def save_checkpoint(
    model: MultiVectorEncoder, path: str | Path, checkpoint_format: str = "pylate", *, create_model_card: bool = True
) -> None:
    """Save ``model`` to ``path`` in one of :data:`CHECKPOINT_FORMATS`.

    Args:
        model: The model to save.
        path: Output directory (created; files of the layout are overwritten).
        checkpoint_format: ``"pylate"`` (loads in PyLate 1.6 and sentence-transformers >= 6.2) or
            ``"sentence-transformers"`` (a plain ``MultiVectorEncoder.save``, sentence-transformers >= 6.2 only).
        create_model_card: Write the sentence-transformers model card as ``README.md``.
    """
    if checkpoint_format == "pylate":
        save_pylate(model, path, create_model_card=create_model_card)
    elif checkpoint_format == "sentence-transformers":
        model.save(str(path), create_model_card=create_model_card)
    else:
        raise ValueError(f"checkpoint format must be one of {CHECKPOINT_FORMATS}, got {checkpoint_format!r}")


def save_pylate(model: MultiVectorEncoder, path: str | Path, *, create_model_card: bool = True) -> None:
    """Write ``model`` in PyLate 1.6's checkpoint layout (see the module docstring).

    Args:
        model: A ``MultiVectorEncoder`` of Transformer, token-level Dense(s), MultiVectorMask, Normalize.
        path: Output directory.
        create_model_card: Write the sentence-transformers model card as ``README.md``.

    Raises:
        ValueError: When PyLate could not reproduce the model's embeddings from that layout.
    """
    transformer, denses, mask = _pylate_parts(model)
    config = pylate_config(model, transformer, mask)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    transformer.save(str(path))  # Hugging Face weights, config and tokenizer at the root
    _write_json(
        path / "sentence_bert_config.json",
        {"max_seq_length": transformer.max_seq_length, "do_lower_case": bool(transformer.do_lower_case)},
    )
    modules = [{"idx": 0, "name": "0", "path": "", "type": PYLATE_TRANSFORMER}]
    for number, dense in enumerate(denses, start=1):
        folder = path / f"{number}_Dense"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        _write_json(folder / "config.json", _pylate_dense_config(dense))
        weights = {name: value.detach().cpu().contiguous() for name, value in dense.state_dict().items()}
        save_file(weights, folder / "model.safetensors")
        modules.append({"idx": number, "name": str(number), "path": folder.name, "type": PYLATE_DENSE})
    _write_json(path / "modules.json", modules)
    _write_json(path / "config_sentence_transformers.json", config)
    if create_model_card:
        model._create_model_card(str(path))


def pylate_config(model: MultiVectorEncoder, transformer: Transformer, mask: MultiVectorMask) -> dict[str, Any]:
    """The ``config_sentence_transformers.json`` PyLate 1.6 reads: prefixes, lengths, expansion, skiplist."""
    expansion = transformer.query_expansion
    if expansion is not None and (expansion.get("strategy") != "fixed" or expansion.get("token") is not None):
        raise ValueError(f"PyLate pads queries with [MASK] to a fixed length; this model's expansion is {expansion}")
    if list(mask.skiplist_tasks or []) != ["document"] or mask.keep_only_token_ids is not None:
        raise ValueError("PyLate applies its skiplist to documents only and keeps every other token")
    query_length = expansion["length"] if expansion is not None else transformer.query_length
    return {
        "model_type": "ColBERT",
        "__version__": model._get_model_config()["__version__"],
        "prompts": {"query": "", "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "MaxSim",
        "query_prefix": _prefix_token(model, "query"),
        "document_prefix": _prefix_token(model, "document"),
        "query_length": query_length,
        "document_length": transformer.document_length,
        "attend_to_expansion_tokens": bool(expansion and expansion.get("attend")),
        "skiplist_words": _effective_skiplist(mask, transformer.tokenizer),
        "do_query_expansion": expansion is not None,
    }


def _pylate_parts(model: MultiVectorEncoder) -> tuple[Transformer, list[Dense], MultiVectorMask]:
    """Split the model into PyLate's parts, or raise naming what PyLate has no place for."""
    modules = list(model)
    if not modules or not isinstance(modules[0], Transformer):
        raise ValueError("a PyLate checkpoint needs a Transformer as the first module")
    denses = [m for m in modules[1:] if isinstance(m, Dense)]
    tail = [type(m).__name__ for m in modules[1 + len(denses) :]]
    if not denses or tail != ["MultiVectorMask", "Normalize"]:
        names = [type(m).__name__ for m in modules]
        raise ValueError(
            f"PyLate checkpoints hold Transformer, Dense..., MultiVectorMask, Normalize; this model is {names}. "
            "Save it with checkpoint_format='sentence-transformers'."
        )
    for dense in denses:
        if dense.module_input_name != "token_embeddings" or dense.module_output_name != "token_embeddings":
            raise ValueError("PyLate's Dense projects token embeddings; this model's Dense reads another output")
    normalize = modules[-1]
    if not isinstance(normalize, Normalize) or normalize.module_input_name != "token_embeddings":
        raise ValueError("PyLate normalizes token embeddings; this model's last module normalizes something else")
    return modules[0], denses, modules[-2]


def _pylate_dense_config(dense: Dense) -> dict[str, Any]:
    config = {k: v for k, v in dense.get_config_dict().items() if not k.startswith("module_")}
    return {**config, "use_residual": False}


def _prefix_token(model: MultiVectorEncoder, task: str) -> str:
    """The model's prompt for ``task`` as PyLate's prefix token ("" for none); raise for a text prompt."""
    prompt = (model.prompts or {}).get(task) or ""
    if not prompt:
        return ""
    tokenizer = model.tokenizer
    for token in (prompt, prompt.strip()):  # "[Q] " is one added token; "[unused0]" a vocabulary one
        if tokenizer.convert_tokens_to_ids(token) not in (None, tokenizer.unk_token_id):
            return token
    raise ValueError(
        f"the {task} prompt {prompt!r} is text, but PyLate inserts its prefix as one token; "
        "save with checkpoint_format='sentence-transformers'"
    )


def _effective_skiplist(mask: MultiVectorMask, tokenizer: Any) -> list[str]:
    """Skiplist words that are single vocabulary tokens (PyLate would map the others to [UNK] and mask it)."""
    words = list(mask.skiplist_words or [])
    unknown = tokenizer.unk_token_id
    return [w for w in words if tokenizer.convert_tokens_to_ids(w) not in (None, unknown)]


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def export_checkpoint(
    model_name_or_path: str | Path, output: str | Path, checkpoint_format: str = "pylate", device: str | None = "cpu"
) -> MultiVectorEncoder:
    """Load a checkpoint ``MultiVectorEncoder`` reads (PyLate, Stanford ColBERT, ST) and save it in another format.

    Args:
        model_name_or_path: Local directory or hub id.
        output: Output directory; must not hold files yet.
        checkpoint_format: One of :data:`CHECKPOINT_FORMATS`.
        device: Device the model is loaded on.

    Returns:
        The loaded model.
    """
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise ValueError(f"{output} is not empty; choose a new output directory")
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise ValueError(f"checkpoint format must be one of {CHECKPOINT_FORMATS}, got {checkpoint_format!r}")
    model = MultiVectorEncoder(str(model_name_or_path), device=device)
    save_checkpoint(model, output, checkpoint_format)
    return model
