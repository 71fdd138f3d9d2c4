"""The on-disk layout of a latepool index: immutable segments plus one manifest, the commit point.

::

    INDEX/
      manifest.json               format, model, lengths, pooling, dtype, dim, counts, segments,
                                  deleted ids, centroids and a SHA-256 of every file below
      seg-<uuid>/vectors.bin      pooled vectors of the segment's documents (float16, or int8 codes)
      seg-<uuid>/scales.bin       int8 only: one float32 scale per vector
      seg-<uuid>/offsets.npy      row where each document's vectors start (int64, count + 1)
      seg-<uuid>/ids.json         the documents' ids, in order
      centroids-<uuid>.pt         optional: float32 centroids of the candidate-generation stage
                                  (a ``torch.save`` tensor)

Files are never rewritten in place: an update writes new files and then replaces ``manifest.json``
with one ``os.replace``, so a reader sees either the old or the new index, never a mix, and a crash
leaves the last committed index. A new index is built in a temporary directory and renamed into
place the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1
DTYPES = ("float16", "int8")


class IndexFormatError(ValueError):
    """A missing, damaged or mismatching index file (a ``ValueError`` naming the file)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Segment:
    """One immutable group of documents, decoded to float32 in memory.

    Attributes:
        name: Directory name inside the index.
        ids: Document ids in order.
        vectors: ``(rows, dim)`` float32 vectors.
        offsets: ``(count + 1,)`` int64 row offsets.
    """

    name: str
    ids: list[str]
    vectors: torch.Tensor
    offsets: np.ndarray

    def documents(self) -> list[torch.Tensor]:
        """The segment's documents as ``(n_i, dim)`` views."""
        return [self.vectors[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]


def quantize_int8(vectors: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-vector int8: ``round(127 * v / max|v|)`` and the float32 scales ``max|v| / 127``."""
    scales = vectors.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    codes = torch.round(vectors / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes.numpy(), scales.numpy().astype(np.float32)


def write_segment(directory: Path, ids: list[str], documents: list[torch.Tensor], dtype: str) -> dict[str, str]:
    """Write a segment's files into ``directory``; returns their SHA-256 by path relative to the index."""
    directory.mkdir(parents=True)
    lengths = [len(d) for d in documents]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dim = documents[0].shape[1] if documents else 0
    vectors = torch.cat([d.detach().float().cpu() for d in documents]) if documents else torch.zeros(0, dim)
    if dtype == "int8":
        codes, scales = quantize_int8(vectors)
        codes.tofile(directory / "vectors.bin")
        scales.tofile(directory / "scales.bin")
    else:
        vectors.numpy().astype(np.float16).tofile(directory / "vectors.bin")
    np.save(directory / "offsets.npy", offsets)
    (directory / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
    return {f"{directory.name}/{f.name}": sha256_file(f) for f in sorted(directory.iterdir())}


def read_segment(root: Path, name: str, dtype: str, dim: int) -> Segment:
    """Read and decode one segment (raises :class:`IndexFormatError` naming a missing or bad file)."""
    directory = root / name
    try:
        offsets = np.load(directory / "offsets.npy")
        ids = json.loads((directory / "ids.json").read_text(encoding="utf-8"))
        rows = int(offsets[-1])
        raw = np.fromfile(directory / "vectors.bin", dtype=np.int8 if dtype == "int8" else np.float16)
        if raw.size != rows * dim or len(ids) != len(offsets) - 1:
            raise IndexFormatError(f"{directory / 'vectors.bin'}: holds {raw.size} values, expected {rows * dim}")
        vectors = torch.from_numpy(raw.reshape(rows, dim).astype(np.float32))
        if dtype == "int8":
            scales = np.fromfile(directory / "scales.bin", dtype=np.float32)
            if scales.size != rows:
                raise IndexFormatError(f"{directory / 'scales.bin'}: holds {scales.size} scales, expected {rows}")
            vectors = vectors * torch.from_numpy(scales)[:, None]
    except FileNotFoundError as error:
        raise IndexFormatError(f"missing index file: {error.filename}") from error
    except (OSError, ValueError, json.JSONDecodeError) as error:
        if isinstance(error, IndexFormatError):
            raise
        raise IndexFormatError(f"unreadable index segment {directory}: {error}") from error
    return Segment(name, ids, vectors, offsets)


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if not path.is_file():
        raise IndexFormatError(f"not a latepool index (no manifest.json): {root}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise IndexFormatError(f"{path}: unreadable manifest ({error})") from error
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: index format {manifest.get('format_version')!r}, this latepool reads {FORMAT_VERSION}"
        )
    return manifest


def verify_checksums(root: Path, manifest: dict[str, Any]) -> None:
    """Check every file the manifest lists against its SHA-256 (raises naming the first bad file)."""
    for relative, expected in manifest["checksums"].items():
        path = root / relative
        if not path.is_file():
            raise IndexFormatError(f"missing index file: {path}")
        if sha256_file(path) != expected:
            raise IndexFormatError(f"corrupted index file (checksum mismatch): {path}")


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """Commit ``manifest`` atomically (write a temporary file, fsync, rename over the old one)."""
    temporary = root / "manifest.json.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, root / "manifest.json")
