"""The on-disk layout of a latepool index: immutable, memory-mapped segments plus one manifest, the commit point.

::

    INDEX/
      manifest.json                 format, model, lengths, pooling, dtype, dim, counts, segments,
                                    deleted positions, codec and a SHA-256 of every file below
      codec-<uuid>.npz              centroids (and residual buckets): latepool.index.codec.Codec
      seg-<uuid>/offsets.npy        (count + 1,) int64: row where each document's vectors start
      seg-<uuid>/ids.json           the documents' ids, in order
      seg-<uuid>/codes.npy          (rows,) uint16: each vector's centroid (absent without a codec)
      seg-<uuid>/ivf_offsets.npy    (C + 1,) int64 and ivf_docs.npy (int32): for centroid c, the
      seg-<uuid>/ivf_docs.npy       segment's documents with a vector filed under c (sorted, unique)
      seg-<uuid>/vectors.npy        float16 (rows, dim) or int8 (rows, dim) vectors
      seg-<uuid>/scales.npy         int8 only: (rows,) float32 scale of each vector
      seg-<uuid>/residuals.npy      residualB only: (rows, dim * B / 8) uint8 packed residual buckets

Every array is a ``.npy`` file opened with ``numpy.load(mmap_mode="r")``: opening an index reads the
manifest, the ids and the small offset and inverted-list arrays, never the vectors, which are
decoded block by block while a search runs. Files are never rewritten in place: an update writes new
files and then replaces ``manifest.json`` with one ``os.replace``, so a reader sees either the old or
the new index, never a mix, and a crash leaves the last committed index. A new index is built in a
temporary directory and renamed into place the same way.
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

from latepool.index.codec import RESIDUAL_BITS, Codec

FORMAT_VERSION = 2
DTYPES = ("float16", "int8", *RESIDUAL_BITS)


class IndexFormatError(ValueError):
    """A missing, damaged or mismatching index file (a ``ValueError`` naming the file)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_per_vector(dtype: str, dim: int, codes: bool = True) -> float:
    """Bytes one stored vector takes on disk: its values plus, with a codec, its 2-byte centroid code.

    Example::

        >>> [bytes_per_vector(d, 64) for d in DTYPES]
        [130, 70, 34, 18, 10]
    """
    if dtype in RESIDUAL_BITS:
        return dim * RESIDUAL_BITS[dtype] // 8 + 2
    values = {"float16": 2 * dim, "int8": dim + 4}[dtype]
    return values + (2 if codes else 0)


@dataclass
class Segment:
    """One immutable group of documents, its arrays memory-mapped (nothing decoded at open).

    Attributes:
        name: Directory name inside the index.
        ids: Document ids in order.
        offsets: ``(count + 1,)`` int64 row offsets.
        dtype: Storage type (see :data:`DTYPES`).
        codes: ``(rows,)`` uint16 centroid codes, or None without a codec.
        ivf_offsets / ivf_docs: The segment's inverted lists (None without a codec).
        values: ``vectors`` (float16 / int8) or packed ``residuals`` (uint8).
        scales: int8 scales, else None.
    """

    name: str
    ids: list[str]
    offsets: np.ndarray
    dtype: str
    codes: np.ndarray | None
    ivf_offsets: np.ndarray | None
    ivf_docs: np.ndarray | None
    values: np.ndarray
    scales: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def rows(self) -> int:
        return int(self.offsets[-1])

    def decode(self, start: int, stop: int, codec: Codec | None) -> torch.Tensor:
        """Rows ``start:stop`` as a float32 ``(stop - start, dim)`` tensor (decoded from the map)."""
        return self.decode_rows(slice(start, stop), codec)

    def decode_rows(self, rows: np.ndarray | slice, codec: Codec | None) -> torch.Tensor:
        """The rows ``rows`` (sorted indices or a slice) as float32, read from the map and decoded."""
        arrays = {"values": self.values[rows]}
        if self.codes is not None:
            arrays["codes"] = self.codes[rows]
        if self.scales is not None:
            arrays["scales"] = self.scales[rows]
        return decode_values(arrays, self.dtype, codec)

    def documents(self, codec: Codec | None) -> list[torch.Tensor]:
        """Every document of the segment as a float32 ``(n_i, dim)`` tensor (decodes the whole segment)."""
        every = self.decode(0, self.rows, codec)
        return [every[a:b] for a, b in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist())]


