"""Search load on ``latepool serve``: requests/s and latency from concurrent clients, through real uvicorn.

Builds a MiniLM-ColBERT index of the SciFact sample shipped in ``samples/`` (k-means PF4), serves it
on 127.0.0.1 with an API key (reads keyed, as beyond loopback), and sends ``--requests`` single-query
searches from ``--clients`` concurrent clients, cycling over the sample's queries, twice side by side:
with each request encoding its own query, and with concurrent requests' queries encoded together
(``--max-batch-queries``). Then single requests one at a time (an idle server), both ways. Prints
requests/s, p50 / p95 / max latency, the count of non-200 answers and the encoding passes.

    python benchmarks/server_load.py --requests 1000 --clients 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from latepool.data import read_corpus, read_jsonl
from latepool.index import Index
from latepool.index.server import ServerConfig, create_app
from latepool.models import load_model

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "scifact-sample"
KEY = "benchmark-key"


def start(app) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return server, thread, f"http://{host}:{port}"


def client_run(url: str, queries: list[str], count: int, offset: int) -> list[tuple[int, float]]:
    """``count`` searches from one client; (status, seconds) per request."""
    results = []
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as client:
        for i in range(count):
            started = time.perf_counter()
            response = client.post("/search", json={"query": queries[(offset + i) % len(queries)], "k": 10})
            results.append((response.status_code, time.perf_counter() - started))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="Total search requests.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients.")
    parser.add_argument("--pool-factor", type=float, default=4, help="Index pool factor.")
    parser.add_argument("--max-batch-queries", type=int, default=32, help="The batched server's pass size.")
    args = parser.parse_args()

    ids, texts = read_corpus(SAMPLE / "corpus.jsonl")
    queries = [row["text"] for row in read_jsonl(SAMPLE / "queries.jsonl")]
    model = load_model("minilm", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        index = Index.build(Path(tmp) / "idx", model, ids, texts, pool_factor=args.pool_factor, model_name="minilm")
        print(
            f"index: {len(index)} documents, {index.manifest['vector_count']} vectors, "
            f"built in {time.perf_counter() - started:.1f} s"
        )
        for batch in (1, args.max_batch_queries):
            load(index, queries, args, batch)
        for batch in (1, args.max_batch_queries):
            idle(index, queries, batch)


def load(index: Index, queries: list[str], args: argparse.Namespace, batch: int) -> None:
    """``args.requests`` searches from ``args.clients`` concurrent clients; prints throughput and latency."""
    app = create_app(index, ServerConfig(api_key=KEY, keyed_reads=True, max_batch_queries=batch))
    server, thread, url = start(app)
    try:
        client_run(url, queries, 8, 0)  # warm-up: first encodes, connection setup
        passes = app.state.batcher.passes
        per_client = [args.requests // args.clients + (i < args.requests % args.clients) for i in range(args.clients)]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            offsets = [i * 7 for i in range(args.clients)]
            runs = pool.map(client_run, [url] * args.clients, [queries] * args.clients, per_client, offsets)
            results = [r for run in runs for r in run]
        wall = time.perf_counter() - started
        passes = app.state.batcher.passes - passes
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    latencies = sorted(seconds * 1000 for _, seconds in results)
    errors = sum(status != 200 for status, _ in results)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    print(
        f"max batch {batch:>3}: {len(results)} requests from {args.clients} clients in {wall:.1f} s: "
        f"{len(results) / wall:.1f} requests/s | latency ms p50 {statistics.median(latencies):.1f} p95 {p95:.1f} "
        f"max {latencies[-1]:.1f} | non-200 {errors} | {passes} encoding passes "
        f"({len(results) / max(passes, 1):.1f} queries each)",
        flush=True,
    )


def idle(index: Index, queries: list[str], batch: int, count: int = 100) -> None:
    """One request at a time: the latency of a lone request."""
    app = create_app(index, ServerConfig(api_key=KEY, keyed_reads=True, max_batch_queries=batch))
    server, thread, url = start(app)
    try:
        client_run(url, queries, 8, 0)
        latencies = sorted(seconds * 1000 for _, seconds in client_run(url, queries, count, 3))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    print(f"max batch {batch:>3}: one request at a time, {count} requests: p50 {statistics.median(latencies):.1f} ms")

if __name__ == "__main__":
    main()
