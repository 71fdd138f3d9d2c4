"""The on-disk layout of a latepool index: immutable, memory-mapped segments plus one manifest, the commit point.

::

    INDEX/
      manifest.json                 format, model, lengths, pooling, dtype, dim, counts, segments,
                                    deleted positions, codec and a SHA-256 of every file below
      codec-<uuid>.npz              centroids (and residual buckets): latepool.index.codec.Codec
      seg-<uuid>/offsets.npy        (count + 1,) int64: where each document's vectors start, in document order
      seg-<uuid>/ids.json           the documents' ids, in order
      seg-<uuid>/vectors.npy        float16 (rows, dim) or int8 (rows, dim) vectors, or
      seg-<uuid>/residuals.npy      residualB: (rows, dim * B / 8) uint8 packed residual buckets
      seg-<uuid>/scales.npy         int8 only: (rows,) float32 scale of each vector
    with a codec (centroids), the vectors are stored grouped by centroid, and also:
      seg-<uuid>/ivf_offsets.npy    (C + 1,) int64: centroid c's vectors are stored rows
                                    ivf_offsets[c] .. ivf_offsets[c + 1] - 1 (the inverted lists)
      seg-<uuid>/row_docs.npy       (rows,) uint16: the document (position in the segment) of each stored row
      seg-<uuid>/doc_rows.npy       (rows,) int32: where each vector, in document order, is stored
                                    (document d: doc_rows[offsets[d]:offsets[d + 1]])

A vector's centroid is implied by where it is stored, so no code is stored. Grouping by centroid
makes each inverted list one contiguous run of rows, which the candidate stage reads in sequence.
A segment holds at most :data:`MAX_SEGMENT_DOCUMENTS` documents, so ``row_docs`` fits two bytes.

Every array is a ``.npy`` file opened with ``numpy.load(mmap_mode="r")``: opening an index reads the
manifest, the ids and the small offset and inverted-list arrays, never the vectors, which are
decoded block by block while a search runs. Files are never rewritten in place: a change writes new
files, fsyncs them and their directory, and then replaces ``manifest.json`` with one ``os.replace``
(fsynced, then the directory), so a reader sees either the old or the new index, never a mix, and a
crash or power loss leaves the last committed index. An unfinished build commits to ``partial.json``
instead (see :mod:`latepool.index.writer`): it is never mistaken for an index.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latepool.index.codec import Codec
from latepool.index.kernels import row_block_cells, row_cells
from latepool.options import DTYPES, RESIDUAL_BITS

FORMAT_VERSION = 3
MAX_SEGMENT_DOCUMENTS = 65536  # row_docs is uint16
ENCODE_ROWS = 65536  # vectors a SegmentBuffer encodes at a time


class IndexFormatError(ValueError):
    """A missing, damaged or mismatching index file (a ``ValueError`` naming the file)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_per_vector(dtype: str, dim: int, codes: bool = True) -> float:
    """Bytes one stored vector takes on disk: its values plus, with a codec, its 6 bytes of list bookkeeping.

    (``row_docs`` and ``doc_rows``; the per-document offsets and ids come on top.)

    Example::

        >>> [bytes_per_vector(d, 64) for d in DTYPES]
        [134, 74, 38, 22, 14]
    """
    if dtype in RESIDUAL_BITS:
        return dim * RESIDUAL_BITS[dtype] // 8 + 6
    values = {"float16": 2 * dim, "int8": dim + 4}[dtype]
    return values + (6 if codes else 0)


class IdList(Sequence[str]):
    """Document ids held as one UTF-8 buffer and an offset array: about a third of the memory of a list of
    ``str`` (an index of a million documents keeps all its ids in memory).

    Example::

        >>> ids = IdList(["a", "héllo"])
        >>> len(ids), ids[1], list(ids)
        (2, 'héllo', ['a', 'héllo'])
    """

    def __init__(self, ids: list[str]) -> None:
        text = "".join(ids)
        self._blob = text.encode("utf-8")
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        if len(self._blob) != len(text):  # some id is not ASCII: its bytes outnumber its characters
            lengths = np.fromiter((len(i.encode("utf-8")) for i in ids), dtype=np.int64, count=len(ids))
        self._offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._offsets[1:])

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, position):  # type: ignore[override]
        if isinstance(position, slice):
            return [self[p] for p in range(*position.indices(len(self)))]
        if position < 0:
            position += len(self)
        if not 0 <= position < len(self):
            raise IndexError(position)
        return self._blob[self._offsets[position] : self._offsets[position + 1]].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return (self[p] for p in range(len(self)))


