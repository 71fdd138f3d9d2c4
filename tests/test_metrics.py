"""Metrics equal pytrec_eval's to 1e-6 on random runs with graded judgments."""

from __future__ import annotations

import random

import pytest

from latepool.evaluation.metrics import mean_metrics, per_query_metrics, ranked

pytrec_eval = pytest.importorskip("pytrec_eval")


def random_case(seed: int, ties: bool) -> tuple[dict, dict]:
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(300)]
    run, qrels = {}, {}
    for q in range(25):
        query = f"q{q}"
        retrieved = rng.sample(docs, rng.randint(1, 150))
        run[query] = {d: (round(rng.random(), 1) if ties else rng.random()) for d in retrieved}
        judged = rng.sample(docs, rng.randint(1, 30))
        qrels[query] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        qrels[query][rng.choice(judged)] = rng.randint(1, 3)  # at least one relevant
    return run, qrels


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_pytrec_eval(seed: int, ties: bool) -> None:
    run, qrels = random_case(seed, ties)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "map_cut.100", "recall.10", "recall.100"})
    reference = evaluator.evaluate(run)
    top10 = {q: {d: scores[d] for d in ranked(scores)[:10]} for q, scores in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    ours = per_query_metrics(run, qrels)
    for query in qrels:
        assert ours[query]["ndcg@10"] == pytest.approx(reference[query]["ndcg_cut_10"], abs=1e-6)
        assert ours[query]["map@100"] == pytest.approx(reference[query]["map_cut_100"], abs=1e-6)
        assert ours[query]["recall@10"] == pytest.approx(reference[query]["recall_10"], abs=1e-6)
        assert ours[query]["recall@100"] == pytest.approx(reference[query]["recall_100"], abs=1e-6)
        assert ours[query]["mrr@10"] == pytest.approx(mrr[query]["recip_rank"], abs=1e-6)


def test_mean_and_missing_queries() -> None:
    qrels = {"a": {"x": 1}, "b": {"y": 2}}
    means = mean_metrics({"a": {"x": 1.0, "z": 0.5}}, qrels)  # b not retrieved: scores 0
    assert means["mrr@10"] == 0.5 and means["recall@10"] == 0.5
    with pytest.raises(ValueError, match="no judged query"):
        mean_metrics({}, {})
