"""The index as a system of record: writers in several processes, kills at any point, lossless compaction,
streaming and resumable builds, cheap opening, and a server that sees other processes' commits."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import latepool.index.writer as writer_module
from latepool.index import Index
from latepool.index.locks import IndexBusyError, writer_lock
from latepool.index.storage import PARTIAL
from test_codec import SETTINGS as INDEX_SETTINGS

DIM = 16
SETTINGS = {**INDEX_SETTINGS, "pool_factor": 2, "dtype": "residual2"}


def documents(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.nn.functional.normalize(torch.randn(12, DIM, generator=generator), dim=-1)
    out = []
    for i in range(count):
        picks = centers[torch.randint(0, 12, (2 + i % 4,), generator=generator)]
        out.append(torch.nn.functional.normalize(picks + 0.2 * torch.randn(picks.shape, generator=generator), dim=-1))
    return out


def stored_vectors(path: Path) -> dict[str, torch.Tensor]:
    """Every live document's decoded vectors, by id."""
    return {i: d for ids, docs in Index.open(path).documents(batch_size=64) for i, d in zip(ids, docs)}


def run_child(script: str, *args: object, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


# ----- several processes at once ------------------------------------------------------------------------
WRITER = """
import json, random, sys, torch
sys.path.insert(0, {tests!r})
from test_writers import documents
from latepool.index import Index
path, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
index = Index.open(path)
live, made = [], 0
for step in range(6):
    operation = rng.choice(["add", "add", "delete", "compact"])
    if operation == "add":
        count = rng.randint(5, 25)
        ids = [f"{{name}}-{{made + i}}" for i in range(count)]
        index.add_documents(ids, documents(count, seed=seed * 100 + step))
        live += ids
        made += count
    elif operation == "delete" and live:
        gone = rng.sample(live, rng.randint(1, len(live)))
        assert index.delete(gone) == len(gone)
        live = [i for i in live if i not in gone]
    else:
        index.compact()
json.dump(live, open(sys.argv[4], "w"))
"""

SEARCHER = """
import os, sys, time, torch
sys.path.insert(0, {tests!r})
from test_writers import documents
from latepool.index import Index
path, stop = sys.argv[1], sys.argv[2]
queries = documents(3, seed=99)
index, answered, opened = Index.open(path), 0, 0
while not os.path.exists(stop):
    index.refresh()
    for hits in index.search_embeddings(queries, k=5, candidates=answered % 2 == 0, nprobe=4, rescore=20):
        assert len(hits) == 5
    answered += 1
    if answered % 5 == 0:
        Index.open(path).search_embeddings(queries, k=5)
        opened += 1
print(answered, opened)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_writers_in_several_processes_lose_nothing_while_a_reader_searches(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "idx"
    initial = [f"base-{i}" for i in range(120)]
    Index.from_documents(path, initial, documents(120), SETTINGS, num_centroids=16)
    tests = str(Path(__file__).parent)
    stop = tmp_path / "stop"
    searcher = subprocess.Popen(
        [sys.executable, "-c", SEARCHER.format(tests=tests), str(path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    script = WRITER.format(tests=tests)
    try:
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", script, path, f"w{n}", str(seed * 10 + n), tmp_path / f"w{n}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(3)
        ]
        for process in writers:
            _, error = process.communicate(timeout=300)
            assert process.returncode == 0, error
    finally:
        stop.touch()  # the searcher stops whatever happened
    output, error = searcher.communicate(timeout=120)
    assert searcher.returncode == 0, error
    answered, opened = map(int, output.split())
    assert answered > 0 and opened >= 0
    expected = set(initial).union(*(json.loads((tmp_path / f"w{n}").read_text()) for n in range(3)))
    index = Index.open(path, verify=True)  # every file the manifest names is there and intact
    assert sorted(index.ids) == sorted(expected)
    with writer_lock(path):  # cleanups skipped while the searcher was opening are done by the next writer
        writer_module.remove_unreferenced(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert {p.name for p in path.glob("seg-*")} == set(manifest["segments"])  # nothing left behind


def test_a_stale_handle_writes_on_top_of_the_latest_commit(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    first = Index.from_documents(path, ["a", "b", "c"], documents(3), SETTINGS, num_centroids=8)
    second = Index.open(path)
    first.add_documents(["d"], documents(1, seed=3))
    second.add_documents(["e"], documents(1, seed=4))  # second's snapshot predates "d": "d" must survive
    second.delete(["d"])  # and second sees "d" under the lock, so it can delete it
    first.compact()
    assert sorted(Index.open(path).ids) == ["a", "b", "c", "e"]
    assert first.refresh() is False and sorted(first.ids) == ["a", "b", "c", "e"]
    assert second.refresh() is True and sorted(second.ids) == ["a", "b", "c", "e"]


def test_a_second_build_is_refused_while_a_writer_holds_the_index(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    Index.from_documents(path, ["a"], documents(1), SETTINGS, num_centroids=4)
    with writer_lock(path), pytest.raises(IndexBusyError, match="another writer"):
        Index.from_documents(path, ["b"], documents(1), SETTINGS, overwrite=True)


# ----- compaction -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["residual2", "int8", "float16"])
def test_compaction_keeps_untouched_documents_bit_identical(tmp_path: Path, monkeypatch, dtype: str) -> None:
    monkeypatch.setattr(writer_module, "MAX_SEGMENT_DOCUMENTS", 50)
    path = tmp_path / "idx"
    ids = [f"d{i}" for i in range(300)]
    index = Index.from_documents(path, ids, documents(300), {**SETTINGS, "dtype": dtype}, num_centroids=16)
    index.add_documents([f"x{i}" for i in range(20)], documents(20, seed=8))
    index.delete(ids[::7])
    before = stored_vectors(path)
    segments_before = set(index.manifest["segments"])
    index.compact()
    assert index.manifest["deleted"] == {} and len(index.manifest["segments"]) == 7
    assert set(index.manifest["segments"]) != segments_before
    after = stored_vectors(path)
    assert after.keys() == before.keys()
    assert all(torch.equal(before[i], after[i]) for i in before)  # copied, not decoded and re-encoded
    assert Index.open(path, verify=True).ids == index.ids


def test_delete_marks_positions_once_and_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index = Index.from_documents(path, [f"d{i}" for i in range(50)], documents(50), SETTINGS, num_centroids=8)
    assert index.delete(["d1", "d2", "d1"]) == 2
    assert index.delete(["d3"]) == 1
    (positions,) = index.manifest["deleted"].values()
    assert positions == sorted(set(positions)) and len(positions) == 3
    with pytest.raises(ValueError, match="1 id not in the index.*'nope'.*nothing was deleted"):
        index.delete(["d4", "nope"])
    assert "d4" in index.ids


# ----- kills at any point -------------------------------------------------------------------------------
KILLER = """
import os, signal, sys, json
import numpy as np
sys.path.insert(0, {tests!r})
from test_writers import SETTINGS, documents
import latepool.index.writer as writer
from latepool.index import Index
mode, path, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
writer.MIN_SAMPLE_VECTORS = 150  # the codec is trained after the first few batches, not at the end
writer.MAX_SEGMENT_DOCUMENTS = 40
calls = 0
def counted(function):
    def wrapped(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return wrapped
for module, name in [(np, "save"), (os, "replace"), (os, "fsync"), (os, "unlink"), (os, "rmdir"), (os, "mkdir")]:
    setattr(module, name, counted(getattr(module, name)))
if mode == "build":
    batches = [([f"d{{b}}-{{i}}" for i in range(15)], documents(15, seed=b)) for b in range(12)]
    Index.from_batches(path, batches, SETTINGS, num_centroids=4, commit_every=15)
elif mode == "add":
    index = Index.open(path)
    for b in range(4):
        index.add_documents([f"new{{b}}-{{i}}" for i in range(10)], documents(10, seed=50 + b))
elif mode == "compact":
    Index.open(path).compact()
print(calls)
"""


def kill_points(script: str, mode: str, path: Path, prepare, count: int = 5) -> list[int]:
    """Run the operation once unkilled to count its I/O calls, then pick ``count`` points to kill it at."""
    prepare(path)
    result = run_child(script, mode, path, -1)
    assert result.returncode == 0, result.stderr
    total = int(result.stdout.split()[-1])
    return sorted(random.Random(mode).sample(range(1, total + 1), min(count, total)))


def test_a_build_killed_anywhere_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    script = KILLER.format(tests=str(Path(__file__).parent))
    reference = tmp_path / "reference"
    points = kill_points(script, "build", reference, lambda path: None)
    expected = stored_vectors(reference)
    for point in points:
        path = tmp_path / f"killed-{point}"
        assert run_child(script, "build", path, point).returncode == -9
        if (path / "manifest.json").is_file():  # killed after the final commit: a whole index
            assert sorted(Index.open(path, verify=True).ids) == sorted(expected)
        elif path.exists() and (path / PARTIAL).is_file():
            with pytest.raises(ValueError, match="partial build"):
                Index.open(path)
        result = run_child(script, "build", path, -1)  # the same build again: continues
        assert result.returncode == 0, result.stderr
        resumed = stored_vectors(path)
        assert resumed.keys() == expected.keys()
        assert all(torch.equal(resumed[i], expected[i]) for i in expected), point
        Index.open(path, verify=True)


def _base_index(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    Index.from_documents(path, [f"d{i}" for i in range(90)], documents(90), SETTINGS, num_centroids=16)
    index = Index.open(path)
    index.add_documents([f"e{i}" for i in range(30)], documents(30, seed=9))
    index.delete([f"d{i}" for i in range(0, 90, 4)])


@pytest.mark.parametrize("mode", ["add", "compact"])
def test_an_add_or_compaction_killed_anywhere_leaves_a_committed_state(tmp_path: Path, mode: str) -> None:
    script = KILLER.format(tests=str(Path(__file__).parent))
    path = tmp_path / "idx"
    points = kill_points(script, mode, path, _base_index)
    _base_index(path)
    before = stored_vectors(path)
    for point in points:
        _base_index(path)
        assert run_child(script, mode, path, point).returncode == -9
        index = Index.open(path, verify=True)
        after = stored_vectors(path)
        if mode == "compact":  # before or after the compaction: the same documents either way
            assert after.keys() == before.keys() and all(torch.equal(after[i], before[i]) for i in before)
        else:  # a whole number of the four adds committed
            added = sorted(set(index.ids) - set(before))
            assert len(added) % 10 == 0 and set(before) <= set(index.ids)
            assert added == sorted(f"new{b}-{i}" for b in range(len(added) // 10) for i in range(10))
        index.add_documents(["after-kill"], documents(1, seed=77))  # and the index takes writes again
        assert "after-kill" in Index.open(path, verify=True).ids


# ----- streaming builds ---------------------------------------------------------------------------------
def test_a_streamed_build_equals_one_in_memory_build(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "MAX_SEGMENT_DOCUMENTS", 64)
    docs, ids = documents(400), [f"d{i}" for i in range(400)]
    whole = Index.from_documents(tmp_path / "whole", ids, docs, SETTINGS, num_centroids=64)
    batches = ((ids[i : i + 37], docs[i : i + 37]) for i in range(0, 400, 37))
    streamed = Index.from_batches(tmp_path / "streamed", batches, SETTINGS, num_centroids=64, commit_every=20)
    # 32 vectors per centroid are more than there are: both train on every vector
    assert torch.equal(whole.codec.centroids, streamed.codec.centroids)
    assert streamed.ids == ids and all(s.count <= 64 for s in streamed._snapshot.segments)
    assert all(segment.count >= 16 for segment in streamed._snapshot.segments)  # small commits merged
    a, b = stored_vectors(tmp_path / "whole"), stored_vectors(tmp_path / "streamed")
    assert all(torch.equal(a[i], b[i]) for i in ids)
    assert not (tmp_path / "streamed" / PARTIAL).exists()
    assert not list((tmp_path / "streamed").glob("pending-*"))


def test_a_stream_trains_its_codec_once_the_sample_is_full(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "MIN_SAMPLE_VECTORS", 100)
    trained_on = []
    train = writer_module.Codec.train

    def spy(vectors, *args, **kwargs):
        trained_on.append(len(vectors))
        return train(vectors, *args, **kwargs)

    monkeypatch.setattr(writer_module.Codec, "train", spy)
    docs = documents(200)
    batches = [([f"d{i}" for i in range(s, s + 20)], docs[s : s + 20]) for s in range(0, 200, 20)]
    index = Index.from_batches(tmp_path / "idx", batches, SETTINGS, num_centroids=4)
    # a known centroid count: the sample is exactly what the centroids train on, never the 100 floor
    assert trained_on == [writer_module.POINTS_PER_CENTROID * 4]
    assert len(index) == 200
    unknown = Index.from_batches(tmp_path / "unknown", batches, SETTINGS)  # the count comes from 100 vectors
    assert 100 <= trained_on[1] <= writer_module.POINTS_PER_CENTROID * len(unknown.codec.centroids)
    assert len(trained_on) == 2


def test_a_stream_that_repeats_an_id_or_changes_dimension_is_refused(tmp_path: Path) -> None:
    batches = [(["a", "b"], documents(2)), (["b"], documents(1))]
    with pytest.raises(ValueError, match="unique.*'b'"):
        Index.from_batches(tmp_path / "idx", batches, SETTINGS)
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        Index.from_batches(tmp_path / "idx2", [(["a"], documents(1)), (["b"], [torch.ones(2, 8)])], SETTINGS)
    with pytest.raises(ValueError, match="no documents"):
        Index.from_batches(tmp_path / "idx3", [], SETTINGS)
    assert not (tmp_path / "idx3").exists()


class InterruptingModel:
    """Wraps an encoder: counts the texts it encodes and raises KeyboardInterrupt on the call given."""

    def __init__(self, model, interrupt_at: int | None = None) -> None:
        self.model, self.interrupt_at, self.calls, self.texts = model, interrupt_at, 0, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __getitem__(self, position):
        return self.model[position]

    def encode_document(self, texts, **kwargs):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.texts += len(texts)
        return self.model.encode_document(texts, **kwargs)


def test_an_interrupted_build_from_text_continues_without_encoding_again(tiny_bert_dir, tmp_path: Path) -> None:
    from latepool.models import build_colbert

    model = build_colbert(tiny_bert_dir, embedding_dim=16, query_length=12, document_length=32, device="cpu")
    texts = [f"document number {i} about topic {i % 7} with words {' '.join(['w'] * (i % 5))}" for i in range(700)]
    ids = [f"t{i}" for i in range(700)]
    options = {"dtype": "residual2", "batch_size": 4, "commit_every": 64, "show_progress_bar": False}
    reference = Index.build(tmp_path / "reference", model, ids, texts, **options)
    interrupted = InterruptingModel(model, interrupt_at=3)  # after two chunks of 256 texts
    with pytest.raises(KeyboardInterrupt):
        Index.build(tmp_path / "idx", interrupted, ids, texts, **options)
    with pytest.raises(ValueError, match="partial build"):
        Index.open(tmp_path / "idx")
    resumed = InterruptingModel(model)
    index = Index.build(tmp_path / "idx", resumed, ids, texts, **options)
    assert resumed.texts == 700 - 512  # the two committed chunks are not encoded again
    assert index.ids == ids
    a, b = stored_vectors(tmp_path / "reference"), stored_vectors(tmp_path / "idx")
    assert all(torch.allclose(a[i], b[i], atol=1e-6) for i in ids)
    with pytest.raises(ValueError, match="already holds an index"):
        Index.build(tmp_path / "idx", model, ids, texts, **options)
    assert reference.manifest["vector_count"] == index.manifest["vector_count"]


def test_a_partial_build_of_other_documents_is_not_resumed(tiny_bert_dir, tmp_path: Path) -> None:
    from latepool.models import build_colbert

    model = build_colbert(tiny_bert_dir, embedding_dim=16, query_length=12, document_length=32, device="cpu")
    texts, ids = [f"text {i}" for i in range(300)], [f"t{i}" for i in range(300)]
    with pytest.raises(KeyboardInterrupt):
        Index.build(tmp_path / "idx", InterruptingModel(model, 2), ids, texts, show_progress_bar=False)
    with pytest.raises(ValueError, match="other documents or settings.*--overwrite"):
        Index.build(tmp_path / "idx", model, ids, [t + "!" for t in texts], show_progress_bar=False)
    index = Index.build(tmp_path / "idx", model, ids, texts[::-1], overwrite=True, show_progress_bar=False)
    assert len(index) == 300


# ----- opening and the manifest ------------------------------------------------------------------------
def test_a_manifest_missing_a_key_is_named(tmp_path: Path) -> None:
    Index.from_documents(tmp_path / "idx", ["a"], documents(1), SETTINGS, num_centroids=4)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    del manifest["dim"]
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="incomplete manifest.*dim"):
        Index.open(tmp_path / "idx")


def test_cleanup_waits_while_a_reader_is_opening(tmp_path: Path) -> None:
    from latepool.index.locks import reading

    path = tmp_path / "idx"
    index = Index.from_documents(path, [f"d{i}" for i in range(20)], documents(20), SETTINGS, num_centroids=4)
    index.add_documents(["x"], documents(1, seed=2))
    old = set(index.manifest["segments"])
    with reading(path):  # a reader between reading the manifest and mapping its files
        index.delete(["x"])
        index.compact()
        assert old <= {p.name for p in path.glob("seg-*")}  # nothing it may still map is removed
    index.add_documents(["y"], documents(1, seed=3))  # the next commit cleans up
    assert {p.name for p in path.glob("seg-*")} == set(index.manifest["segments"])


def test_a_failed_cleanup_does_not_fail_the_commit(tmp_path: Path, monkeypatch, caplog) -> None:
    index = Index.from_documents(tmp_path / "idx", ["a", "b"], documents(2), SETTINGS, num_centroids=4)

    def broken(*args, **kwargs):
        raise PermissionError("read-only file")

    monkeypatch.setattr(writer_module.shutil, "rmtree", broken)
    index.delete(["a"])
    index.compact()
    assert Index.open(tmp_path / "idx").ids == ["b"]
    assert "could not remove" in caplog.text


def test_opening_is_cheap_and_verify_reads_every_file(tmp_path: Path, monkeypatch) -> None:
    Index.from_documents(tmp_path / "idx", [f"d{i}" for i in range(30)], documents(30), SETTINGS, num_centroids=4)
    import latepool.index.storage as storage

    hashed = []
    original = storage.sha256_file
    monkeypatch.setattr(storage, "sha256_file", lambda path: hashed.append(path) or original(path))
    Index.open(tmp_path / "idx")
    assert hashed == []
    Index.open(tmp_path / "idx", verify=True)
    assert len(hashed) == len(json.loads((tmp_path / "idx" / "manifest.json").read_text())["checksums"])


def test_an_unchanged_index_refreshes_with_one_stat(tmp_path: Path) -> None:
    index = Index.from_documents(tmp_path / "idx", ["a"], documents(1), SETTINGS, num_centroids=4)
    snapshot = index._snapshot
    assert index.refresh() is False and index._snapshot is snapshot
    os.utime(tmp_path / "idx" / "manifest.json")  # touched, same content: the same state
    assert index.refresh() is False
    assert np.array_equal(index._snapshot.views[0].live, snapshot.views[0].live)


def test_locations_carried_from_one_commit_to_the_next_are_the_ones_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    index = Index.from_documents(path, [f"d{i}" for i in range(40)], documents(40), SETTINGS, num_centroids=4)
    index.delete(["d3", "d4"])
    index.add_documents(["d5", "n1"], documents(2, seed=1), replace=True)
    index.delete(["n1"])
    assert "locations" in index._snapshot.__dict__  # carried over, not rebuilt
    assert index._snapshot.locations == Index.open(path)._snapshot.locations


def test_index_verify_command_checks_every_file(tmp_path: Path, capsys) -> None:
    from latepool.cli import main

    Index.from_documents(tmp_path / "idx", ["a", "b"], documents(2), SETTINGS, num_centroids=4)
    assert main(["index", "verify", "--index", str(tmp_path / "idx")]) == 0
    assert "2 documents" in capsys.readouterr().out
    segment = next((tmp_path / "idx").glob("seg-*"))
    data = bytearray((segment / "residuals.npy").read_bytes())
    data[-1] ^= 0xFF
    (segment / "residuals.npy").write_bytes(bytes(data))
    assert main(["index", "verify", "--index", str(tmp_path / "idx")]) == 2
    error = capsys.readouterr().err
    assert "corrupted index file" in error and "residuals.npy" in error and len(error.strip().splitlines()) == 1