@dataclass
class Segment:
    """One immutable group of documents, its arrays memory-mapped (nothing decoded at open).

    Rows are addressed in document order (``offsets``); with a codec they are stored grouped by
    centroid, and ``doc_rows`` maps one to the other.

    Attributes:
        name: Directory name inside the index.
        ids: Document ids in order.
        offsets: ``(count + 1,)`` int64 row offsets.
        dtype: Storage type (see :data:`DTYPES`).
        values: ``vectors`` (float16 / int8) or packed ``residuals`` (uint8), in stored order.
        scales: int8 scales, else None.
        ivf_offsets / row_docs / doc_rows: The inverted lists and row maps (None without a codec).
    """

    name: str
    ids: Sequence[str]
    offsets: np.ndarray
    dtype: str
    values: np.ndarray
    scales: np.ndarray | None = None
    ivf_offsets: np.ndarray | None = None
    row_docs: np.ndarray | None = None
    doc_rows: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def rows(self) -> int:
        return int(self.offsets[-1])

    def decode(self, start: int, stop: int, codec: Codec | None) -> torch.Tensor:
        """Rows ``start:stop`` (document order) as a float32 ``(stop - start, dim)`` tensor."""
        return self.decode_rows(slice(start, stop), codec)

    def decode_rows(self, rows: np.ndarray | slice, codec: Codec | None) -> torch.Tensor:
        """The rows ``rows`` (document order: indices or a slice) as float32, read from the map and decoded."""
        return decode_values(self.read_rows(rows), self.dtype, codec)

    def read_rows(self, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
        """What is stored of the rows ``rows`` (document order), as :func:`decode_values` takes it."""
        stored = rows if self.doc_rows is None else np.asarray(self.doc_rows[rows], dtype=np.int64)
        arrays = {"values": self.values[stored]}
        if self.ivf_offsets is not None:
            arrays["codes"] = row_cells(stored, np.asarray(self.ivf_offsets), self.block_cells)
        if self.scales is not None:
            arrays["scales"] = self.scales[stored]
        return arrays

    @functools.cached_property
    def block_cells(self) -> np.ndarray:
        """The inverted list of each block of stored rows (:func:`~latepool.index.kernels.row_block_cells`)."""
        return row_block_cells(np.asarray(self.ivf_offsets), self.rows)

    def stored(self, positions: np.ndarray) -> tuple[list[int], dict[str, np.ndarray]]:
        """The stored rows of the documents at ``positions``, for :meth:`SegmentBuffer.add_stored`.

        Returns:
            The documents' lengths, and their ``values`` (``scales``, ``codes``) in document order,
            exactly as stored (nothing is decoded).
        """
        rows, lengths = document_rows(self.offsets, np.asarray(positions))
        return lengths.tolist(), self.read_rows(rows)

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


def group_by_centroid(arrays: dict[str, np.ndarray], offsets: np.ndarray, num_centroids: int) -> dict[str, np.ndarray]:
    """Reorder a segment's arrays (document order, with ``codes``) into stored order, grouped by centroid.

    Returns the arrays to write: ``values`` (and ``scales``) reordered, ``ivf_offsets``, ``row_docs``
    and ``doc_rows`` (see the module docstring); the codes are implied by ``ivf_offsets``.

    Example::

        >>> arrays = {"codes": np.array([1, 1, 0], dtype=np.uint16), "values": np.array([[10], [11], [12]])}
        >>> stored = group_by_centroid(arrays, np.array([0, 2, 3]), 3)  # document 0: rows 0-1, document 1: row 2
        >>> {name: a.ravel().tolist() for name, a in sorted(stored.items())}
        {'doc_rows': [1, 2, 0], 'ivf_offsets': [0, 1, 3, 3], 'row_docs': [1, 0, 0], 'values': [12, 10, 11]}
    """
    codes = arrays.pop("codes")
    order = np.argsort(codes, kind="stable")
    stored = {name: array[order] for name, array in arrays.items()}
    stored["ivf_offsets"] = np.zeros(num_centroids + 1, dtype=np.int64)
    stored["ivf_offsets"][1:] = np.cumsum(np.bincount(codes, minlength=num_centroids))
    documents = np.repeat(np.arange(len(offsets) - 1, dtype=np.uint16), np.diff(offsets))
    stored["row_docs"] = documents[order]
    stored["doc_rows"] = np.empty(len(order), dtype=np.int32)
    stored["doc_rows"][order] = np.arange(len(order), dtype=np.int32)
    return stored


def expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] .. starts[i] + lengths[i] - 1`` of every range, in order, as one array.

    Example::

        >>> expand_ranges(np.array([0, 5]), np.array([2, 1])).tolist()
        [0, 1, 5]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum())) + shift


