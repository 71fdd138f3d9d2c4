"""``latepool serve`` through the real uvicorn server on localhost: keys, read-only, limits, errors, concurrency."""

from __future__ import annotations

import argparse
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from latepool.cli import main
from latepool.data import read_corpus
from latepool.index import Index
from latepool.models import build_colbert

httpx = pytest.importorskip("httpx")
server = pytest.importorskip("latepool.index.server")
ServerConfig, check_bind, create_app = server.ServerConfig, server.check_bind, server.create_app
KEY = "correct horse battery staple"


@pytest.fixture(scope="module")
def tiny_model(tiny_bert_dir):
    return build_colbert(tiny_bert_dir, embedding_dim=16, query_length=12, document_length=64, device="cpu")


@pytest.fixture
def index(tiny_model, beir_dir: Path, tmp_path: Path) -> Index:
    ids, texts = read_corpus(beir_dir / "corpus.jsonl")
    return Index.build(tmp_path / "idx", tiny_model, ids, texts, show_progress_bar=False)


def post(client, path: str, body: dict, key: str | None = None, header: str = "bearer"):
    headers = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-API-Key": key}
    return client.post(path, json=body, headers=headers)


def test_a_key_guards_the_write_endpoints(index: Index, running_server) -> None:
    document = {"documents": [{"id": "n1", "text": "mice protein"}]}
    with running_server(create_app(index, ServerConfig(api_key=KEY))) as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").status_code == 200  # reads stay open on loopback
        assert post(client, "/search", {"query": "protein"}).status_code == 200
        missing = post(client, "/add", document)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "error" in missing.json()
        assert post(client, "/add", document, key="wrong").status_code == 403
        assert post(client, "/add", document, key=KEY, header="x-api-key").status_code == 200
        assert post(client, "/delete", {"ids": ["n1"]}).status_code == 401
        assert post(client, "/delete", {"ids": ["n1"]}, key=KEY[:-1]).status_code == 403
        assert post(client, "/delete", {"ids": ["n1"]}, key=KEY).json()["deleted"] == 1


def test_beyond_loopback_a_key_is_needed_everywhere_or_the_server_is_refused(index: Index, running_server) -> None:
    with pytest.raises(ValueError, match="exposes the index"):
        check_bind("0.0.0.0", None)
    assert check_bind("::", None, public_read_only=True) == ServerConfig(read_only=True)
    assert check_bind("127.0.0.1", None) == ServerConfig()
    config = check_bind("0.0.0.0", KEY)
    assert config.keyed_reads
    with running_server(create_app(index, config)) as url, httpx.Client(base_url=url) as client:
        assert client.get("/health").status_code == 401
        assert post(client, "/search", {"query": "protein"}).status_code == 401
        assert post(client, "/search", {"query": "protein"}, key="nope").status_code == 403
        assert post(client, "/search", {"query": "protein"}, key=KEY).status_code == 200
        assert client.get("/health", headers={"X-API-Key": KEY}).json()["documents"] == 12


def test_serve_command_refuses_an_exposed_server_without_a_key(index: Index, monkeypatch, capsys) -> None:
    monkeypatch.delenv("LATEPOOL_API_KEY", raising=False)
    assert main(["serve", "--index", str(index.path), "--host", "0.0.0.0"]) == 2
    assert "--public-read-only" in capsys.readouterr().err


def test_read_only_server_refuses_writes(index: Index, running_server) -> None:
    with running_server(create_app(index, ServerConfig(read_only=True))) as url, httpx.Client(base_url=url) as client:
        assert post(client, "/add", {"documents": [{"id": "n", "text": "t"}]}).status_code == 403
        assert post(client, "/delete", {"ids": ["d0"]}).status_code == 403
        assert post(client, "/search", {"query": "protein"}).status_code == 200
        assert client.get("/health").json()["read_only"] is True
    assert len(index) == 12


def test_oversized_bodies_get_413_before_the_rest_is_read(index: Index, running_server) -> None:
    config = ServerConfig(max_body_bytes=1000)
    with running_server(create_app(index, config)) as url:
        with httpx.Client(base_url=url) as client:
            assert post(client, "/search", {"query": "x" * 2000}).status_code == 413
            chunks = (b'{"query": "' + b"x" * 500 for _ in range(4))  # chunked: no content-length
            assert client.post("/search", content=chunks).status_code == 413
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            # Announce 100 MB, send 10 bytes: the answer must come without the rest.
            raw.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            raw.sendall(b"Content-Length: 100000000\r\n\r\n" + b'{"query": ')
            status_line = raw.recv(4096).split(b"\r\n", 1)[0]
        assert b" 413 " in status_line


