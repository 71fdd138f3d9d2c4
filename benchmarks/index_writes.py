"""The index as a system of record, measured: build memory and time, compaction, deletes, opening, concurrent writers.

On the scale proxy of ``search_scale.py`` (real pooled SciFact / NFCorpus / MEDLINE documents, then
synthetic documents mixed from them; MiniLM, k-means PF4, residual2). Every job runs in its own
child process, which reports its peak resident memory (VmHWM) and imports no model code unless it
encodes text:

- ``--sizes``: the index built two ways side by side: streamed (``Index.from_batches`` over batches
  of ``--batch`` documents) and as before (``Index.from_documents`` on a first batch of 100,000
  documents, then ``add_documents`` of 100,000 at a time). Build seconds, peak RSS, bytes on disk.
  ``--no-in-memory`` skips the second. Then, on the streamed index: open without and with
  checksums, deletes of 0.4%, 0.8% and 1.6% of the documents (4,000 / 8,000 / 16,000 at 1M), more
  deletes up to a tenth, and a compaction in a process of its own (seconds, peak RSS, and whether
  2,000 untouched documents kept bit-identical vectors).
- ``--text-sizes``: ``Index.build`` from text with MiniLM on the first N real documents (peak RSS
  must not grow with N); beyond the 9,849 real documents, their texts again under new ids.
- ``--writers``: processes adding, deleting and compacting at once on a copy of the first size's
  index while another searches throughout: searches answered and their latency, documents
  accounted for, and the index verified at the end.

    python benchmarks/index_writes.py --sizes 1000000 --text-sizes 2000,9849 --writers 3
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from latepool.index import Index
from latepool.index.codec import default_num_centroids
from latepool.options import DEFAULT_CACHE_DIR

sys.path.insert(0, str(Path(__file__).parent))
from search_scale import COLLECTIONS, DATA, SETTINGS, corpus, directory_bytes, peak_rss_bytes  # noqa: E402

SETTINGS = {**SETTINGS, "dtype": "residual2"}


# ----- jobs (each runs in a child process) ---------------------------------------------------------------
def build_streamed(path: Path, size: int, real_file: Path, batch: int) -> dict:
    real = torch.load(real_file)
    started = time.perf_counter()
    index = Index.from_batches(path, corpus(size, real, batch=batch), SETTINGS, expected_documents=size)
    return {"build_s": time.perf_counter() - started, "documents": len(index), "bytes": directory_bytes(path)}


def build_in_memory(path: Path, size: int, real_file: Path, batch: int) -> dict:
    """The build as the scale benchmark did it before streaming: a first 100,000 documents in memory, then adds
    of 100,000 (the same documents as the streamed build)."""
    real = torch.load(real_file)
    started = time.perf_counter()
    batches = grouped(corpus(size, real, batch=batch), 100_000)
    first_ids, first_documents = next(batches)
    vectors = size * sum(len(d) for d in first_documents) / len(first_documents)
    index = Index.from_documents(
        path, first_ids, first_documents, SETTINGS, num_centroids=default_num_centroids(int(vectors))
    )
    del first_documents
    for batch_ids, batch_documents in batches:
        index.add_documents(batch_ids, batch_documents)
    return {"build_s": time.perf_counter() - started, "documents": len(index), "bytes": directory_bytes(path)}


def grouped(batches, documents: int):
    """Consecutive ``(ids, documents)`` batches joined into batches of ``documents``."""
    ids, vectors = [], []
    for batch_ids, batch_vectors in batches:
        ids += batch_ids
        vectors += batch_vectors
        if len(ids) >= documents:
            yield ids, vectors
            ids, vectors = [], []
    if ids:
        yield ids, vectors


def open_and_delete(path: Path) -> dict:
    """Open without and with checksums, then delete 0.4%, 0.8% and 1.6% of the documents (4k / 8k / 16k at 1M)."""
    started = time.perf_counter()
    index = Index.open(path)
    open_s = time.perf_counter() - started
    started = time.perf_counter()
    Index.open(path, verify=True)
    verified_s = time.perf_counter() - started
    counts = [len(index) * share // 1000 for share in (4, 8, 16)]
    chosen = random.Random(0).sample(index.ids, sum(counts))
    deletes, start = {}, 0
    for count in counts:
        started = time.perf_counter()
        index.delete(chosen[start : start + count])
        deletes[count] = time.perf_counter() - started
        start += count
    return {"open_s": open_s, "open_verified_s": verified_s, "delete_s": deletes}


def delete_tenth(path: Path) -> dict:
    """Delete documents until a tenth of those stored are deleted."""
    index = Index.open(path)
    ids = index.ids
    stored = sum(segment.count for segment in index._snapshot.segments)  # deleted ones included
    count = max(stored // 10 - (stored - len(ids)), 0)
    started = time.perf_counter()
    index.delete(random.Random(1).sample(ids, count))
    return {"deleted": count, "delete_s": time.perf_counter() - started, "documents": len(index)}


def compact(path: Path) -> dict:
    """Open and compact, nothing else: the process's peak is the compaction's."""
    index = Index.open(path)
    rss_open = peak_rss_bytes()
    started = time.perf_counter()
    index.compact()
    return {"compact_s": time.perf_counter() - started, "rss_open": rss_open, "documents": len(index)}


def _vectors_of(index: Index, wanted: set[str]) -> dict[str, torch.Tensor]:
    """The stored vectors of the documents ``wanted``, read segment by segment."""
    found = {}
    for view in index._snapshot.views:
        for position, doc_id in enumerate(view.segment.ids):
            if doc_id in wanted and view.live[position]:
                start, stop = int(view.segment.offsets[position]), int(view.segment.offsets[position + 1])
                found[doc_id] = view.segment.decode(start, stop, index.codec)
    return found


def build_text(path: Path, size: int) -> dict:
    from latepool.data import load_dataset
    from latepool.models import load_model

    ids, texts = [], []
    for name in COLLECTIONS:
        dataset = load_dataset(DATA / name, split="test")
        ids += [f"{name}:{i}" for i in dataset.corpus_ids]
        texts += dataset.corpus_texts
    real = len(ids)
    for copy in range(1, -(-size // real)):  # beyond the real documents: their texts again, under new ids
        ids += [f"copy{copy}:{i}" for i in ids[:real]]
        texts += texts[:real]
    model = load_model("minilm", device="cpu")
    rss_model = peak_rss_bytes()
    started = time.perf_counter()
    index = Index.build(path, model, ids[:size], texts[:size], model_name="minilm", dtype="residual2")
    seconds = time.perf_counter() - started
    return {"build_s": seconds, "documents": len(index), "rss_after_model": rss_model}


def writer_job(path: Path, name: str, seed: int, real_file: Path, out: Path) -> dict:
    """Six random changes (adds of 200-1,000 documents, deletes of its own, compactions), then its live ids."""
    from search_scale import synthetic_batches

    real = torch.load(real_file)[1]
    rng, live, made, seconds = random.Random(seed), [], 0, {}
    index = Index.open(path)
    for step in range(6):
        operation = rng.choice(["add", "add", "delete", "compact"]) if step else "add"
        started = time.perf_counter()
        if operation == "add":
            count = rng.randint(200, 1000)
            _, batch = next(synthetic_batches(real, count, count, seed=seed * 100 + step))
            index.add_documents([f"{name}-{made + i}" for i in range(count)], batch)
            live += [f"{name}-{made + i}" for i in range(count)]
            made += count
        elif operation == "delete" and live:
            gone = set(rng.sample(live, rng.randint(1, len(live))))
            index.delete(sorted(gone))
            live = [i for i in live if i not in gone]
        else:
            operation = "compact"
            index.compact()
        seconds.setdefault(operation, []).append(time.perf_counter() - started)
    out.write_text(json.dumps(live))
    return {"seconds": seconds}


def searcher_job(path: Path, stop: Path, real_file: Path) -> dict:
    queries = [d[:32] for d in torch.load(real_file)[1][:20]]
    index, latencies, errors, reopened = Index.open(path), [], 0, 0
    while not stop.exists():
        for query in queries:
            started = time.perf_counter()
            try:
                index.refresh()
                assert len(index.search_embeddings([query], k=10)[0]) == 10
                latencies.append(time.perf_counter() - started)
            except Exception:  # counted: every search must be answered
                errors += 1
        Index.open(path)
        reopened += 1
    return {"searches": len(latencies), "errors": errors, "reopened": reopened, "latencies": latencies}


JOBS = {
    "streamed": build_streamed,
    "in-memory": build_in_memory,
    "open-delete": open_and_delete,
    "delete-tenth": delete_tenth,
    "compact": compact,
    "text": build_text,
    "writer": writer_job,
    "searcher": searcher_job,
}


def child(job: str, *args: str, wait: bool = True):
    """Run ``job`` in a fresh process; its result and peak RSS (or the process, when not waiting)."""
    command = [sys.executable, __file__, "--job", job, *map(str, args)]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return finished(subprocess.run(command, capture_output=True, text=True))


def finished(process) -> dict:
    if process.returncode != 0:
        raise RuntimeError(f"child failed: {process.stderr[-3000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def run_job(job: str, args: list[str]) -> None:
    types = {"streamed": (Path, int, Path, int), "in-memory": (Path, int, Path, int), "text": (Path, int)}
    types |= {"writer": (Path, str, int, Path, Path), "searcher": (Path, Path, Path)}
    converted = [kind(a) for kind, a in zip(types.get(job, (Path,) * len(args)), args)]
    result = JOBS[job](*converted)
    print(json.dumps({**result, "peak_rss": peak_rss_bytes()}))


# ----- the measurements ------------------------------------------------------------------------------------
def measure_builds(root: Path, size: int, real_file: Path, batch: int, compare: bool = True) -> Path:
    rows = {}
    for way in ("streamed", "in-memory") if compare else ("streamed",):
        path = root / f"{way}-{size}"
        rows[way] = child(way, path, size, real_file, batch)
        row = rows[way]
        print(
            f"{size:>8} docs {way:>9} build: {row['build_s']:.0f} s, peak RSS {row['peak_rss'] / 1e6:,.0f} MB, "
            f"{row['bytes'] / 1e6:,.0f} MB on disk",
            flush=True,
        )
        if way == "in-memory":
            shutil.rmtree(path)
    if compare:
        ratio = rows["streamed"]["build_s"] / rows["in-memory"]["build_s"]
        print(f"{'':>8} streamed / in-memory build time: {ratio:.2f}", flush=True)
    return root / f"streamed-{size}"


def measure_open_and_delete(path: Path) -> None:
    row = child("open-delete", path)
    deletes = ", ".join(f"{int(n):,} ids {s:.2f} s" for n, s in row["delete_s"].items())
    print(f"{'':>8} open {row['open_s']:.2f} s, verified {row['open_verified_s']:.1f} s | delete {deletes}", flush=True)


def measure_compaction(path: Path) -> None:
    """Delete a tenth, compact in a process of its own, and check 2,000 untouched documents' vectors."""
    deleted = child("delete-tenth", path)
    untouched = set(random.Random(2).sample(Index.open(path).ids, 2000))
    before = _vectors_of(Index.open(path), untouched)
    row = child("compact", path)
    after = _vectors_of(Index.open(path), untouched)
    identical = before.keys() == after.keys() and all(torch.equal(before[i], after[i]) for i in before)
    print(
        f"{'':>8} deleted {deleted['deleted']:,} more ids ({deleted['delete_s']:.1f} s, a tenth of the stored "
        f"documents now deleted); compaction: {row['compact_s']:.1f} s, peak RSS {row['peak_rss'] / 1e6:,.0f} MB "
        f"(after opening {row['rss_open'] / 1e6:,.0f} MB), {row['documents']:,} documents left; "
        f"2,000 untouched documents bit-identical: {identical}",
        flush=True,
    )