def encode_values(vectors: torch.Tensor, dtype: str, codec: Codec | None) -> dict[str, np.ndarray]:
    """What a segment stores of ``(rows, dim)`` vectors: ``values`` (and ``scales`` for int8, ``codes``
    with a codec). :func:`decode_values` reads them back; the index and the evaluation's storage
    axis both go through this pair.
    """
    vectors = vectors.detach().float().cpu()
    if dtype in RESIDUAL_BITS:
        if codec is None or codec.bits != RESIDUAL_BITS[dtype]:
            raise ValueError(f"dtype {dtype} needs a codec of {RESIDUAL_BITS[dtype]} bits")
        codes, residuals = codec.encode(vectors)
        return {"codes": codes, "values": residuals}
    arrays = {"codes": codec.assign(vectors)} if codec is not None else {}
    if dtype == "int8":
        arrays["values"], arrays["scales"] = quantize_int8(vectors)
    elif dtype == "float16":
        arrays["values"] = vectors.numpy().astype(np.float16)
    else:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return arrays


def decode_values(arrays: dict[str, np.ndarray], dtype: str, codec: Codec | None) -> torch.Tensor:
    """``(rows, dim)`` float32 vectors from the arrays :func:`encode_values` made (or slices of them)."""
    if dtype in RESIDUAL_BITS:
        return codec.decode(arrays["codes"], arrays["values"])
    vectors = torch.from_numpy(np.asarray(arrays["values"], dtype=np.float32))
    if dtype == "int8":
        vectors = vectors * torch.from_numpy(np.array(arrays["scales"], dtype=np.float32))[:, None]
    return vectors


def round_trip(documents: list[torch.Tensor], dtype: str, codec: Codec | None = None) -> list[torch.Tensor]:
    """The documents as an index of ``dtype`` would return them (encoded, then decoded).

    Args:
        documents: ``(n_i, dim)`` tensors.
        dtype: One of :data:`DTYPES`, or ``float32`` (returned unchanged).
        codec: The residual codec (residual dtypes; see :meth:`Codec.train`).

    Example::

        >>> docs = [torch.tensor([[0.5, -0.25]]), torch.tensor([[1.0, 0.1], [0.2, 0.3]])]
        >>> [d.tolist() for d in round_trip(docs, "float16")]
        [[[0.5, -0.25]], [[1.0, 0.0999755859375], [0.199951171875, 0.300048828125]]]
    """
    if dtype == "float32" or not documents:
        return [d.float() for d in documents]
    lengths = [len(d) for d in documents]
    decoded = decode_values(encode_values(torch.cat(documents), dtype, codec), dtype, codec)
    return list(decoded.split(lengths))