def test_limits_and_error_statuses(index: Index, running_server) -> None:
    config = ServerConfig(max_documents=2, max_queries=3, max_query_chars=50, max_k=20)
    with running_server(create_app(index, config)) as url, httpx.Client(base_url=url) as client:
        three = [{"id": f"n{i}", "text": "mice"} for i in range(3)]
        assert post(client, "/add", {"documents": three}).status_code == 400
        assert post(client, "/search", {"queries": ["a", "b", "c", "d"]}).status_code == 400
        assert post(client, "/search", {"query": "x" * 51}).status_code == 400
        assert post(client, "/search", {"query": "x", "k": 21}).status_code == 400
        assert post(client, "/search", {"queries": [""]}).status_code == 400
        assert client.post("/search", content=b"{not json").status_code == 400
        assert post(client, "/add", {"documents": [{"id": 5}]}).status_code == 400
        assert post(client, "/add", {"documents": [{"id": "d0", "text": "again"}]}).status_code == 409
        assert post(client, "/delete", {"ids": ["nope"]}).status_code == 404
        for response in (client.get("/search"), client.get("/nowhere")):
            assert response.status_code in (404, 405) and "error" in response.json()


def test_a_server_side_fault_is_a_500_not_the_clients_fault(index: Index, tiny_bert_dir, running_server) -> None:
    other = build_colbert(tiny_bert_dir, embedding_dim=8, query_length=12, document_length=64, device="cpu")
    broken = Index.open(index.path, model=other)  # a model that does not match the index: the operator's fault
    with running_server(create_app(broken)) as url, httpx.Client(base_url=url) as client:
        response = post(client, "/search", {"query": "protein"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}


def test_searches_during_an_add_and_a_delete_see_whole_states(index: Index, running_server) -> None:
    new = [{"id": f"n{i}", "text": f"mice brain protein study {i}"} for i in range(8)]
    with running_server(create_app(index)) as url, httpx.Client(base_url=url, timeout=60) as client:

        def ids() -> frozenset[str]:
            return frozenset(h["id"] for h in post(client, "/search", {"query": "mice", "k": 100}).json()["results"][0])

        before = ids()
        writes = [
            threading.Thread(target=lambda: post(client, "/add", {"documents": new})),
            threading.Thread(target=lambda: post(client, "/delete", {"ids": ["d5", "d10"]})),
        ]
        seen: set[frozenset[str]] = set()
        for thread in writes:
            thread.start()
        while any(t.is_alive() for t in writes) or len(seen) < 2:
            seen.add(ids())
        for thread in writes:
            thread.join()
        after = ids()
    added, deleted = {d["id"] for d in new}, {"d5", "d10"}
    assert after == (before | added) - deleted
    whole = {before, before | added, before - deleted, after}
    assert seen <= whole  # never a half-applied add or delete
    assert set(Index.open(index.path).ids) == set(after)  # nothing lost on disk either


def test_a_thousand_searches_from_eight_clients_without_error(index: Index, running_server) -> None:
    with running_server(create_app(index)) as url:

        def client_run(worker: int) -> list[int]:
            with httpx.Client(base_url=url, timeout=60) as client:
                return [
                    post(client, "/search", {"query": f"protein {worker} {i}", "k": 5}).status_code for i in range(125)
                ]

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(client_run, range(8)) for s in batch]
    assert len(statuses) == 1000 and set(statuses) == {200}


def test_server_config_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        ServerConfig(max_body_bytes=0)
    with pytest.raises(ValueError, match="empty"):
        ServerConfig(api_key=" ")
    with pytest.raises(ValueError, match="keyed_reads"):
        replace(ServerConfig(), keyed_reads=True)


def test_the_server_serves_what_another_process_committed(index: Index, tiny_model, running_server) -> None:
    with running_server(create_app(index)) as url, httpx.Client(base_url=url, timeout=60) as client:
        before = client.get("/health").json()["documents"]
        other = Index.open(index.path, model=tiny_model)  # another writer on the same directory
        other.add(["elsewhere"], ["mice protein added by latepool index add"], show_progress_bar=False)
        assert client.get("/health").json()["documents"] == before + 1
        hits = post(client, "/search", {"query": "mice protein added", "k": before + 1}).json()["results"][0]
        assert "elsewhere" in {h["id"] for h in hits}
        other.delete(["elsewhere"])
        assert post(client, "/add", {"documents": [{"id": "elsewhere", "text": "again"}]}).status_code == 200