def document_rows(offsets: np.ndarray, documents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of ``documents`` (in order) and the row count of each.

    Example::

        >>> [a.tolist() for a in document_rows(np.array([0, 2, 5, 6]), np.array([0, 2]))]
        [[0, 1, 5], [2, 1]]
    """
    starts, lengths = offsets[documents], offsets[documents + 1] - offsets[documents]
    return expand_ranges(starts, lengths), lengths


class SegmentBuffer:
    """Documents waiting to become one segment, held as what the segment stores (codes, values, scales).

    Documents come in either as vectors (:meth:`add_documents` encodes them with the codec) or as
    rows already stored by another segment (:meth:`add_stored`, which copies them bit for bit:
    compaction never decodes and re-encodes). :meth:`write` groups the rows by centroid and writes
    the segment.

    Example::

        >>> buffer = SegmentBuffer("float16", codec=None)
        >>> buffer.add_documents(["a", "b"], [torch.ones(2, 4), torch.zeros(1, 4)])
        >>> len(buffer), buffer.lengths
        (2, [2, 1])
    """

    def __init__(self, dtype: str, codec: Codec | None) -> None:
        self.dtype, self.codec = dtype, codec
        self.ids: list[str] = []
        self.lengths: list[int] = []
        self._parts: list[dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add_documents(self, ids: list[str], documents: list[torch.Tensor]) -> None:
        """Encode ``(n_i, dim)`` documents with the codec and hold them."""
        if any(len(d) == 0 for d in documents):
            raise ValueError("every document needs at least one vector")
        start = 0
        while start < len(documents):  # a group of documents of at most ENCODE_ROWS vectors at a time
            stop, rows = start + 1, len(documents[start])
            while stop < len(documents) and rows + len(documents[stop]) <= ENCODE_ROWS:
                rows += len(documents[stop])
                stop += 1
            vectors = torch.cat([d.detach().float().cpu() for d in documents[start:stop]])
            lengths = [len(d) for d in documents[start:stop]]
            self.add_stored(ids[start:stop], lengths, encode_values(vectors, self.dtype, self.codec))
            start = stop

    def add_stored(self, ids: list[str], lengths: list[int], arrays: dict[str, np.ndarray]) -> None:
        """Hold documents given as stored arrays in document order (``values``, ``scales``, ``codes``)."""
        if "codes" in arrays:
            arrays = {**arrays, "codes": np.asarray(arrays["codes"]).astype(np.uint16, copy=False)}
        self.ids.extend(ids)
        self.lengths.extend(int(n) for n in lengths)
        self._parts.append(arrays)

    def write(self, directory: Path) -> dict[str, str]:
        """Write the held documents as a segment into ``directory`` (new), fsynced; returns their SHA-256s.

        The buffer is empty afterwards.
        """
        if self.codec is not None and len(self) > MAX_SEGMENT_DOCUMENTS:
            raise ValueError(f"a segment holds at most {MAX_SEGMENT_DOCUMENTS} documents, got {len(self)}")
        offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)]).astype(np.int64)
        arrays = {name: np.concatenate([part[name] for part in self._parts]) for name in self._parts[0]}
        if self.codec is not None:
            arrays = group_by_centroid(arrays, offsets, len(self.codec.centroids))
        arrays["residuals" if self.dtype in RESIDUAL_BITS else "vectors"] = arrays.pop("values")
        arrays["offsets"] = offsets
        directory.mkdir(parents=True)
        for name, array in arrays.items():
            np.save(directory / f"{name}.npy", np.ascontiguousarray(array))
        (directory / "ids.json").write_text(json.dumps(self.ids), encoding="utf-8")
        for path in directory.iterdir():
            fsync_file(path)
        fsync_directory(directory)
        self.ids, self.lengths, self._parts = [], [], []
        return {f"{directory.name}/{f.name}": sha256_file(f) for f in sorted(directory.iterdir())}


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
    buffer = SegmentBuffer(dtype, codec)
    buffer.add_documents(ids, documents)
    return buffer.write(directory)


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
    lists = (directory / "ivf_offsets.npy").is_file()
    if residual and not lists:
        raise IndexFormatError(f"missing index file: {directory / 'ivf_offsets.npy'}")
    scales = _load_array(directory / "scales.npy", shape=(rows,)) if dtype == "int8" else None
    segment = Segment(name, IdList(ids), offsets, dtype, values, scales)
    if lists:
        segment.ivf_offsets = _load_array(directory / "ivf_offsets.npy", mmap=False)
        segment.row_docs = _load_array(directory / "row_docs.npy", shape=(rows,))
        segment.doc_rows = _load_array(directory / "doc_rows.npy", shape=(rows,))
        if len(segment.ivf_offsets) < 2 or segment.ivf_offsets[-1] != rows:
            raise IndexFormatError(f"{directory / 'ivf_offsets.npy'}: lists cover {segment.ivf_offsets[-1:]} rows")
    return segment


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


MANIFEST = "manifest.json"  # the committed index
PARTIAL = "partial.json"  # the committed state of an unfinished build (see latepool.index.writer)


def read_manifest(root: Path, name: str = MANIFEST) -> dict[str, Any]:
    """The committed manifest of the index at ``root`` (``name``: :data:`PARTIAL` for an unfinished build).

    Raises :class:`IndexFormatError` for a missing, unreadable or incomplete manifest, or an
    unfinished build.
    """
    path = root / name
    if not path.is_file():
        if name == MANIFEST and (root / PARTIAL).is_file():
            raise IndexFormatError(
                f"{root} holds a partial build, not an index yet: rerun the build with the same arguments "
                "to continue it (latepool index build), or with --overwrite to start over"
            )
        raise IndexFormatError(f"not a latepool index (no {name}): {root}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexFormatError(f"{path}: unreadable manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise IndexFormatError(
            f"{path}: index format {version!r}, this latepool reads {FORMAT_VERSION}; "
            "rebuild it with latepool index build"
        )
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise IndexFormatError(f"{path}: incomplete manifest (missing {', '.join(missing)})")
    return manifest


MANIFEST_KEYS = (
    "dim",
    "dtype",
    "segments",
    "deleted",
    "checksums",
    "codec",
    "document_count",
    "vector_count",
)


def verify_checksums(root: Path, manifest: dict[str, Any]) -> None:
    """Check every file the manifest lists against its SHA-256 (raises naming the first bad file)."""
    for relative, expected in manifest["checksums"].items():
        path = root / relative
        if not path.is_file():
            raise IndexFormatError(f"missing index file: {path}")
        if sha256_file(path) != expected:
            raise IndexFormatError(f"corrupted index file (checksum mismatch): {path}")


def write_manifest(root: Path, manifest: dict[str, Any], name: str = MANIFEST) -> None:
    """Commit ``manifest`` durably: write a temporary file, fsync it, rename it over ``name``, fsync the directory.

    Every file the manifest names must already be fsynced (:meth:`SegmentBuffer.write` does it), so
    after a power loss the manifest never names a file that did not reach the disk.
    """
    temporary = root / f"{name}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_directory(root)  # the new files' names are on disk before the manifest that names them
    os.replace(temporary, root / name)
    fsync_directory(root)


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(path: Path) -> None:
    """Flush ``path``'s entries (new names, renames) to the disk; a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(descriptor)
