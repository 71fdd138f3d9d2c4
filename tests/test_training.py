"""Mining, teacher scoring and selection, the pooling-aware loss, and `latepool mine/score/train` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("datasets")

from sentence_transformers import MultiVectorEncoder, SentenceTransformer  # noqa: E402

from latepool.cli import main  # noqa: E402
from latepool.data import load_beir  # noqa: E402
from latepool.models import build_colbert  # noqa: E402
from latepool.pooling import pool_documents  # noqa: E402
from latepool.training.examples import build_examples  # noqa: E402
from latepool.training.loss import PooledMaxSimScores, PoolingDistillKLDivLoss  # noqa: E402
from latepool.training.mining import MinedQuery, mine_negatives  # noqa: E402
from latepool.training.teacher_scores import Selection, select_candidates  # noqa: E402
from latepool.training.teachers import detect_teacher_type  # noqa: E402


@pytest.fixture(scope="module")
def retriever(tiny_bert_dir: Path) -> SentenceTransformer:
    return SentenceTransformer(str(tiny_bert_dir), device="cpu")


def test_mining_excludes_positives_and_is_deterministic(beir_dir: Path, retriever) -> None:
    dataset = load_beir(beir_dir, "test")
    mined = mine_negatives(dataset, retriever, hard_negatives=4, random_negatives=3, seed=1, show_progress_bar=False)
    assert [m.query_id for m in mined] == ["q1", "q2", "q3", "q4"]  # every query has a positive
    for row in mined:
        positives = {d for d, g in dataset.qrels[row.query_id].items() if g > 0}
        assert set(row.positive_ids) == positives
        assert not positives & set(row.hard_negative_ids + row.random_negative_ids)
        assert len(row.hard_negative_ids) == 4 and len(row.random_negative_ids) == 3
        assert not set(row.hard_negative_ids) & set(row.random_negative_ids)
    assert "d6" not in mined[1].positive_ids  # grade 0 is not a positive
    again = mine_negatives(dataset, retriever, hard_negatives=4, random_negatives=3, seed=1, show_progress_bar=False)
    assert again == mined
    dataset.query_ids.reverse()
    dataset.query_texts.reverse()
    reordered = mine_negatives(
        dataset, retriever, hard_negatives=4, random_negatives=3, seed=1, show_progress_bar=False
    )
    assert {m.query_id: m for m in reordered} == {m.query_id: m for m in mined}  # no dependence on query order
    other = mine_negatives(dataset, retriever, hard_negatives=4, random_negatives=3, seed=2, show_progress_bar=False)
    assert [m.random_negative_ids for m in other] != [m.random_negative_ids for m in reordered]


def test_selection_rules_on_a_hand_made_example() -> None:
    mined = MinedQuery(
        query_id="q",
        positive_ids=["p1", "p2"],
        hard_negative_ids=[f"h{i}" for i in range(12)],
        random_negative_ids=["r0", "r1", "r2", "h0"],
    )
    scores = {"p1": 10.0, "p2": 8.0}  # median positive 9 -> negatives above 8.55 are dropped
    scores.update({f"h{i}": 8.0 - 0.5 * i for i in range(12)})
    scores.update({"h0": 9.0, "h1": 8.6, "r0": 1.0, "r1": 0.5, "r2": 0.2})
    row = select_candidates(mined, scores, Selection(hard=3, medium=2, random=2))
    assert row.document_ids[0] == "p1" and row.labels[0] == "positive"  # only the best positive
    assert "h0" not in row.document_ids and "h1" not in row.document_ids and "p2" not in row.document_ids
    labelled = dict(zip(row.document_ids, row.labels))
    assert [d for d, lab in labelled.items() if lab == "hard_negative"] == ["h2", "h3", "h4"]
    assert [d for d, lab in labelled.items() if lab == "medium_negative"] == ["h5", "h6"]
    assert [d for d, lab in labelled.items() if lab == "random_negative"] == ["r0", "r1"]
    assert row.scores == sorted(row.scores, reverse=True)
    short = MinedQuery("q", ["p1"], ["h2", "h3"], ["r0", "r1", "r2"])
    backfilled = select_candidates(short, scores, Selection(hard=2, medium=2, random=2))
    assert len(backfilled.document_ids) == 1 + 5  # 2 hard, 0 medium, 2 random, 1 backfilled random
    assert backfilled.labels.count("random_negative") == 3


def test_pool_factor_draws_stay_in_the_set_and_are_seeded() -> None:
    draws = [PooledMaxSimScores("kmeans", [1, 2, 4], seed=3).draw_pool_factor() for _ in range(1)]
    scorer = PooledMaxSimScores("kmeans", [1, 2, 4], seed=3)
    sequence = [scorer.draw_pool_factor() for _ in range(200)]
    assert set(sequence) == {1.0, 2.0, 4.0} and draws[0] == sequence[0]
    replay = PooledMaxSimScores("kmeans", [1, 2, 4], seed=3)
    assert [replay.draw_pool_factor() for _ in range(200)] == sequence
    assert [PooledMaxSimScores("kmeans", [1, 2, 4], seed=4).draw_pool_factor() for _ in range(200)] != sequence
    with pytest.raises(ValueError, match="pool_method"):
        PooledMaxSimScores("median")


def hand_loss(model, queries, columns, teacher, method: str, pool_factor: float) -> float:
    """KL(softmax(teacher) || softmax(minmax(MaxSim))) with explicit loops."""
    total = 0.0
    for qi, query in enumerate(queries):
        q = model.encode_query([query], convert_to_numpy=False)[0]
        scores = []
        for column in columns:
            d = model.encode_document([column[qi]], convert_to_numpy=False)[0]
            if pool_factor > 1:
                d = pool_documents([d], method=method, pool_factor=pool_factor)[0]
            scores.append(sum(max(float(q[t] @ d[s]) for s in range(len(d))) for t in range(len(q))))
        low, high = min(scores), max(scores)
        student = [(s - low) / (high - low) for s in scores]
        log_z_s = math.log(sum(math.exp(s) for s in student))
        log_z_t = math.log(sum(math.exp(t) for t in teacher[qi]))
        for s, t in zip(student, teacher[qi]):
            p_t = math.exp(t - log_z_t)
            total += p_t * ((t - log_z_t) - (s - log_z_s))
    return total / len(queries)


@pytest.mark.parametrize(("method", "pool_factor"), [("kmeans", 1), ("span", 2), ("kmeans", 3)])
def test_loss_equals_hand_computation(tiny_bert_dir: Path, method: str, pool_factor: float) -> None:
    model = build_colbert(tiny_bert_dir, embedding_dim=8, query_length=8, document_length=32, device="cpu")
    model.eval()
    queries = ["protein expression in human cells", "blood levels in mice"]
    columns = [
        ["the protein expression was increased in human cells", "mice with lower blood levels and more risk"],
        ["cancer risk was higher in patients with the gene", "effects of treatment on blood and brain"],
        ["this abstract does not support the claim", "genes and protein levels were reduced"],
    ]
    teacher = [[3.0, 1.0, -1.0], [2.0, 2.5, 0.0]]
    loss = PoolingDistillKLDivLoss(model, pool_method=method, pool_factors=[pool_factor])
    features = [model.preprocess(queries, task="query")] + [model.preprocess(c, task="document") for c in columns]
    for f, task in zip(features, ["query"] + ["document"] * 3):
        f["task"] = task
    with torch.no_grad():
        value = float(loss(features, torch.tensor(teacher)))
    assert value == pytest.approx(hand_loss(model, queries, columns, teacher, method, pool_factor), rel=1e-4, abs=1e-6)


def test_examples_count_and_skip_bad_rows(beir_dir: Path) -> None:
    dataset = load_beir(beir_dir, "test")
    good = {
        "query_id": "q1",
        "document_ids": ["d0", "d3", "d4", "d5"],
        "scores": [4.0, 3.0, 2.0, 1.0],
        "labels": ["positive", "hard_negative", "medium_negative", "random_negative"],
    }
    rows = [
        good,
        {**good, "scores": [1.0, 2.0]},  # inconsistent lengths
        {**good, "labels": ["hard_negative"] * 4},  # no positive
        {**good, "query_id": "unknown"},
        {**good, "document_ids": ["d0", "d3", "zz", "d5"]},  # one id missing: too few documents left
    ]
    examples = build_examples(rows, dataset, n_ways=4)
    assert len(examples) == 1
    assert examples.skipped == {
        "inconsistent_lengths": 1,
        "no_positive": 1,
        "unknown_query": 1,
        "documents_missing_from_corpus": 1,
        "fewer_than_n_ways": 1,
    }
    assert examples.columns["label"] == [[4.0, 3.0, 2.0, 1.0]]
    assert examples.columns["document_1"][0].startswith("Protein study")
    with pytest.raises(ValueError, match="no usable training example"):
        build_examples(rows[1:], dataset, n_ways=4)


def test_teacher_type_detection(tiny_bert_dir: Path, tiny_pylate_dir: Path, tmp_path: Path) -> None:
    assert detect_teacher_type("minilm") == "bi-encoder"
    assert detect_teacher_type(str(tiny_pylate_dir)) == "colbert"
    config = json.loads((tiny_bert_dir / "config.json").read_text())
    for architecture, kind in (
        ("BertForSequenceClassification", "cross-encoder"),
        ("GemmaForCausalLM", "llm-reranker"),
    ):
        directory = tmp_path / architecture
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps({**config, "architectures": [architecture]}))
        assert detect_teacher_type(str(directory)) == kind
    with pytest.raises(ValueError, match="--teacher-type"):
        detect_teacher_type(str(tiny_bert_dir))


def test_mine_score_train_end_to_end(
    tiny_bert_dir: Path, tiny_pylate_dir: Path, beir_dir: Path, tmp_path: Path
) -> None:
    mined, scores, output = tmp_path / "mined", tmp_path / "scores", tmp_path / "model"
    assert (
        main(
            [
                "mine",
                "--data",
                str(beir_dir),
                "--split",
                "test",
                "--retriever",
                str(tiny_bert_dir),
                "--hard-negatives",
                "6",
                "--random-negatives",
                "3",
                "--output",
                str(mined),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "score",
                "--mined",
                str(mined),
                "--data",
                str(beir_dir),
                "--split",
                "test",
                "--teacher",
                str(tiny_pylate_dir),
                "--hard",
                "2",
                "--medium",
                "2",
                "--random",
                "2",
                "--keep-false-negatives",
                "--output",
                str(scores),
            ]
        )
        == 0
    )
    from latepool.training.datasets_io import load_table

    table = load_table(scores)
    assert not (tmp_path / "scores.partial").exists()  # checkpoint shards removed once the output is saved
    assert set(table.column_names) >= {"query_id", "document_ids", "scores", "labels"}
    assert all(len(labels) == 7 and labels.count("positive") == 1 for labels in table["labels"])
    assert all(s == sorted(s, reverse=True) for s in table["scores"])

    student = MultiVectorEncoder(str(tiny_pylate_dir), device="cpu")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_pylate_dir),
                "--scores",
                str(scores),
                "--data",
                str(beir_dir),
                "--split",
                "test",
                "--n-ways",
                "4",
                "--batch-size",
                "2",
                "--max-steps",
                "2",
                "--lr",
                "1e-3",
                "--query-length",
                "12",
                "--document-length",
                "64",
                "--pool-factors",
                "1-3",
                "--device",
                "cpu",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    trained = MultiVectorEncoder(str(output), device="cpu")
    after = trained.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
    record = json.loads((output / "latepool_training.json").read_text())
    assert record["global_step"] == 2 and record["training"]["pool_factors"] == [1, 2, 3]
    card = (output / "README.md").read_text()
    assert "latepool pooling-aware training" in card and "kmeans" in card
    texts = ["protein expression in human cells", "blood levels in mice"]
    again = MultiVectorEncoder(str(output), device="cpu")
    for a, b in zip(trained.encode_document(texts), again.encode_document(texts)):
        assert torch.equal(a, b)


def test_interrupted_scoring_resumes_without_rescoring(beir_dir: Path, tmp_path: Path) -> None:
    from latepool.training.teacher_scores import score_mined

    dataset = load_beir(beir_dir, "test")
    mined = [
        MinedQuery(q, [d for d, g in dataset.qrels[q].items() if g > 0], ["d1", "d2", "d4"], ["d7", "d8"])
        for q in dataset.query_ids
    ]
    calls: list[str] = []

    def teacher(query: str, documents: list[str]) -> list[float]:
        calls.append(query)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [float(len(d)) for d in documents]

    with pytest.raises(KeyboardInterrupt):
        score_mined(mined, dataset, teacher, tmp_path / "scores", shard_size=1, show_progress_bar=False)
    calls.clear()
    rows = score_mined(mined, dataset, teacher, tmp_path / "scores", shard_size=1, show_progress_bar=False)
    assert len(calls) == 2  # the two finished queries were not scored again
    assert [r.query_id for r in rows] == dataset.query_ids


def test_interrupted_training_resumes_from_its_checkpoint(
    tiny_pylate_dir: Path, beir_dir: Path, tmp_path: Path
) -> None:
    rows = [
        {
            "query_id": q,
            "document_ids": ids,
            "scores": [3.0, 2.0, 1.0],
            "labels": ["positive", "hard_negative", "random_negative"],
        }
        for q, ids in (("q1", ["d0", "d3", "d4"]), ("q2", ["d3", "d0", "d9"]), ("q3", ["d10", "d1", "d2"]))
    ]
    path = tmp_path / "scores.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    arguments = [
        "train",
        "--model",
        str(tiny_pylate_dir),
        "--scores",
        str(path),
        "--data",
        str(beir_dir),
        "--split",
        "test",
        "--n-ways",
        "3",
        "--batch-size",
        "1",
        "--save-steps",
        "1",
        "--query-length",
        "12",
        "--document-length",
        "64",
        "--device",
        "cpu",
        "--output",
        str(tmp_path / "model"),
    ]
    assert main([*arguments, "--max-steps", "2"]) == 0
    assert (tmp_path / "model" / "checkpoints" / "checkpoint-2").is_dir()
    assert main([*arguments, "--max-steps", "3"]) == 0
    record = json.loads((tmp_path / "model" / "latepool_training.json").read_text())
    assert record["resumed"] is True and record["global_step"] == 3


def test_llm_reranker_teacher_scores_the_yes_logit(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from latepool.training.teachers import LLMRerankerTeacher

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    directory = tmp_path / "llm"
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    assert detect_teacher_type(str(directory)) == "llm-reranker"
    teacher = LLMRerankerTeacher(str(directory), device="cpu", batch_size=2)
    documents = ["the protein expression was increased", "blood levels", "mice"]
    scores = teacher.score("protein in cells", documents)
    assert len(scores) == 3
    model = LlamaForCausalLM.from_pretrained(directory).eval()
    for document, score in zip(documents, scores):
        inputs = teacher.tokenizer(teacher.prompt("protein in cells", document), return_tensors="pt")
        with torch.no_grad():
            expected = model(**inputs).logits[0, -1, teacher.yes_id].item()
        assert score == pytest.approx(expected, abs=1e-4)  # left padding does not change the last logit
    assert teacher.prompt("q", "p").startswith("A: q\nB: p\nGiven a query A and a passage B")


def test_embedding_teachers_encode_each_document_once(tiny_pylate_dir: Path) -> None:
    from latepool.training.teachers import ColBERTTeacher

    teacher = ColBERTTeacher(str(tiny_pylate_dir), device="cpu")
    calls: list[int] = []
    encode = teacher._encode
    teacher._encode = lambda texts: calls.append(len(texts)) or encode(texts)
    documents = ["protein expression in cells", "blood levels", "mice"]
    first = teacher.score("protein", documents)
    second = teacher.score("protein", [documents[2], documents[0], "a new document"])
    assert calls == [3, 1]  # only the unseen document is encoded the second time
    expected = teacher.model.similarity(
        teacher.model.encode_query(["protein"]), teacher.model.encode_document(documents)
    )
    assert first == pytest.approx(expected[0].tolist(), abs=1e-5)
    assert second[:2] == pytest.approx([first[2], first[0]], abs=1e-6)


def test_mine_and_score_can_be_limited_for_a_quick_run(tiny_bert_dir: Path, beir_dir: Path, tmp_path: Path) -> None:
    from latepool.data import load_dataset
    from latepool.training.datasets_io import load_mined, load_table

    mined, scores = tmp_path / "mined", tmp_path / "scores"
    common = ["--data", str(beir_dir), "--split", "test"]
    limits = ["--max-queries", "2", "--max-documents", "12", "--hard-negatives", "3", "--random-negatives", "2"]
    assert main(["mine", *common, "--retriever", str(tiny_bert_dir), *limits, "--output", str(mined)]) == 0
    rows = load_mined(mined)
    first = load_dataset(beir_dir, split="test").subset(max_queries=2, max_documents=12)
    assert {r.query_id for r in rows} <= set(first.query_ids) and len(first.corpus_ids) == 12
    assert all(set(r.hard_negative_ids + r.random_negative_ids) <= set(first.corpus_ids) for r in rows)
    score = ["--teacher", str(tiny_bert_dir), "--teacher-type", "bi-encoder", "--hard", "1", "--medium", "1"]
    score += ["--random", "1", "--max-queries", "1"]
    assert main(["score", "--mined", str(mined), *common, *score, "--output", str(scores)]) == 0
    assert len(load_table(scores)) == 1
    assert main(["mine", *common, "--retriever", str(tiny_bert_dir), "--max-queries", "0", "--output", "x"]) == 2
