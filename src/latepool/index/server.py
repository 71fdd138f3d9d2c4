"""``latepool serve``: an HTTP JSON API over an index (Starlette on uvicorn).

Endpoints (JSON in, JSON out):

- ``GET /health`` -> ``{"status": "ok", "documents": N, "vectors": M, "read_only": bool}``
- ``POST /search`` ``{"queries": ["..."], "k": 10, "candidates": null}`` (or ``"query": "..."``;
  ``candidates``: true / false forces the candidate stage or the exact scan, null chooses)
  -> ``{"results": [[{"id": ..., "score": ...}, ...], ...]}``
- ``POST /add`` ``{"documents": [{"id": ..., "text": ..., "title": ...}], "replace": false}``
- ``POST /delete`` ``{"ids": [...]}``

Security model (see :class:`ServerConfig`):

- An API key, sent as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` and compared in constant
  time. With a key, ``/add`` and ``/delete`` need it; a server bound to a non-loopback address
  needs it on every endpoint (:func:`check_bind` refuses to start such a server without a key
  unless it is explicitly public and read-only). No key: 401; a wrong key: 403.
- ``read_only`` answers the write endpoints with 403.
- Limits: the request body (413 as soon as it is known to be too large, before the rest is read),
  documents per ``/add``, queries per ``/search`` and characters per query (400).
- Every answer is JSON. Client errors are 4xx (400 bad input, 404 unknown ids, 409 existing ids);
  anything else is the server's fault: 500 with a generic message (details go to the log).

The queries of concurrent ``/search`` requests are encoded together (:class:`QueryBatcher`): one
model pass serves many small requests, and an idle server encodes a lone request at once.
Index work runs in worker threads; searches read an immutable snapshot, so searches running while
an add or delete commits see the index before or after it, never a mix. Before each request the
server moves to the latest commit (one ``stat`` when nothing changed), so what another process
commits, ``latepool index add`` on the same directory say, is served without a restart.

Example::

    from latepool.index import Index
    from latepool.index.server import ServerConfig, create_app

    app = create_app(Index.open("scifact.idx"), ServerConfig(api_key="s3cret", read_only=False))
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Any

from latepool.extras import require

require("server", "latepool serve")

from starlette.applications import Starlette  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from latepool.data import document_text  # noqa: E402
from latepool.index.errors import DocumentsExistError, DocumentsNotFoundError, IndexInputError  # noqa: E402
from latepool.index.index import Index  # noqa: E402
from latepool.index.qdrant import QdrantCollection, QdrantUnavailableError  # noqa: E402

logger = logging.getLogger(__name__)
API_KEY_ENV = "LATEPOOL_API_KEY"


@dataclass(frozen=True)
class ServerConfig:
    """What the server accepts, and from whom.

    Attributes:
        api_key: The key clients send (None: no key).
        keyed_reads: Require the key on every endpoint, not only on ``/add`` and ``/delete``
            (set for servers bound beyond loopback).
        read_only: Refuse ``/add`` and ``/delete`` (403).
        max_body_bytes: Largest request body (413 above it). Default 4 MiB.
        max_documents: Documents per ``/add``. Default 1,000.
        max_queries: Queries per ``/search``. Default 256.
        max_query_chars: Characters per query. Default 2,000.
        max_k: Largest ``k``. Default 1,000.
        max_batch_queries: Queries of concurrent ``/search`` requests encoded in one pass (see
            :class:`QueryBatcher`; 1: each request encodes its own). Default 32.
    """

    api_key: str | None = None
    keyed_reads: bool = False
    read_only: bool = False
    max_body_bytes: int = 4 * 1024 * 1024
    max_documents: int = 1000
    max_queries: int = 256
    max_query_chars: int = 2000
    max_k: int = 1000
    max_batch_queries: int = 32

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty")
        if self.keyed_reads and self.api_key is None:
            raise ValueError("keyed_reads needs an api_key")
        for name in (
            "max_body_bytes",
            "max_documents",
            "max_queries",
            "max_query_chars",
            "max_k",
            "max_batch_queries",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class QueryBatcher:
    """Encodes the queries of concurrent requests together: one model pass for many small requests.

    No request waits for a timer. While no encoding runs, a request's queries are encoded at once,
    so an idle server answers as fast as without batching; while one runs, the requests that arrive
    queue up and are encoded together when it ends, up to ``max_queries`` per pass.

    Args:
        encode: Encodes a list of query texts into a list of ``(len, dim)`` tensors (blocking).
        max_queries: Queries per pass (at least each request's own).

    Example::

        batcher = QueryBatcher(index.encode_queries)
        embeddings = await batcher.encode(["what causes cancer?"])
    """

    def __init__(self, encode, max_queries: int = 32) -> None:
        self._encode = encode
        self.max_queries = max_queries
        self._waiting: list[tuple[list[str], asyncio.Future]] = []
        self._running = False
        self.passes = 0  # encoding passes so far (for tests and monitoring)

    async def encode(self, queries: list[str]) -> list:
        """The embeddings of ``queries``, encoded in a pass shared with other waiting requests.

        With ``max_queries`` 1 every request encodes on its own thread at once, as without a batcher.
        """
        if self.max_queries == 1:
            self.passes += 1
            return await run_in_threadpool(self._encode, queries)
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((queries, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, size = [], 0
                while self._waiting and (not batch or size + len(self._waiting[0][0]) <= self.max_queries):
                    batch.append(self._waiting.pop(0))
                    size += len(batch[-1][0])
                texts = [text for queries, _ in batch for text in queries]
                try:
                    embeddings = await run_in_threadpool(self._encode, texts)
                except Exception as error:  # every request of the pass gets the error
                    for _, future in batch:
                        future.set_exception(error)
                    continue
                self.passes += 1
                start = 0
                for queries, future in batch:
                    future.set_result(list(embeddings[start : start + len(queries)]))
                    start += len(queries)
        finally:
            self._running = False


class RequestError(Exception):
    """A client error, answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine.

    Example::

        >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("10.0.0.5")
        (True, True, False, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def check_bind(host: str, api_key: str | None, public_read_only: bool = False) -> ServerConfig:
    """The server configuration for binding ``host``; refuses an exposed server that anyone could change.

    Args:
        host: The bind address.
        api_key: The key (None: none).
        public_read_only: The user's explicit request for a key-less, read-only server beyond loopback.

    Returns:
        A :class:`ServerConfig` with ``keyed_reads`` set beyond loopback, ``read_only`` when public.

    Raises:
        ValueError: A non-loopback bind without a key and without ``public_read_only``.
    """
    if is_loopback(host):
        return ServerConfig(api_key=api_key, read_only=public_read_only)
    if api_key is not None:
        return ServerConfig(api_key=api_key, keyed_reads=True, read_only=public_read_only)
    if public_read_only:
        return ServerConfig(read_only=True)
    raise ValueError(
        f"binding {host} exposes the index beyond this machine: set an API key (--api-key or {API_KEY_ENV}), "
        "or pass --public-read-only for a key-less server that only searches"
    )


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return request.headers.get("x-api-key")


def _authorize(request: Request, config: ServerConfig, write: bool) -> None:
    """Raise 401 (no key) or 403 (wrong key, or a write to a read-only server)."""
    if config.api_key is not None and (write or config.keyed_reads):
        presented = _presented_key(request)
        if not presented:
            raise RequestError("an API key is required", 401, {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(presented.encode(), config.api_key.encode()):
            raise RequestError("the API key is not valid", 403)
    if write and config.read_only:
        raise RequestError("the server is read-only", 403)


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    """The request's JSON object, reading at most ``limit`` bytes (413 beyond it)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(f"the request body is larger than {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is larger than {limit} bytes", 413)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"the request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"'{name}' must be an integer in [{low}, {high}]")
    return value


def _bool_field(body: dict[str, Any], name: str, default: bool | None) -> bool | None:
    """A JSON boolean (``null`` only where the default is None); strings such as ``"false"`` are refused."""
    value = body.get(name, default)
    if isinstance(value, bool) or (value is None and default is None):
        return value
    allowed = "true, false or null" if default is None else "true or false"
    raise RequestError(f"'{name}' must be {allowed}")


def _queries(body: dict[str, Any], config: ServerConfig) -> list[str]:
    queries = body.get("queries", [body["query"]] if "query" in body else None)
    if not isinstance(queries, list) or not queries or len(queries) > config.max_queries:
        raise RequestError(f"give 'query' (a string) or 'queries' (1 to {config.max_queries} strings)")
    if any(not isinstance(q, str) or not q.strip() for q in queries):
        raise RequestError("every query must be a non-empty string")
    if any(len(q) > config.max_query_chars for q in queries):
        raise RequestError(f"a query is longer than {config.max_query_chars} characters")
    return queries


def _documents(body: dict[str, Any], config: ServerConfig) -> tuple[list[str], list[str]]:
    documents = body.get("documents")
    if not isinstance(documents, list) or not documents:
        raise RequestError("'documents' must be a non-empty list of {id, text[, title]} objects")
    if len(documents) > config.max_documents:
        raise RequestError(f"at most {config.max_documents} documents per request, got {len(documents)}")
    if any(
        not isinstance(d, dict) or not isinstance(d.get("id"), str) or not isinstance(d.get("text"), str)
        for d in documents
    ):
        raise RequestError("every document needs a string 'id' and a string 'text'")
    return [d["id"] for d in documents], [document_text(d) for d in documents]


def create_app(index: Index, config: ServerConfig | None = None, qdrant: QdrantCollection | None = None) -> Starlette:
    """The ASGI application serving ``index`` under ``config`` (default: no key, writable, default limits).

    With ``qdrant``, searches are answered by that Qdrant collection (an export of ``index``, see
    :mod:`latepool.index.qdrant`); ``index`` encodes the queries, takes ``/add`` and ``/delete`` as
    the system of record, and each write is passed on to the collection.
    """
    config = config or ServerConfig()

    batcher = QueryBatcher(index.encode_queries, config.max_batch_queries)

    async def health(request: Request) -> JSONResponse:
        _authorize(request, config, write=False)
        await run_in_threadpool(index.refresh)
        manifest = index.manifest
        state = {"status": "ok", "documents": len(index), "vectors": manifest["vector_count"]}
        if qdrant is not None:
            state["qdrant"] = {"collection": qdrant.collection, "documents": await run_in_threadpool(qdrant.count)}
        return JSONResponse({**state, "read_only": config.read_only})

    async def search(request: Request) -> JSONResponse:
        _authorize(request, config, write=False)
        body = await _json_body(request, config.max_body_bytes)
        queries = _queries(body, config)
        k = _int_field(body, "k", 10, 1, config.max_k)
        candidates = _bool_field(body, "candidates", None)
        await run_in_threadpool(index.refresh)
        embeddings = await batcher.encode(queries)
        if qdrant is not None:
            hits = await run_in_threadpool(qdrant.search, embeddings, k)
        else:
            hits = await run_in_threadpool(index.search_embeddings, embeddings, k, candidates=candidates)
        return JSONResponse({"results": [[{"id": h.id, "score": h.score} for h in row] for row in hits]})

    async def add(request: Request) -> JSONResponse:
        _authorize(request, config, write=True)
        body = await _json_body(request, config.max_body_bytes)
        ids, texts = _documents(body, config)
        replace = _bool_field(body, "replace", False)
        await run_in_threadpool(index.add, ids, texts, replace=replace, show_progress_bar=False)
        if qdrant is not None:  # the documents as the index stored them, read off the event loop
            await run_in_threadpool(lambda: qdrant.write(ids, index.vectors_of(ids)))
        return JSONResponse({"added": len(ids), "documents": len(index)})

    async def delete(request: Request) -> JSONResponse:
        _authorize(request, config, write=True)
        body = await _json_body(request, config.max_body_bytes)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or any(not isinstance(i, str) for i in ids):
            raise RequestError("'ids' must be a non-empty list of strings")
        if len(ids) > config.max_documents:
            raise RequestError(f"at most {config.max_documents} ids per request, got {len(ids)}")
        deleted = await run_in_threadpool(index.delete, ids)
        if qdrant is not None:
            await run_in_threadpool(qdrant.delete, ids)
        return JSONResponse({"deleted": deleted, "documents": len(index)})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/search", search, methods=["POST"]),
        Route("/add", add, methods=["POST"]),
        Route("/delete", delete, methods=["POST"]),
    ]
    handlers = {
        RequestError: _request_error,
        QdrantUnavailableError: _qdrant_error,
        IndexInputError: _index_input_error,
        HTTPException: _http_error,
        Exception: _server_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.batcher = batcher
    return app


async def _request_error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)


async def _qdrant_error(request: Request, error: Exception) -> JSONResponse:
    logger.error("%s %s: %s", request.method, request.url.path, error)
    return JSONResponse({"error": str(error)}, status_code=503)


async def _index_input_error(request: Request, error: Exception) -> JSONResponse:
    status = (
        409 if isinstance(error, DocumentsExistError) else 404 if isinstance(error, DocumentsNotFoundError) else 400
    )
    return JSONResponse({"error": str(error)}, status_code=status)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse({"error": error.detail}, status_code=error.status_code, headers=error.headers)


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return JSONResponse({"error": "internal server error"}, status_code=500)


def serve(
    index: Index,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    qdrant: QdrantCollection | None = None,
) -> None:
    """Serve ``index`` with uvicorn until interrupted (binds to localhost by default).

    Args:
        index: The index.
        host: Bind address.
        port: Port.
        config: Keys and limits (default: :func:`check_bind` with no key, which refuses non-loopback).
        qdrant: A Qdrant collection that answers the searches (see :func:`create_app`).
    """
    import uvicorn

    config = config or check_bind(host, None)
    index.model()  # load the query encoder before the first request
    uvicorn.run(create_app(index, config, qdrant), host=host, port=port, log_level="info")
