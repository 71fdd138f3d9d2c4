"""``latepool search``: query an index (or a Qdrant collection) with one text or a queries file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from latepool.commands.common import add_model_option, add_qdrant_options
from latepool.options import QDRANT_PREFETCH


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="Search an index with a query or a queries.jsonl file.")
    parser.add_argument("--index", type=Path, required=True, help="The index (its model encodes the queries).")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help="One query text.")
    what.add_argument("--queries", type=Path, help="queries.jsonl ({_id, text}); writes a TREC run to --output.")
    parser.add_argument("-k", type=int, default=None, help="Hits per query (default 10, or 100 with --queries).")
    parser.add_argument("--output", type=Path, default=None, help="TREC run file for --queries.")
    parser.add_argument(
        "--max-query-chars",
        type=int,
        default=2000,
        help="Longest query accepted, in characters (the server's limit; the model reads its first tokens only).",
    )
    parser.add_argument("--json", action="store_true", help="Print hits as JSON.")
    add_model_option(parser, required=False, override=True)
    parser.add_argument(
        "--mode",
        choices=("auto", "exact", "candidates"),
        default="auto",
        help="exact: scan every document; candidates: inverted lists first, then exact MaxSim of the best "
        "--rescore; auto: exact on small indexes, candidates on large ones.",
    )
    parser.add_argument(
        "--nprobe",
        type=int,
        default=None,
        help="Centroids probed per distinct query token on average, tokens standing for more probing more "
        "(candidates; default: 3 per 2,048 centroids, at least 64; 8 times that for float16 / int8 indexes).",
    )
    parser.add_argument(
        "--rescore",
        type=int,
        default=None,
        help="Candidates scored exactly per query first (candidates; default: 256, or as many documents as hold "
        "about 16,384 vectors where documents are short).",
    )
    parser.add_argument(
        "--rescore-limit",
        type=int,
        default=None,
        help="Candidates scored exactly at most: after the first --rescore, the next best are scored in rounds "
        "while one could still enter the top k (candidates; default: 4 per thousand documents, at least 2,048; "
        "0 turns the rule off).",
    )
    add_qdrant_options(parser, required=False)
    parser.add_argument(
        "--prefetch",
        type=int,
        default=QDRANT_PREFETCH,
        help="With --url/--qdrant-path: candidate documents, ranked from each query token's nearest pooled "
        "vectors in Qdrant's graph, rescored by exact MaxSim (0: exact MaxSim over the whole collection).",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from latepool.commands.common import open_index
    from latepool.data import read_jsonl
    from latepool.evaluation.report import write_trec_run

    k = args.k if args.k is not None else (100 if args.queries else 10)
    if k < 1:
        raise ValueError(f"-k must be >= 1, got {k}")
    if args.queries and not args.output:
        raise ValueError("--queries needs --output for the TREC run")
    if args.queries:
        rows = list(read_jsonl(args.queries))
        ids, texts = [r["_id"] for r in rows], [r.get("text") or "" for r in rows]
    else:
        ids, texts = ["query"], [args.query]
    too_long = [i for i, t in zip(ids, texts) if len(t) > args.max_query_chars]
    if too_long:
        raise ValueError(
            f"query {too_long[0]!r} is longer than --max-query-chars {args.max_query_chars} "
            f"({len(too_long)} of {len(texts)} such)"
        )
    if args.url or args.qdrant_path:
        from latepool.extras import require

        require("qdrant", "latepool search --url/--qdrant-path")
    index = open_index(args.index, args.model)
    if args.url or args.qdrant_path:
        hits = _search_qdrant(index, args, texts, k)
    else:
        candidates = {"auto": None, "exact": False, "candidates": True}[args.mode]
        hits = index.search(
            texts,
            k,
            candidates=candidates,
            nprobe=args.nprobe,
            rescore=args.rescore,
            rescore_limit=args.rescore_limit,
        )
    if args.output:
        run_scores = {qid: dict(h) for qid, h in zip(ids, hits)}
        write_trec_run(args.output, run_scores, "latepool")
        print(f"wrote {len(ids)} queries x top {k} to {args.output}")
    elif args.json:
        print(json.dumps([hit._asdict() for hit in hits[0]]))
    else:
        for rank, (doc_id, score) in enumerate(hits[0], start=1):
            print(f"{rank:>3}  {score:9.4f}  {doc_id}")
    return 0


def _search_qdrant(index, args: argparse.Namespace, texts: list[str], k: int):
    from latepool.index.qdrant import QdrantCollection, connect

    if not args.collection:
        raise ValueError("--url/--qdrant-path needs --collection")
    if any(not t.strip() for t in texts):
        raise ValueError("queries must be non-empty texts")
    embeddings = index.encode_queries(texts)
    client = connect(url=args.url, path=args.qdrant_path, api_key=args.qdrant_api_key)
    try:
        dim, prefetch = int(index.manifest["dim"]), args.prefetch or None
        return QdrantCollection.open(client, args.collection, dim=dim, prefetch=prefetch).search(embeddings, k)
    finally:
        client.close()
