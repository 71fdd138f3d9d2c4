"""``latepool serve``: an HTTP JSON API over an index (Starlette on uvicorn).

Endpoints (JSON in, JSON out):

- ``GET /health`` -> ``{"status": "ok", "documents": N, "vectors": M}``
- ``POST /search`` ``{"queries": ["..."], "k": 10, "candidates": false}`` (or ``"query": "..."``)
  -> ``{"results": [[{"id": ..., "score": ...}, ...], ...]}``
- ``POST /add`` ``{"documents": [{"id": ..., "text": ..., "title": ...}], "replace": false}``
- ``POST /delete`` ``{"ids": [...]}``

Malformed requests get a 4xx answer with ``{"error": message}``. Index work runs in worker threads;
searches read an immutable snapshot, so searches running while an add commits see either the
index before or after it, never a mix.
"""

from __future__ import annotations

import json
from typing import Any

from latepool.extras import require

require("server", "latepool serve")

from starlette.applications import Starlette  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from latepool.data import document_text  # noqa: E402
from latepool.index.index import Index  # noqa: E402

MAX_QUERIES = 1024


class RequestError(ValueError):
    """A client error: answered with status 400 (or the given status)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
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


def create_app(index: Index) -> Starlette:
    """The ASGI application serving ``index``."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "documents": len(index), "vectors": index.manifest["vector_count"]})

    async def search(request: Request) -> JSONResponse:
        body = await _json_body(request)
        queries = body.get("queries", [body["query"]] if "query" in body else None)
        if not isinstance(queries, list) or not queries or len(queries) > MAX_QUERIES:
            raise RequestError(f"give 'query' (a string) or 'queries' (1 to {MAX_QUERIES} strings)")
        if any(not isinstance(q, str) or not q.strip() for q in queries):
            raise RequestError("every query must be a non-empty string")
        k = _int_field(body, "k", 10, 1, 1000)
        candidates = bool(body.get("candidates", False))
        hits = await run_in_threadpool(index.search, queries, k, candidates=candidates)
        return JSONResponse({"results": [[{"id": d, "score": s} for d, s in row] for row in hits]})

    async def add(request: Request) -> JSONResponse:
        body = await _json_body(request)
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            raise RequestError("'documents' must be a non-empty list of {id, text[, title]} objects")
        if any(
            not isinstance(d, dict) or not isinstance(d.get("id"), str) or not isinstance(d.get("text"), str)
            for d in documents
        ):
            raise RequestError("every document needs a string 'id' and a string 'text'")
        ids = [d["id"] for d in documents]
        texts = [document_text(d) for d in documents]
        await run_in_threadpool(index.add, ids, texts, replace=bool(body.get("replace", False)))
        return JSONResponse({"added": len(ids), "documents": len(index)})

    async def delete(request: Request) -> JSONResponse:
        body = await _json_body(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or any(not isinstance(i, str) for i in ids):
            raise RequestError("'ids' must be a non-empty list of strings")
        deleted = await run_in_threadpool(index.delete, ids)
        return JSONResponse({"deleted": deleted, "documents": len(index)})

    async def client_error(request: Request, error: Exception) -> JSONResponse:
        status = error.status if isinstance(error, RequestError) else 400
        return JSONResponse({"error": str(error)}, status_code=status)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/search", search, methods=["POST"]),
        Route("/add", add, methods=["POST"]),
        Route("/delete", delete, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={ValueError: client_error})


def serve(index: Index, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``index`` with uvicorn until interrupted (binds to localhost by default)."""
    import uvicorn

    index.model()  # load the query encoder before the first request
    uvicorn.run(create_app(index), host=host, port=port, log_level="info")