def measure_text_builds(root: Path, sizes: list[int]) -> None:
    peaks = []
    for size in sizes:
        row = child("text", root / f"text-{size}", size)
        peaks.append(row["peak_rss"])
        print(
            f"{size:>8} docs from text (MiniLM): {row['build_s']:.0f} s ({size / row['build_s']:.1f} docs/s), "
            f"peak RSS {row['peak_rss'] / 1e6:,.0f} MB (model loaded: {row['rss_after_model'] / 1e6:,.0f} MB)",
            flush=True,
        )
    print(f"{'':>8} peak RSS difference, largest against smallest: {(peaks[-1] - peaks[0]) / 1e6:+,.0f} MB")


def measure_writers(root: Path, source: Path, writers: int, real_file: Path) -> None:
    path = root / "concurrent"
    shutil.copytree(source, path)
    before = set(Index.open(path).ids)
    stop = root / "stop"
    searcher = child("searcher", path, stop, real_file, wait=False)
    time.sleep(5)
    started = time.perf_counter()
    processes = [
        child("writer", path, f"w{n}", n + 1, real_file, root / f"w{n}.json", wait=False) for n in range(writers)
    ]
    results = [finished(_communicate(p)) for p in processes]
    seconds = time.perf_counter() - started
    stop.touch()
    searched = finished(_communicate(searcher))
    expected = before.union(*(json.loads((root / f"w{n}.json").read_text()) for n in range(writers)))
    index = Index.open(path, verify=True)
    operations = {}
    for result in results:
        for operation, times in result["seconds"].items():
            operations.setdefault(operation, []).extend(times)
    latencies = sorted(searched["latencies"])
    print(
        f"{'':>8} {writers} writer processes, {sum(len(t) for t in operations.values())} changes in {seconds:.0f} s "
        f"({', '.join(f'{len(t)} {o} median {statistics.median(t):.1f} s' for o, t in operations.items())}); "
        f"a searcher answered {searched['searches']:,} searches, {searched['errors']} errors, reopened "
        f"{searched['reopened']} times, p50 {1000 * statistics.median(latencies):.1f} ms, "
        f"p95 {1000 * latencies[int(0.95 * (len(latencies) - 1))]:.1f} ms; documents accounted for: "
        f"{set(index.ids) == expected} ({len(index):,}); verified: True",
        flush=True,
    )


