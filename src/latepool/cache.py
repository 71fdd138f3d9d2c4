"""On-disk cache of token embeddings: encode a corpus once per (model, texts, settings), reuse it after.

A cache entry is a directory holding ``vectors.f16`` (all token vectors, float16, memory-mapped on
read), ``offsets.npy`` (row where each text's vectors start) and ``manifest.json``, which records
what the vectors were computed from: the model's name and a hash of its weights and module
configuration, a hash of the ids and texts, the task (query or document), the maximum length and
the latepool version. An entry is used only when every recorded field equals the request; anything
else is rebuilt, never silently reused.

Writes are crash-safe: encoding goes into ``<entry>.partial/`` in shards of ``shard_size`` texts, so
an interrupted run resumes from its last finished shard, and the finished entry is moved into place
with one rename. A half-written entry therefore never exists under the final name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

import latepool
from latepool.fingerprints import model_fingerprint, texts_fingerprint

if TYPE_CHECKING:
    from sentence_transformers import MultiVectorEncoder

logger = logging.getLogger(__name__)
FORMAT_VERSION = 1
STORAGE_TYPES = {"float16": (np.float16, "vectors.f16"), "float32": (np.float32, "vectors.f32")}


@dataclass
class CachedEmbeddings:
    """Token embeddings of a list of texts, backed by a memory-mapped float16 (or float32) file.

    Attributes:
        vectors: ``(total_tokens, dim)`` float16 or float32 array (memory-mapped).
        offsets: ``(count + 1,)`` int64: text ``i`` owns rows ``offsets[i]:offsets[i + 1]``.
        manifest: The entry's manifest.
    """

    vectors: np.ndarray
    offsets: np.ndarray
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def tensors(self, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The embeddings as a list of ``(n_i, dim)`` tensors (copied out of the map, in ``dtype``)."""
        every = torch.from_numpy(np.array(self.vectors)).to(dtype)
        return [every[start:stop] for start, stop in zip(self.offsets[:-1], self.offsets[1:])]


def cached_encode(
    model: MultiVectorEncoder,
    ids: list[str],
    texts: list[str],
    *,
    task: str,
    cache_root: Path,
    max_length: int | None,
    batch_size: int = 32,
    shard_size: int = 1024,
    model_name: str = "",
    model_hash: str | None = None,
    show_progress_bar: bool = True,
    dtype: str = "float16",
) -> CachedEmbeddings:
    """Token embeddings of ``texts`` for ``task`` (``query`` or ``document``), from the cache or encoded now.

    Args:
        model: A ``MultiVectorEncoder``.
        ids / texts: The texts and their ids (part of the cache identity).
        task: ``"query"`` or ``"document"``.
        cache_root: Directory holding cache entries.
        max_length: The model's length for this task (recorded in the identity).
        batch_size: Encoding batch size.
        shard_size: Texts per resumable shard.
        model_name: Name or path recorded in the manifest.
        model_hash: Precomputed :func:`model_fingerprint` (computed when None).
        show_progress_bar: Show encoding progress.
        dtype: Storage type: ``float16`` (half the disk) or ``float32`` (the model's output exactly;
            a separate cache entry).

    Returns:
        The cached embeddings.
    """
    identity = {
        "format_version": FORMAT_VERSION,
        "model_hash": model_hash or model_fingerprint(model),
        "texts_hash": texts_fingerprint(ids, texts),
        "task": task,
        "max_length": max_length,
        "count": len(texts),
    }
    encode = model.encode_query if task == "query" else model.encode_document
    noun = "queries" if task == "query" else "documents"
    return cached_arrays(
        lambda chunk: encode(chunk, batch_size=batch_size, convert_to_numpy=True),
        texts,
        identity,
        cache_root=cache_root,
        prefix=task,
        shard_size=shard_size,
        dtype=dtype,
        metadata={"model": model_name},
        description=f"Encoding {noun}",
        show_progress_bar=show_progress_bar,
    )


