"""Rebuild samples/scifact-sample from a BEIR SciFact copy (the repository ships the result).

Keeps the first 50 test queries (in qrels order) that have judgments, all their relevant documents,
and random other SciFact documents (seed 0) up to 300 documents in all.

    python samples/make_scifact_sample.py ../shared/data/scifact samples/scifact-sample
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

QUERIES, DOCUMENTS, SEED = 50, 300, 0


def main(source: Path, target: Path) -> None:
    qrels = [line.rstrip("\n").split("\t") for line in (source / "qrels" / "test.tsv").open(encoding="utf-8")][1:]
    query_ids = list(dict.fromkeys(q for q, _, _ in qrels))[:QUERIES]
    kept_qrels = [row for row in qrels if row[0] in query_ids]
    relevant = {d for _, d, _ in kept_qrels}
    corpus = [json.loads(line) for line in (source / "corpus.jsonl").open(encoding="utf-8")]
    others = [row["_id"] for row in corpus if row["_id"] not in relevant]
    chosen = relevant | set(random.Random(SEED).sample(others, DOCUMENTS - len(relevant)))
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    with (target / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for row in corpus:
            if row["_id"] in chosen:
                out.write(json.dumps({"_id": row["_id"], "title": row["title"], "text": row["text"]}) + "\n")
    with (target / "queries.jsonl").open("w", encoding="utf-8") as out:
        for line in (source / "queries.jsonl").open(encoding="utf-8"):
            row = json.loads(line)
            if row["_id"] in query_ids:
                out.write(json.dumps({"_id": row["_id"], "text": row["text"]}) + "\n")
    with (target / "qrels" / "test.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        out.writelines("\t".join(row) + "\n" for row in kept_qrels)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
