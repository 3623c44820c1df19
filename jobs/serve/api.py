"""An OpenAI-compatible HTTP server for one or more builds that share a base model.

    python -m jobs.serve.api --tag smoke[,v2] [--port 8000]      # `make serve VERSION=smoke,v2 PORT=8000`

GET /v1/models lists the build tags and `base` (the base model they share, without an adapter, asked as the first
build is: its system prompt, default max_tokens and retrieval index, as eval's base arms are); POST
/v1/chat/completions answers with the model named in `model`, plain or streamed (server-sent events), honouring
temperature, top_p, max_tokens, stop and seed, and a `retrieval` field (jobs/serve/retrieval.py) that adds the
passages' `sources` beside the message; GET /health answers 200 while the server serves. FastAPI + uvicorn serve
HTTP; one worker thread owns the engine (worker.py), in this process or, with --engine-process, in a process of
its own (engine_process.py). Bad requests get OpenAI-shaped 4xx errors. Bounds, framing, the API key (QSLM_API_KEY;
required off loopback) and the request log line: guard.py.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from jobs.core.errors import QslmError
from jobs.core.engine.loading import gpu_memory_errors, load_tokenizer
from jobs.core.store.backends import open_store
from jobs.serve import ServeError, protocol
from jobs.serve.builds import Build, describe, load_engine, pick_tags
from jobs.serve.chat import MAX_CHARS_PER_TOKEN
from jobs.serve.engine_process import ProcessWorker, served_engine
from jobs.serve.guard import MAX_HEADER_BYTES, Guard
from jobs.serve.protocol import BASE_MODEL, ChatRequest, error_body
from jobs.serve.worker import Job, Worker

DISCONNECT_POLL_S = 0.5  # how often a waiting plain request checks that its client is still there
API_KEY_ENV = "QSLM_API_KEY"
# A streamed answer's headers (those sse-starlette's EventSourceResponse sent before this server wrote its events
# itself): no cache keeps it, no proxy buffers it (nginx: X-Accel-Buffering).
SSE_HEADERS = {"Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
PING_S = 15  # a comment line this often on every stream, so a proxy's idle timeout never cuts a queued request


def _error(status: int, message: str, type_: str = "invalid_request_error", param=None, code=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def _validation_error(_request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return _error(400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')}, "
                           f"at character {first['loc'][-1]})", code="json_invalid")
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    where = ".".join(loc) or (first.get("ctx") or {}).get("field", "")  # a field refused as a whole (protocol.py)
    message = first.get("msg", "invalid request").removeprefix("Value error, ")
    return _error(400, f"{where}: {message}" if where else message, param=where or None, code=first.get("type"))


def _http_error(_request, exc: HTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)


def make_app(builds: dict[str, Build], worker: Worker, tokenizer, context_tokens: int, api_key: str | None = None,
             log=None, retrievers: dict | None = None, retrieval: bool | None = None) -> Guard:
    """The routes over a running worker, behind the guard; `tokenizer` is the server's own copy (the engine's
    belongs to the worker thread: a tokenizer shared between threads can fail mid-call), used to count and check
    prompt tokens. `retrievers`: each build's index (jobs/serve/retrieval.py); `retrieval`: the server's default."""
    app = FastAPI(title="quantum-slm", docs_url=None, redoc_url=None)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    first = next(iter(builds.values()))  # the build the base model is asked as
    served = [*builds, BASE_MODEL]

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "models": served, "waiting": worker.waiting()}

    @app.get("/v1/models")
    def models() -> dict:
        # "serving": which engine path answers and how adapters are applied (batching: jobs/serve/worker.py)
        serving = {"engine": worker.engine.path, "adapters": worker.lora_policy}
        cards = [protocol.model_card(b) for b in builds.values()] + [protocol.base_card(first)]
        return {"object": "list", "data": [{**card, "serving": serving} for card in cards]}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        from jobs.core.engine.generation import Sampling, chat_prompt_ids

        info = request.state.qslm_log  # the guard's log line for this request
        info["model"] = req.model
        build, adapter = (first, None) if req.model == BASE_MODEL else (builds.get(req.model), req.model)
        if build is None:
            return _error(404, f"the model {req.model!r} does not exist here; this server serves "
                               f"{', '.join(served)} (GET /v1/models)", param="model", code="model_not_found")
        turns = req.turns()
        system = build.system_prompt()
        if system and not req.has_system():  # ask the way the adapter was trained unless the client says otherwise
            turns = [{"role": "system", "content": system}] + turns
        max_new = req.max_completion_tokens or req.max_tokens or build.spec.eval.max_new_tokens
        chars = sum(len(t["content"]) for t in turns)
        if max_new >= context_tokens:
            return _error(400, f"max_tokens {max_new} leaves no room for the messages: it is more than the model's "
                               f"{context_tokens} tokens of context; lower max_tokens",
                          param="max_tokens", code="context_length_exceeded")
        if chars > MAX_CHARS_PER_TOKEN * (context_tokens - max_new):  # plainly over: not worth tokenizing (seconds)
            return _error(400, f"the messages are {chars:,} characters, more than {MAX_CHARS_PER_TOKEN} a token could "
                               f"fill in the {context_tokens - max_new:,} tokens the model's {context_tokens} leave "
                               f"beside {max_new} new ones; shorten the messages or lower max_tokens",
                          param="messages", code="context_length_exceeded")
        try:  # the build's passages in the prompt (jobs/serve/retrieval.py); sources go back beside the message
            turns, sources = _with_retrieval(req, turns, (retrievers or {}).get(build.tag), retrieval, tokenizer,
                                             context_tokens, max_new)
        except QslmError as exc:
            return _error(400, str(exc), param="retrieval", code="retrieval_unavailable")
        prompt_tokens = len(chat_prompt_ids(tokenizer, [turns])[0])  # as the engine will format it
        info["prompt_tokens"] = prompt_tokens
        if prompt_tokens + max_new > context_tokens:
            return _error(400, f"this request needs {prompt_tokens} prompt + {max_new} new tokens, more than the "
                               f"model's {context_tokens}; shorten the messages or lower max_tokens",
                          param="messages", code="context_length_exceeded")
        sampling = Sampling(max_new_tokens=max_new, temperature=req.temperature, top_p=req.top_p, stop=req.stop,
                            seed=req.seed)
        job = Job(turns, adapter, sampling, req.stream, asyncio.get_running_loop())
        if not worker.submit(job):
            return _error(429, f"the server is busy: {worker.max_queue} requests are already waiting; retry "
                               f"shortly", type_="rate_limit_error", code="queue_full")
        cid = protocol.completion_id()
        if req.stream:
            # The row is freed at once when the client leaves: StreamingResponse listens for http.disconnect beside
            # the stream (uvicorn's ASGI spec 2.3) and ends it; the background task runs however it ended.
            return StreamingResponse(_events(job, cid, req, prompt_tokens, info, sources), headers=SSE_HEADERS,
                                     media_type="text/event-stream", background=BackgroundTask(job.cancelled.set))
        return await _answer(job, cid, req.model, prompt_tokens, request, info, sources)

    return Guard(app, api_key, **({"log": log} if log else {}))


def _with_retrieval(req: ChatRequest, turns: list[dict], retriever, server_default: bool | None, tokenizer,
                    context_tokens: int, max_new: int) -> tuple[list[dict], list[dict] | None]:
    """(turns, sources): sources is None when the request answered without retrieval."""
    from jobs.serve.retrieval import augment, request_switch

    if not request_switch(req.model_extra, server_default, retriever):
        return turns, None
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    return augment(turns, retriever, context_tokens, max_new, count)


def _with_sources(body: dict, sources: list[dict] | None) -> dict:
    if sources is not None:  # beside the message: OpenAI clients ignore a field they do not know
        body["choices"][0]["sources"] = sources
    return body


async def _answer(job: Job, cid: str, model: str, prompt_tokens: int, request: Request, info: dict,
                  sources=None):
    try:
        while True:
            try:
                item = await asyncio.wait_for(job.out.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return None  # nobody to answer; `finally` drops the job if it has not started
                continue
            if item[0] == "done":
                info["completion_tokens"] = item[1].new_tokens
                return _with_sources(protocol.completion(cid, model, item[1], prompt_tokens), sources)
            return _error(500, item[1], type_="server_error")
    finally:
        job.cancelled.set()


def _sse(data: str) -> bytes:
    return b"data: " + data.encode() + b"\r\n\r\n"


async def _events(job: Job, cid: str, req: ChatRequest, prompt_tokens: int, info: dict, sources=None):
    """Server-sent events as OpenAI sends them: a role delta, content deltas, a finish chunk, [usage], [DONE];
    `: ping` every PING_S. The bytes are written here (a content delta's JSON is the request's fixed prefix and
    suffix around its text: protocol.content_frame), since the event loop's cost per event caps a busy server's
    rate: bench/serve_host.py measures it."""
    created, loop = int(time.time()), asyncio.get_running_loop()
    prefix, suffix = protocol.content_frame(cid, req.model, created)

    def ping() -> None:
        job.out.put_nowait(("ping", None))
        timer[0] = loop.call_later(PING_S, ping)
    timer = [loop.call_later(PING_S, ping)]
    try:
        yield _sse(json.dumps(_with_sources(protocol.chunk(cid, req.model, {"role": "assistant", "content": ""},
                                                           created=created), sources)))
        while True:
            kind, value = await job.next_item()  # chunks that queued up come as one
            if kind == "chunk":
                yield _sse(prefix + json.dumps(value) + suffix)
            elif kind == "ping":
                yield b": ping\r\n\r\n"
            elif kind == "done":
                info["completion_tokens"] = value.new_tokens
                yield _sse(json.dumps(protocol.chunk(cid, req.model, {}, value.finish_reason, created=created)))
                if req.include_usage():
                    usage = protocol.usage(prompt_tokens, value.new_tokens)
                    yield _sse(json.dumps(protocol.chunk(cid, req.model, {}, usage_=usage, created=created)))
                yield _sse("[DONE]")
                return
            else:
                yield _sse(json.dumps(error_body(value, "server_error")))
                return
    finally:
        timer[0].cancel()
        job.cancelled.set()  # the client left (or the answer ended): the worker stops at its next token


def run_http(app, host: str, port: int) -> None:
    """Serve `app` until stopped. h11 (uvicorn's pure-Python HTTP/1.1 parser, chosen explicitly so the bounds below
    hold whatever else is installed) bounds the request line and headers; the guard bounds the body."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", http="h11",
                h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_keep_alive=5)