def test_booleans_must_be_json_booleans(index: Index, running_server) -> None:
    document = {"documents": [{"id": "d0", "text": "replaced"}]}
    with running_server(create_app(index)) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert post(client, "/add", {**document, "replace": "false"}).status_code == 400
        assert post(client, "/add", {**document, "replace": 0}).status_code == 400
        assert post(client, "/add", {**document, "replace": None}).status_code == 400
        assert post(client, "/search", {"query": "mice", "candidates": "true"}).status_code == 400
        assert post(client, "/search", {"query": "mice", "candidates": None}).status_code == 200
        assert post(client, "/add", {**document, "replace": True}).status_code == 200


def test_concurrent_searches_share_encoding_passes_and_get_their_own_results(index: Index, running_server) -> None:
    queries = [f"mice protein brain {i}" for i in range(24)]
    alone = [[h.id for h in row] for row in index.search(queries, k=5)]
    app = create_app(index, ServerConfig(max_batch_queries=8))
    with running_server(app) as url:

        def ask(query: str) -> list[str]:
            with httpx.Client(base_url=url, timeout=60) as client:
                return [h["id"] for h in post(client, "/search", {"query": query, "k": 5}).json()["results"][0]]

        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(ask, queries))
    assert answered == alone  # each request gets its own query's hits
    assert app.state.batcher.passes < len(queries)  # and requests shared passes
    idle = create_app(index, ServerConfig(max_batch_queries=1))
    with running_server(idle) as url, httpx.Client(base_url=url, timeout=60) as client:
        for query in queries[:3]:
            assert post(client, "/search", {"query": query}).status_code == 200
    assert idle.state.batcher.passes == 3


def test_a_server_over_qdrant_answers_as_the_index_and_passes_writes_on(index: Index, running_server, tmp_path) -> None:
    pytest.importorskip("qdrant_client")
    from latepool.index.qdrant import QdrantCollection, connect, export_index

    client = connect(path=str(tmp_path / "qdrant"))
    export_index(index, client, "docs")
    # the default search (graph candidates, then MaxSim): each query token's 100 nearest vectors reach
    # every document of so small a collection, so the results are exact
    collection = QdrantCollection.open(client, "docs", dim=16)
    queries = ["mice protein", "heart attack risk"]
    expected = [[h.id for h in row] for row in index.search(queries, 5, candidates=False)]
    try:
        app = create_app(index, ServerConfig(), qdrant=collection)
        with running_server(app) as url, httpx.Client(base_url=url) as http:
            found = post(http, "/search", {"queries": queries, "k": 5}).json()["results"]
            assert [[h["id"] for h in row] for row in found] == expected
            assert post(http, "/add", {"documents": [{"id": "n1", "text": "mice protein mice"}]}).status_code == 200
            assert post(http, "/delete", {"ids": [expected[1][0]]}).json()["deleted"] == 1
            health = http.get("/health").json()
            after = post(http, "/search", {"query": "mice protein mice", "k": 12}).json()["results"][0]
        assert health["qdrant"] == {"collection": "docs", "documents": 12} and health["documents"] == 12
        assert {h["id"] for h in after} == set(index.ids)  # the add and the delete reached Qdrant
    finally:
        client.close()
    from latepool.commands.search import _search_qdrant  # latepool search --qdrant-path, on the same store

    args = argparse.Namespace(collection="docs", url=None, qdrant_path=str(tmp_path / "qdrant"), qdrant_api_key=None)
    found = _search_qdrant(index, argparse.Namespace(**vars(args), prefetch=0), queries, 5)
    assert [[h.id for h in row] for row in found] == [
        [h.id for h in r] for r in index.search(queries, 5, candidates=False)
    ]


def test_a_server_over_qdrant_reports_a_missing_collection_or_a_dead_server(index: Index, tmp_path, capsys) -> None:
    pytest.importorskip("qdrant_client")
    common = ["serve", "--index", str(index.path), "--collection", "nothing"]
    assert main([*common, "--qdrant-path", str(tmp_path / "qdrant")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main([*common, "--qdrant-url", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "Qdrant did not answer" in err and "Traceback" not in err
    assert main(["serve", "--index", str(index.path), "--qdrant-path", str(tmp_path / "q")]) == 2
    assert "needs --collection" in capsys.readouterr().err