def quantize_int8(vectors: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-vector int8: ``round(127 * v / max|v|)`` and the float32 scales ``max|v| / 127``."""
    scales = vectors.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    codes = torch.round(vectors / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return codes.numpy(), scales.numpy().astype(np.float32)


def inverted_lists(codes: np.ndarray, offsets: np.ndarray, num_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """For each centroid, the sorted unique documents with a vector coded to it.

    Returns:
        ``(ivf_offsets, ivf_docs)``: centroid ``c``'s documents are ``ivf_docs[ivf_offsets[c]:ivf_offsets[c + 1]]``.

    Example::

        >>> offsets = np.array([0, 2, 3])  # document 0: rows 0-1, document 1: row 2
        >>> [a.tolist() for a in inverted_lists(np.array([1, 1, 0], dtype=np.uint16), offsets, 3)]
        [[0, 1, 2, 2], [1, 0]]
    """
    docs = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    pairs = np.unique(codes.astype(np.int64) * (len(offsets) + 1) + docs)  # sorted by (code, doc), unique
    pair_codes, pair_docs = pairs // (len(offsets) + 1), pairs % (len(offsets) + 1)
    ivf_offsets = np.zeros(num_centroids + 1, dtype=np.int64)
    ivf_offsets[1:] = np.cumsum(np.bincount(pair_codes, minlength=num_centroids))
    return ivf_offsets, pair_docs.astype(np.int32)


def write_segment(
    directory: Path, ids: list[str], documents: list[torch.Tensor], dtype: str, codec: Codec | None
) -> dict[str, str]:
    """Write a segment's files into ``directory``; returns their SHA-256 by path relative to the index.

    Args:
        directory: The new segment directory (must not exist).
        ids / documents: The documents, each a non-empty ``(n_i, dim)`` tensor.
        dtype: Storage type.
        codec: The index's codec (required for residual dtypes; None: no inverted lists).
    """
    directory.mkdir(parents=True)
    lengths = [len(d) for d in documents]
    if any(length == 0 for length in lengths):
        raise ValueError("every document needs at least one vector")
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dim = documents[0].shape[1] if documents else (codec.dim if codec else 0)
    vectors = torch.cat([d.detach().float().cpu() for d in documents]) if documents else torch.zeros(0, dim)
    arrays = encode_values(vectors, dtype, codec)
    arrays["residuals" if dtype in RESIDUAL_BITS else "vectors"] = arrays.pop("values")
    arrays["offsets"] = offsets
    if codec is not None:
        arrays["ivf_offsets"], arrays["ivf_docs"] = inverted_lists(arrays["codes"], offsets, len(codec.centroids))
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy", np.ascontiguousarray(array))
    (directory / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
    return {f"{directory.name}/{f.name}": sha256_file(f) for f in sorted(directory.iterdir())}


def read_segment(root: Path, name: str, dtype: str, dim: int) -> Segment:
    """Open one segment, memory-mapped (raises :class:`IndexFormatError` naming a missing or bad file)."""
    directory = root / name
    offsets = _load_array(directory / "offsets.npy", mmap=False)
    try:
        ids = json.loads((directory / "ids.json").read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise IndexFormatError(f"missing index file: {error.filename}") from error
    except (OSError, ValueError) as error:
        raise IndexFormatError(f"{directory / 'ids.json'}: unreadable ({error})") from error
    rows = int(offsets[-1]) if len(offsets) else 0
    if len(ids) != len(offsets) - 1:
        raise IndexFormatError(f"{directory / 'ids.json'}: {len(ids)} ids for {len(offsets) - 1} documents")
    residual = dtype in RESIDUAL_BITS
    values_name = "residuals" if residual else "vectors"
    width = dim * RESIDUAL_BITS[dtype] // 8 if residual else dim
    values = _load_array(directory / f"{values_name}.npy", shape=(rows, width))
    needed = {"codes": residual, "scales": dtype == "int8"}
    optional = {}
    for array in ("codes", "scales", "ivf_offsets", "ivf_docs"):
        path = directory / f"{array}.npy"
        shape = (rows,) if array in needed else None
        optional[array] = _load_array(path, shape=shape) if path.is_file() or needed.get(array) else None
    return Segment(
        name,
        ids,
        offsets,
        dtype,
        optional["codes"],
        optional["ivf_offsets"],
        optional["ivf_docs"],
        values,
        optional["scales"],
    )


def _load_array(path: Path, shape: tuple[int, ...] | None = None, mmap: bool = True) -> np.ndarray:
    """``numpy.load`` of one index array (memory-mapped), or :class:`IndexFormatError` naming the file."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None)
    except FileNotFoundError as error:
        raise IndexFormatError(f"missing index file: {path}") from error
    except (OSError, ValueError) as error:
        raise IndexFormatError(f"{path}: unreadable ({error})") from error
    if shape is not None and array.shape != shape:
        raise IndexFormatError(f"{path}: shape {array.shape}, expected {shape}")
    return array


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
            f"{path}: index format {manifest.get('format_version')!r}, this latepool reads {FORMAT_VERSION}; "
            "rebuild it with latepool index build"
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