def check_exposure(host: str, api_key: str | None) -> None:
    """Off loopback the server is reachable by others: it must then require an API key."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if not loopback and not api_key:
        raise ServeError(f"--host {host} is not loopback, so others can reach this server: set {API_KEY_ENV}=<a "
                         f"secret> and give clients that key (Authorization: Bearer <key>), or serve on 127.0.0.1")
    if api_key is not None and len(api_key) < 16:
        raise ServeError(f"{API_KEY_ENV} is {len(api_key)} characters; use at least 16 (e.g. `openssl rand -hex 24`)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Serve builds over the OpenAI chat-completions API.")
    p.add_argument("--tag", help="build tag(s), comma-separated (default: the promoted `current` build)")
    p.add_argument("--host", default="127.0.0.1", help=f"address to listen on (default: loopback only; any other "
                   f"needs an API key in {API_KEY_ENV})")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait; more get 429")
    p.add_argument("--max-batch", type=int, default=64, help="requests decoded together (continuous batching)")
    p.add_argument("--engine-process", action="store_true", help="run the engine in a process of its own, so the "
                   "HTTP side and the engine's host work do not share one GIL (jobs/serve/engine_process.py)")
    p.add_argument("--retrieval", choices=["on", "off"], help="answer from each build's retrieved passages unless a "
                                                             "request says otherwise (default: the build's spec)")
    args = p.parse_args(argv)
    api_key = os.environ.get(API_KEY_ENV) or None
    try:
        for name, value, low, high in (("--port", args.port, 1, 65535), ("--max-queue", args.max_queue, 1, 100_000),
                                       ("--max-batch", args.max_batch, 1, 1024)):
            if not low <= value <= high:
                raise ServeError(f"{name} {value} is outside [{low}, {high}]")
        check_exposure(args.host, api_key)
        store = open_store()
        from jobs.serve.retrieval import open_served

        builds, retrievers = open_served(store, pick_tags(store, args.tag))
        if args.engine_process:  # the engine is loaded in the child only; its `engine` is what the child says of it
            worker = ProcessWorker(partial(served_engine, list(builds), store.url, args.device, args.max_batch),
                                   args.max_queue, args.max_batch)
        else:
            with gpu_memory_errors("serve on the CPU (--device cpu)"):
                worker = Worker(load_engine(list(builds.values()), args.device, args.max_batch), args.max_queue,
                                args.max_batch)
        worker.start()
        engine = worker.engine
        tokenizer = load_tokenizer(engine.base_dir)  # the server's own: the engine's belongs to the worker thread
    except QslmError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2
    app = make_app(builds, worker, tokenizer, engine.context, api_key, retrievers=retrievers,
                   retrieval=None if args.retrieval is None else args.retrieval == "on")
    print(describe(list(builds.values()), engine), flush=True)
    print(f"serving {', '.join(builds)} at http://{args.host}:{args.port}/v1 (OpenAI API; Ctrl-C stops)", flush=True)
    try:
        run_http(app, args.host, args.port)
    finally:
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
