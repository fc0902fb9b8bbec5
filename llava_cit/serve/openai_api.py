"""An OpenAI-compatible HTTP API over a served run (FastAPI): `POST /v1/chat/completions`, `GET /v1/models`,
`GET /health`.

`model` names the run (each request routed by its switch; a rejected query is answered by the bare base) or
`<run>/<task>` (that task's adapter). Requests are answered by a BatchQueue, so concurrent ones share one generation.
A bad request is a 4xx in OpenAI's error shape (llava_cit.serve.chat_request); an internal error is a 500 for that
request only. `stream: true` answers with server-sent events in OpenAI's chunk format; the answer is generated
batched, so its text arrives as one delta once its batch is done.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from llava_cit.data.example import Example
from llava_cit.serve.batch_queue import Batched, BatchQueue, QueueClosed
from llava_cit.serve.chat_request import ChatRequest, RequestError, RequestLimits, parse_chat_request, parse_json
from llava_cit.serve.served_run import Query, Reply

log = logging.getLogger("llava_cit.serve")


class Engine(Protocol):
    """What the API needs of a served run (llava_cit.serve.served_run.ServedRun, or the vLLM engine)."""

    name: str
    engine: str

    @property
    def tasks(self) -> list[str]: ...

    @property
    def routed(self) -> bool: ...

    @property
    def is_vision(self) -> bool: ...

    @property
    def multi_turn(self) -> bool: ...

    def answer(self, queries: list[Query]) -> list[Reply]: ...

    def prompt_tokens(self, example: Example) -> int: ...

    def count_tokens(self, text: str) -> int: ...


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None = None
    limits: RequestLimits = field(default_factory=RequestLimits)
    batch_window_s: float = 0.01
    max_batch: int = 16


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
           param: str | None = None) -> JSONResponse:
    return JSONResponse(RequestError(status, message, param, code, kind).body(), status_code=status)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request body has {declared} bytes (at most {limit})", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body is over {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _completion(chat: ChatRequest, done: Batched, engine: Engine) -> tuple[dict, str, str, dict]:
    """(completion object, answer text, finish reason, usage)."""
    reply = done.reply
    text, stopped = _cut_at_stop(reply.text or "", chat.stop)
    completion_tokens = engine.count_tokens(text)
    finish = "length" if not stopped and completion_tokens >= reply.budget else "stop"
    prompt_tokens = engine.prompt_tokens(chat.query.example)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    routing = {"task": reply.task, "confidence": reply.confidence, "pinned": chat.query.task is not None,
               "batch": done.batch, "batch_size": done.size}
    completion = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                  "model": chat.model, "system_fingerprint": None, "routing": routing,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                               "logprobs": None}],
                  "usage": usage}
    return completion, text, finish, usage


def _events(completion: dict, text: str, finish: str, usage: dict, include_usage: bool) -> AsyncIterator[str]:
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict, finish_reason: str | None, **more) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return f"data: {json.dumps(dict(base, choices=[choice], **extra, **more))}\n\n"

    async def stream() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""}, None)
        if text:
            yield chunk({"content": text}, None)
        yield chunk({}, finish, routing=completion["routing"])
        if include_usage:
            yield f"data: {json.dumps(dict(base, choices=[], usage=usage))}\n\n"
        yield "data: [DONE]\n\n"

    return stream()


def create_app(engine: Engine, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    batches = BatchQueue(engine.answer, settings.batch_window_s, settings.max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(batches.close)  # uvicorn has let the requests in flight finish first

    app = FastAPI(title=f"llava-cit: {engine.name}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batches = batches
    created = int(time.time())

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError):
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        return _error(err.status_code, str(err.detail), code="not_found" if err.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception):
        log.exception("internal error while answering %s", request.url.path)
        return _error(500, f"internal error while answering this request ({type(err).__name__})", kind="server_error")

    @app.middleware("http")
    async def api_key(request: Request, call_next):
        if settings.api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {settings.api_key}".encode()):
                return _error(401, "Incorrect API key provided", code="invalid_api_key")
        return await call_next(request)

    def model_cards() -> list[dict]:
        card = {"object": "model", "created": created, "owned_by": "llava-cit"}
        run = dict(card, id=engine.name, routing="switch" if engine.routed else "fixed", tasks=engine.tasks,
                   engine=engine.engine)
        return [run] + [dict(card, id=f"{engine.name}/{task}", task=task, parent=engine.name) for task in engine.tasks]

    @app.get("/health")
    async def health():
        return {"status": "ok", "run": engine.name, "engine": engine.engine, "in_flight": batches.pending,
                "batches": batches.batches, "largest_batch": batches.largest}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": model_cards()}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        for card in model_cards():
            if card["id"] == model_id:
                return card
        raise RequestError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = parse_json(await _body(request, settings.limits.max_request_bytes))
        chat = await run_in_threadpool(parse_chat_request, body, engine.name, engine.tasks, engine.is_vision,
                                       settings.limits, engine.multi_turn)  # images decode off the event loop
        try:
            future = batches.submit(chat.query)
        except QueueClosed:
            return _error(503, "the server is shutting down", kind="server_error", code="shutting_down")
        done: Batched = await asyncio.wrap_future(future)
        if done.reply.error is not None:
            raise RequestError(400, f"the request cannot be answered: {done.reply.error}", param="messages",
                               code="unanswerable")
        completion, text, finish, usage = await run_in_threadpool(_completion, chat, done, engine)
        if chat.stream:
            return StreamingResponse(_events(completion, text, finish, usage, chat.include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return completion

    return app
