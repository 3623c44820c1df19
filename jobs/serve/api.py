"""An OpenAI-compatible HTTP server for one or more builds that share a base model.

    python -m jobs.serve.api --version smoke[,v2] [--port 8000]      # `make serve VERSION=smoke,v2 PORT=8000`

GET /v1/models lists the build tags; POST /v1/chat/completions answers with the build named in `model`, plain or
streamed (server-sent events), honouring temperature, top_p, max_tokens, stop and seed. FastAPI + uvicorn serve
HTTP; one worker thread owns the engine (worker.py). Bad requests get OpenAI-shaped 4xx errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException

from jobs.core.errors import QslmError
from jobs.core.loading import load_tokenizer
from jobs.core.store import open_store
from jobs.serve import protocol
from jobs.serve.builds import Build, describe, load_engine, open_build, pick_tags
from jobs.serve.protocol import ChatRequest, error_body
from jobs.serve.worker import Job, Worker

DISCONNECT_POLL_S = 0.5  # how often a waiting plain request checks that its client is still there


def _error(status: int, message: str, type_: str = "invalid_request_error", param=None, code=None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def _validation_error(_request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return _error(400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')}, "
                           f"at character {first['loc'][-1]})", code="json_invalid")
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    where = ".".join(loc)
    message = first.get("msg", "invalid request").removeprefix("Value error, ")
    return _error(400, f"{where}: {message}" if where else message, param=where or None, code=first.get("type"))


def _http_error(_request, exc: HTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)


def make_app(builds: dict[str, Build], worker: Worker, tokenizer, context_tokens: int) -> FastAPI:
    """The routes over a running worker; `tokenizer` is the server's own copy (the engine's belongs to the worker
    thread: a tokenizer shared between threads can fail mid-call), used to count and check prompt tokens."""
    app = FastAPI(title="quantum-slm", docs_url=None, redoc_url=None)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)

    @app.get("/v1/models")
    def models() -> dict:
        # "serving": which engine path answers and how adapters are applied (batching: jobs/serve/worker.py)
        serving = {"engine": worker.engine.path, "adapters": worker.lora_policy}
        return {"object": "list", "data": [{**protocol.model_card(b), "serving": serving} for b in builds.values()]}

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        from jobs.core.engine import Sampling, chat_prompt_ids

        build = builds.get(req.model)
        if build is None:
            return _error(404, f"the model {req.model!r} does not exist here; this server serves "
                               f"{', '.join(builds)} (GET /v1/models)", param="model", code="model_not_found")
        turns = req.turns()
        system = build.system_prompt()
        if system and not req.has_system():  # ask the way the adapter was trained unless the client says otherwise
            turns = [{"role": "system", "content": system}] + turns
        max_new = req.max_completion_tokens or req.max_tokens or build.spec.eval.max_new_tokens
        prompt_tokens = len(chat_prompt_ids(tokenizer, [turns])[0])  # as the engine will format it
        if prompt_tokens + max_new > context_tokens:
            return _error(400, f"this request needs {prompt_tokens} prompt + {max_new} new tokens, more than the "
                               f"model's {context_tokens}; shorten the messages or lower max_tokens",
                          param="messages", code="context_length_exceeded")
        sampling = Sampling(max_new_tokens=max_new, temperature=req.temperature, top_p=req.top_p, stop=req.stop,
                            seed=req.seed)
        job = Job(turns, req.model, sampling, req.stream, asyncio.get_running_loop())
        if not worker.submit(job):
            return _error(429, f"the server is busy: {worker.max_queue} requests are already waiting; retry "
                               f"shortly", type_="rate_limit_error", code="queue_full")
        cid = protocol.completion_id()
        if req.stream:
            return EventSourceResponse(_events(job, cid, req, prompt_tokens))
        return await _answer(job, cid, req.model, prompt_tokens, request)

    return app


async def _answer(job: Job, cid: str, model: str, prompt_tokens: int, request: Request):
    try:
        while True:
            try:
                item = await asyncio.wait_for(job.out.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return None  # nobody to answer; `finally` drops the job if it has not started
                continue
            if item[0] == "done":
                return protocol.completion(cid, model, item[1], prompt_tokens)
            return _error(500, item[1], type_="server_error")
    finally:
        job.cancelled.set()


async def _events(job: Job, cid: str, req: ChatRequest, prompt_tokens: int):
    """SSE data lines as OpenAI sends them: a role delta, content deltas, a finish chunk, [usage], [DONE]."""
    try:
        yield {"data": json.dumps(protocol.chunk(cid, req.model, {"role": "assistant", "content": ""}))}
        while True:
            kind, value = await job.next_item()  # chunks that queued up come as one
            if kind == "chunk":
                yield {"data": json.dumps(protocol.chunk(cid, req.model, {"content": value}))}
            elif kind == "done":
                yield {"data": json.dumps(protocol.chunk(cid, req.model, {}, value.finish_reason))}
                if req.include_usage():
                    usage = protocol.usage(prompt_tokens, value.new_tokens)
                    yield {"data": json.dumps(protocol.chunk(cid, req.model, {}, usage_=usage))}
                yield {"data": "[DONE]"}
                return
            else:
                yield {"data": json.dumps(error_body(value, "server_error"))}
                return
    finally:
        job.cancelled.set()  # the client left (or the answer ended): the worker stops at its next token


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Serve builds over the OpenAI chat-completions API.")
    p.add_argument("--version", help="build tag(s), comma-separated (default: the promoted `current` build)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait; more get 429")
    p.add_argument("--max-batch", type=int, default=64, help="requests decoded together (continuous batching)")
    args = p.parse_args(argv)
    try:
        store = open_store()
        builds = {tag: open_build(store, tag) for tag in pick_tags(store, args.version)}
        engine = load_engine(list(builds.values()), args.device)
        tokenizer = load_tokenizer(engine.base_dir)  # the server's own: the engine's belongs to the worker thread
    except QslmError as exc:
        print(f"serve: error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    worker = Worker(engine, args.max_queue, args.max_batch)
    worker.start()
    app = make_app(builds, worker, tokenizer, engine.context)
    print(describe(list(builds.values()), engine), flush=True)
    print(f"serving {', '.join(builds)} at http://{args.host}:{args.port}/v1 (OpenAI API; Ctrl-C stops)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
