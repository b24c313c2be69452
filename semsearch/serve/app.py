"""The HTTP API and the search page, on FastAPI (Starlette underneath, served by uvicorn).

Why FastAPI: request bodies are declared once (:mod:`.schemas`) and get validation, the OpenAPI
schema and its docs page from the same declaration; under it, Starlette and uvicorn are the
well-kept ASGI pair that also answers SIGTERM by finishing requests in flight. The engine beneath
is unchanged: the routes translate library errors into HTTP ones, as the CLI does into exit codes.

>>> app = create_app({"scifact": "indexes/scifact"})            # doctest: +SKIP
>>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP

Routes: ``GET /`` (the page), ``GET /health``, ``GET /indexes``, ``GET /indexes/{name}``,
``POST /indexes/{name}/search``, ``POST|DELETE /indexes/{name}/documents``, ``GET /labelers``,
``POST /labelers/{name}/predict``, ``GET /openapi.json``, ``GET /docs``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Mapping

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..encode.embedder import Embedder
from ..errors import (
    BadInput,
    IndexLocked,
    IndexNotFound,
    ManifestMismatch,
    SemsearchError,
)
from ..types import Document
from ..version import __version__
from .labelers import ServedLabeler
from .limits import BodyLimit, HostCheck, one_line, validation_message
from .schemas import AddRequest, DeleteRequest, PredictRequest, SearchRequest
from .served import (
    SearchJob,
    ServedIndex,
    check_batching,
    check_index_models,
    hits_json,
)

__all__ = ["create_app", "DEFAULT_MAX_BODY"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 8 * 1024 * 1024  # bytes in one request body

#: The page's own inline script and style, requests to this server only, and no framing
_PAGE_POLICY = ("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_STATUS = ((IndexLocked, 409), (ManifestMismatch, 409), (IndexNotFound, 404), (BadInput, 400))


class _Error(HTTPException):
    """A client error with a one-line message and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(status, message)
        self.extra = extra