def cached_arrays(
    encode: Callable[[list[str]], list[np.ndarray]],
    texts: list[str],
    identity: dict[str, Any],
    *,
    cache_root: Path,
    prefix: str,
    shard_size: int = 1024,
    dtype: str = "float16",
    metadata: dict[str, Any] | None = None,
    description: str = "Encoding",
    show_progress_bar: bool = True,
) -> CachedEmbeddings:
    """One ``(n_i, dim)`` array per text, computed by ``encode`` once per ``identity`` and memory-mapped after.

    The general form of :func:`cached_encode`: the entry lives in ``cache_root/<prefix>-<key>``, where
    the key hashes ``identity``, and is rebuilt whenever the recorded identity differs.

    Args:
        encode: Maps a list of texts to one array per text.
        texts: The texts, in order.
        identity: Everything the arrays depend on (JSON-serializable); must include ``count``.
        cache_root: Directory holding cache entries.
        prefix: Name prefix of the entry directory.
        shard_size: Texts per resumable shard.
        dtype: Storage type, ``float16`` or ``float32``.
        metadata: Extra fields written to the manifest (not part of the identity).
        description: Progress bar label.
        show_progress_bar: Show progress.

    Returns:
        The cached arrays.

    Example::

        entry = cached_arrays(lambda chunk: [np.ones((len(t), 2)) for t in chunk], ["ab", "c"],
                              {"count": 2, "what": "ones"}, cache_root=Path("cache"), prefix="demo")
    """
    if dtype not in STORAGE_TYPES:
        raise ValueError(f"dtype must be one of {sorted(STORAGE_TYPES)}, got {dtype!r}")
    identity = {**identity, "dtype": dtype} if dtype != "float16" else identity
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    entry = Path(cache_root) / f"{prefix}-{key}"
    cached = open_entry(entry, identity)
    if cached is not None:
        logger.info("reusing cached arrays from %s", entry)
        return cached
    partial = entry.with_name(entry.name + ".partial")
    _encode_shards(
        encode, texts, partial, identity, shard_size, STORAGE_TYPES[dtype][0], description, show_progress_bar
    )
    manifest = {**identity, **(metadata or {}), "latepool_version": latepool.__version__}
    _finish_entry(partial, entry, manifest, len(texts), shard_size, dtype)
    cached = open_entry(entry, identity)
    assert cached is not None, f"cache entry {entry} failed its own check"
    return cached


def open_entry(entry: Path, identity: dict[str, Any]) -> CachedEmbeddings | None:
    """The entry at ``entry`` if it is complete and was made for ``identity``; None otherwise."""
    manifest_path = entry / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if any(manifest.get(field) != value for field, value in identity.items()):
            logger.warning("cache entry %s was made for other inputs; rebuilding it", entry)
            return None
        offsets = np.load(entry / "offsets.npy")
        rows, dim = int(offsets[-1]), int(manifest["dim"])
        dtype, name = STORAGE_TYPES[manifest.get("dtype", "float16")]
        size = rows * dim * np.dtype(dtype).itemsize
        if len(offsets) != manifest["count"] + 1 or (entry / name).stat().st_size != size:
            logger.warning("cache entry %s is damaged; rebuilding it", entry)
            return None
        vectors = (
            np.memmap(entry / name, dtype=dtype, mode="r", shape=(rows, dim)) if rows else np.zeros((0, dim), dtype)
        )
    except (OSError, ValueError, KeyError) as error:
        logger.warning("cache entry %s is unreadable (%s); rebuilding it", entry, error)
        return None
    return CachedEmbeddings(vectors, offsets, manifest)


def _encode_shards(encode, texts, partial: Path, identity, shard_size, storage, description, show_progress_bar) -> None:
    """Encode every missing shard into ``partial`` (kept across interrupted runs with the same identity)."""
    identity_path = partial / "identity.json"
    if partial.exists() and (not identity_path.is_file() or json.loads(identity_path.read_text()) != identity):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    identity_path.write_text(json.dumps(identity, sort_keys=True))
    progress = tqdm(total=len(texts), desc=description, disable=not show_progress_bar)
    for number, start in enumerate(range(0, len(texts), shard_size)):
        shard = partial / f"shard-{number:05d}.npz"
        chunk = texts[start : start + shard_size]
        if not shard.is_file():
            arrays = encode(chunk)
            lengths = np.array([len(a) for a in arrays], dtype=np.int64)
            stacked = np.concatenate(arrays).astype(storage) if len(arrays) else np.zeros((0, 0), storage)
            temporary = shard.with_suffix(".tmp.npz")
            np.savez(temporary, vectors=stacked, lengths=lengths)
            os.replace(temporary, shard)
        progress.update(len(chunk))
    progress.close()


def _finish_entry(
    partial: Path, entry: Path, manifest: dict[str, Any], count: int, shard_size: int, dtype: str
) -> None:
    """Join the shards into ``vectors.f16`` (or ``.f32``) + ``offsets.npy``, write the manifest, rename into place."""
    shards = [np.load(partial / f"shard-{n:05d}.npz") for n in range(-(-count // shard_size))]
    lengths = np.concatenate([s["lengths"] for s in shards]) if shards else np.zeros(0, np.int64)
    dims = {s["vectors"].shape[1] for s in shards if len(s["vectors"])}
    if len(dims) > 1:
        raise ValueError(f"shards in {partial} have different dimensions {sorted(dims)}")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    storage, name = STORAGE_TYPES[dtype]
    with open(partial / name, "wb") as handle:
        for shard in shards:
            handle.write(np.ascontiguousarray(shard["vectors"], dtype=storage).tobytes())
    np.save(partial / "offsets.npy", offsets)
    for shard_file in partial.glob("shard-*.npz"):
        shard_file.unlink()
    (partial / "identity.json").unlink()
    manifest = {**manifest, "dim": dims.pop() if dims else 0, "vectors": int(offsets[-1])}
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    if entry.exists():
        shutil.rmtree(entry)
    os.replace(partial, entry)