def _communicate(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="Comma-separated proxy index sizes (documents).")
    parser.add_argument("--batch", type=int, default=10_000, help="Documents per batch of the streamed build.")
    parser.add_argument("--text-sizes", default="", help="Comma-separated sizes of builds from text (MiniLM).")
    parser.add_argument(
        "--no-in-memory", action="store_true", help="Skip the in-memory build (the side-by-side reference)."
    )
    parser.add_argument("--writers", type=int, default=3, help="Writer processes of the concurrency run (0: none).")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="Embedding cache.")
    parser.add_argument("--root", type=Path, default=None, help="Where the indexes are built (default: a temp dir).")
    parser.add_argument("--job", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        run_job(args.job[0], args.job[1:])
        return
    with tempfile.TemporaryDirectory(dir=args.root) as temporary:
        root = Path(temporary)
        sizes = [int(s) for s in args.sizes.split(",") if s]
        real_file = root / "real.pt"
        if sizes:
            from search_scale import real_collections

            ids, documents, *_ = real_collections(args.cache_dir, 1)
            torch.save((ids, documents), real_file)
            print(f"real: {len(ids)} pooled documents, {sum(len(d) for d in documents):,} vectors", flush=True)
        for number, size in enumerate(sizes):
            path = measure_builds(root, size, real_file, args.batch, compare=not args.no_in_memory)
            if number == 0 and args.writers:
                measure_writers(root, path, args.writers, real_file)
            measure_open_and_delete(path)
            measure_compaction(path)
            shutil.rmtree(path)
        if args.text_sizes:
            measure_text_builds(root, [int(s) for s in args.text_sizes.split(",")])


if __name__ == "__main__":
    main()