def create_app(indexes: Mapping[str, str | Path], *, labelers: Mapping[str, str | Path] | None = None,
               embedders: Mapping[str, Embedder] | None = None, api_key: str | None = None,
               api_key_reads: bool = False, cors_origins: tuple[str, ...] = (), max_body: int = DEFAULT_MAX_BODY,
               micro_batch: bool = True, batch_wait: float = 0.002, max_batch: int = 64,
               precision: str | None = None, backend: str | None = None,
               trust_remote_code: bool = False, allowed_hosts: tuple[str, ...] | None = None) -> FastAPI:
    """The ASGI app serving ``indexes`` (name → index folder) and ``labelers`` (name → saved labeller).

    Models load in a background thread when the app starts; until they have, ``GET /health`` answers
    503 and so does every route that needs them. ``embedders`` (name → embedder) overrides the
    recorded bi-encoder of an index (tests use a fake). ``api_key``: writes need
    ``Authorization: Bearer KEY`` (reads too with ``api_key_reads``). ``trust_remote_code``: let models
    recorded with it run the code shipped with them. ``allowed_hosts``: answer only requests whose ``Host``
    header names one of them (``semsearch serve`` on loopback: the loopback names and the address bound).
    """
    if not indexes and not labelers:
        raise BadInput("nothing to serve: give at least one index or labeller")
    if api_key_reads and not api_key:
        raise BadInput("api_key_reads needs an api_key")
    check_batching(batch_wait, max_batch)  # what can be checked without loading a model fails here, not in /health
    for name, path in indexes.items():
        check_index_models(path, trust_remote_code, embedder=name not in (embedders or {}))
    for name, path in (labelers or {}).items():
        ServedLabeler.check(name, path)
    state = _State()

    def load() -> None:
        try:
            for name, path in indexes.items():
                state.indexes[name] = served = ServedIndex(
                    name, path, embedder=(embedders or {}).get(name), precision=precision, backend=backend,
                    micro_batch=micro_batch, batch_wait=batch_wait, max_batch=max_batch,
                    trust_remote_code=trust_remote_code)
                served.start()
            for name, path in (labelers or {}).items():
                state.labelers[name] = ServedLabeler.load(name, path)
            state.ready = True
            log.info("serving %d indexes and %d labellers", len(state.indexes), len(state.labelers))
        except Exception as exc:  # noqa: BLE001  (reported by /health and every route)
            log.exception("loading failed")
            state.failed = one_line(f"{type(exc).__name__}: {exc}" if not isinstance(exc, SemsearchError) else exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = threading.Thread(target=load, name="semsearch-load", daemon=True)
        loader.start()
        yield
        await run_in_threadpool(loader.join)
        for served in state.indexes.values():
            await run_in_threadpool(served.stop)

    app = FastAPI(title="semsearch", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Semantic search, reranking and few-shot labels over semsearch indexes.")
    app.state.semsearch = state
    app.add_middleware(BodyLimit, max_body=max_body)
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    if allowed_hosts:  # added last: the outermost check, before CORS answers a preflight
        app.add_middleware(HostCheck, hosts=tuple(allowed_hosts))
    _error_handlers(app, state)

    def key_check(needed: bool):
        def check(request: Request) -> None:
            if not needed:
                return
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
                raise _Error(401, "missing or wrong API key (send Authorization: Bearer KEY)")
        return Depends(check)

    read_key, write_key = key_check(bool(api_key) and api_key_reads), key_check(bool(api_key))

    def index(name: str) -> ServedIndex:
        state.check_ready()
        if name not in state.indexes:
            raise _Error(404, f"no index named {name!r}; served: {', '.join(sorted(state.indexes)) or 'none'}")
        return state.indexes[name]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8"),
                            headers={"Content-Security-Policy": _PAGE_POLICY})

    @app.get("/health", summary="Ready once every model has loaded (503 before)")
    def health() -> JSONResponse:
        if state.failed:
            return JSONResponse({"status": "failed", "error": state.failed}, 503)
        if not state.ready:
            return JSONResponse({"status": "loading", "error": "models are loading"}, 503)
        return JSONResponse({"status": "ready", "indexes": sorted(state.indexes), "labelers": sorted(state.labelers),
                             "version": __version__})

    @app.get("/indexes", summary="The indexes served, with their summaries", dependencies=[read_key])
    def list_indexes() -> dict:
        state.check_ready()
        return {"indexes": [served.info() for served in state.indexes.values()]}

    @app.get("/indexes/{name}", summary="One index: manifest summary, counts, default mode and reranker",
             dependencies=[read_key])
    def index_info(name: str) -> dict:
        return {**index(name).info(), "batching": index(name).stats.to_dict()}

    @app.post("/indexes/{name}/search", summary="Search one or several queries", dependencies=[read_key])
    async def search(name: str, body: SearchRequest) -> dict:
        started = time.perf_counter()
        served = index(name)
        job = SearchJob(body.texts, body.k, body.mode, tuple(body.filters), body.rerank, body.candidates)
        served.check(job)
        results = await asyncio.wrap_future(served.search(job))
        took = _ms(started)
        mode = body.mode or served.engine.default_mode
        if body.query is not None:
            return {"query": body.query, "mode": mode, "reranked": body.rerank, "hits": hits_json(results[0]),
                    "took_ms": took}
        return {"mode": mode, "reranked": body.rerank, "took_ms": took,
                "results": [{"query": q, "hits": hits_json(h)} for q, h in zip(body.queries, results)]}

    @app.post("/indexes/{name}/documents", summary="Add or update documents (acknowledged once committed)",
              dependencies=[write_key])
    async def add(name: str, body: AddRequest) -> dict:
        started = time.perf_counter()
        served = index(name)
        docs = [Document(d.id, d.text, d.title, d.metadata) for d in body.documents]
        report = await run_in_threadpool(served.add, docs)
        return {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
                "embedded": report.embedded, "from_cache": report.from_cache, "ids": [d.id for d in docs],
                "took_ms": _ms(started)}

    @app.delete("/indexes/{name}/documents", summary="Delete documents by id (all must exist)",
                dependencies=[write_key])
    async def delete(name: str, body: DeleteRequest) -> dict:
        started = time.perf_counter()
        report = await run_in_threadpool(index(name).delete, body.ids)
        return {"deleted": report.deleted, "ids": body.ids,
                "took_ms": _ms(started)}

    @app.get("/labelers", summary="The labellers served", dependencies=[read_key])
    def list_labelers() -> dict:
        state.check_ready()
        return {"labelers": [lab.info() for lab in state.labelers.values()]}

    @app.post("/labelers/{name}/predict", summary="A label and its probability per text (or score)",
              dependencies=[read_key])
    async def predict(name: str, body: PredictRequest) -> dict:
        started = time.perf_counter()
        state.check_ready()
        if name not in state.labelers:
            raise _Error(404, f"no labeller named {name!r}; served: {', '.join(sorted(state.labelers)) or 'none'}")
        predictions = await run_in_threadpool(state.labelers[name].predict, body.texts, body.scores)
        return {"predictions": predictions, "took_ms": _ms(started)}

    _docs_page(app)
    return app


def _ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``perf_counter`` reading): the ``took_ms`` of every answer."""
    return round((time.perf_counter() - started) * 1000, 3)


class _State:
    def __init__(self):
        self.indexes: dict[str, ServedIndex] = {}
        self.labelers: dict[str, ServedLabeler] = {}
        self.ready = False
        self.failed: str | None = None

    def check_ready(self) -> None:
        if self.failed:
            raise _Error(503, f"the server could not load its models: {self.failed}")
        if not self.ready:
            raise _Error(503, "models are loading; try again shortly (GET /health says when)")


def _error_handlers(app: FastAPI, state: _State) -> None:
    def error(status: int, message: str, **extra) -> JSONResponse:
        for name, served in state.indexes.items():  # requests name indexes by name; so do the answers
            message = message.replace(str(served.engine.path), f"index {name!r}")
        return JSONResponse({"error": one_line(message), **extra}, status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error(400, "malformed JSON in the request body")
        return error(422, validation_message(errors), details=[
            {"field": ".".join(str(p) for p in e.get("loc", ())[1:]),
             "problem": e.get("msg", "").removeprefix("Value error, ")} for e in errors])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), **getattr(exc, "extra", {}))

    @app.exception_handler(SemsearchError)
    async def library_error(request: Request, exc: SemsearchError) -> JSONResponse:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        if status == 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error(status, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


def _docs_page(app: FastAPI) -> None:
    """``GET /docs``: Swagger UI from the ``swagger-ui-bundle`` package (no CDN), or a plain link to the
    schema when it is not installed."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import swagger_ui_bundle
        from starlette.staticfiles import StaticFiles

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
        assets = True
    except ImportError:
        assets = False

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if not assets:
            return HTMLResponse('<p>The schema is at <a href="/openapi.json">/openapi.json</a>; install '
                                '<code>semsearch[serve]</code> for its docs page.</p>')
        return get_swagger_ui_html(openapi_url="/openapi.json", title="semsearch API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

