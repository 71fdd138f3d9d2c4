"""Build and search a fast-plaid index; run by benchmarks/search_scale.py in fast-plaid's own virtualenv.

fast-plaid pins torch 2.11, so it cannot share latepool's environment. search_scale.py makes that
virtualenv (``pip install fast-plaid``) and runs this file there:

    python fast_plaid_run.py DOCUMENTS_PT QUERIES_PT INDEX_DIR OUT_JSON

DOCUMENTS_PT holds ``{"documents": [(n_i, dim) float32 tensors]}`` and QUERIES_PT
``{"queries": [(len, dim) tensors]}``. Prints nothing; writes build and open seconds, bytes on disk,
single-query and batched milliseconds, peak RSS and each query's top-10 document positions. An
INDEX_DIR that an earlier run built (``search_scale.py --keep``) is searched again, not rebuilt; its
build seconds are the ones recorded then.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch
from fast_plaid import search

documents_file, queries_file, index_dir, out = sys.argv[1:5]
queries = torch.load(queries_file)["queries"]
built = Path(index_dir) / "latepool-build.json"
if built.is_file():
    build_s = json.loads(built.read_text())["build_s"]
else:
    documents = torch.load(documents_file)["documents"]
    started = time.perf_counter()
    index = search.FastPlaid(index=index_dir, device="cpu")
    index.create(documents_embeddings=documents, nbits=4)
    build_s = time.perf_counter() - started
    del documents, index
    built.write_text(json.dumps({"build_s": build_s}))
started = time.perf_counter()
index = search.FastPlaid(index=index_dir, device="cpu")
open_s = time.perf_counter() - started
latencies, hits = [], []
for query in queries:
    started = time.perf_counter()
    result = index.search(queries_embeddings=query[None].float(), top_k=10, show_progress=False)
    latencies.append((time.perf_counter() - started) * 1000)
    hits.append([int(doc) for doc, _ in result[0]])
started = time.perf_counter()
index.search(queries_embeddings=queries, top_k=10, show_progress=False)
batched = (time.perf_counter() - started) * 1000 / len(queries)
size = sum(f.stat().st_size for f in Path(index_dir).rglob("*") if f.is_file() and f != built)
result = {
    "build_s": build_s,
    "open_s": open_s,
    "bytes": size,
    "median_ms": statistics.median(latencies),
    "p95_ms": sorted(latencies)[int(0.95 * (len(latencies) - 1))],
    "batched_ms_per_query": batched,
    "peak_rss_bytes": next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    ),
    "hits": hits,
}
Path(out).write_text(json.dumps(result))
