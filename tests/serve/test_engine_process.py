"""The engine in a process of its own (jobs/serve/engine_process.py): the same answers as the in-process worker, a
dropped client's row freed, a full queue refused in the server, and a dead engine process failing its requests
without a hang. Through the real server (`python -m jobs.serve.api --engine-process`) and on ProcessWorker itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from functools import partial
from pathlib import Path

import openai
import pytest

from jobs.core.engine.generation import Sampling
from jobs.serve.engine_process import ProcessWorker, served_engine
from jobs.serve.worker import Job, Worker
from tests.conftest import wait_for
from tests.serve.conftest import QUESTION, check_a_dropped_client_frees_its_row, start_api

pytestmark = pytest.mark.slow
USER = [{"role": "user", "content": QUESTION}]
SEEDED = Sampling(max_new_tokens=12, temperature=1.0, seed=3)


def _engine_pid(server_pid: int) -> int:
    """The server's engine process (its other child is multiprocessing's resource tracker)."""
    kids = [int(p) for task in Path(f"/proc/{server_pid}/task").iterdir()
            for p in (task / "children").read_text().split()]
    return next(p for p in kids if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes())


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def server(smoke_store, tmp_path_factory):
    log = tmp_path_factory.mktemp("api") / "server.log"
    proc, url = start_api(smoke_store, log, "--engine-process")
    engine_pid = _engine_pid(proc.pid)
    yield url
    proc.terminate()  # uvicorn ends on SIGTERM by raising it again: the engine process sees its pipe close
    proc.wait(timeout=60)
    assert wait_for(lambda: _gone(engine_pid), 30), "the engine process outlived the server"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=300)


def _worker_answer(worker, chat, adapter, sampling, stream) -> tuple[str, object]:
    """(streamed text, final item) of one job on `worker`, from an event loop of this thread."""
    async def ask():
        job = Job(chat, adapter, sampling, stream, asyncio.get_running_loop())
        assert worker.submit(job)
        text = ""
        while (item := await asyncio.wait_for(job.out.get(), 120))[0] == "chunk":
            text += item[1]
        return text, item
    return asyncio.run(ask())


def test_a_seeded_stream_equals_the_plain_answer_and_the_in_process_workers(client, smoke_engine):
    kwargs = dict(model="smoke-loud", messages=USER, max_tokens=12, temperature=1.0, seed=3)
    plain = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs, stream=True)
                       if c.choices)
    worker = Worker(smoke_engine[0], max_queue=4, max_batch=4)
    worker.start()
    try:
        text, done = _worker_answer(worker, USER, "smoke-loud", SEEDED, stream=True)
    finally:
        worker.stop()
    assert streamed == plain == text == done[1].text and plain.strip()
    models = client.models.list().data
    assert models[0].model_extra["serving"]["engine"] == smoke_engine[0].path


def test_a_dropped_client_frees_its_row(client, server):
    check_a_dropped_client_frees_its_row(client, server)
    health = json.loads(urllib.request.urlopen(server + "/health", timeout=5).read())
    assert health["waiting"] == 0


def test_a_killed_engine_process_fails_its_requests_and_later_ones(smoke_store, tmp_path):
    proc, url = start_api(smoke_store, tmp_path / "server.log", "--engine-process")
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        stream = client.chat.completions.create(model="smoke", messages=USER, max_tokens=1900, stream=True)
        assert next(iter(stream)).choices[0].delta.role == "assistant"
        os.kill(_engine_pid(proc.pid), signal.SIGKILL)
        with pytest.raises(openai.APIError, match="the engine process exited"):
            for _ in stream:
                pass
        started = time.perf_counter()
        with pytest.raises(openai.InternalServerError, match="the engine process exited"):
            client.chat.completions.create(model="smoke", messages=USER, max_tokens=4)
        assert time.perf_counter() - started < 5
        assert proc.poll() is None  # the server still answers (with errors)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


# --- ProcessWorker itself -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_row(smoke_store):
    """A ProcessWorker over smoke-loud (its answers are not blank) with one row and a queue of two."""
    with pytest.MonkeyPatch.context() as env:
        for k in ("QSLM_STORE", "QSLM_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            env.setenv(k, smoke_store[k])  # the child inherits them
        worker = ProcessWorker(partial(served_engine, ["smoke-loud"], smoke_store["QSLM_STORE"], "cpu", 1), 2, 1)
        worker.start()
    yield worker
    worker.stop()
    assert not worker.process.is_alive()


def test_a_full_queue_is_refused_in_the_server_at_once(one_row):
    async def run():
        loop = asyncio.get_running_loop()
        running = Job(USER, "smoke-loud", Sampling(max_new_tokens=1000, min_new_tokens=1000), True, loop)
        assert one_row.submit(running)
        assert (await asyncio.wait_for(running.out.get(), 60))[0] == "chunk"  # it holds the only row
        waiting = [Job(USER, "smoke-loud", Sampling(max_new_tokens=2), False, loop) for _ in range(3)]
        assert one_row.submit(waiting[0]) and one_row.submit(waiting[1])
        started = time.perf_counter()
        assert not one_row.submit(waiting[2])
        assert time.perf_counter() - started < 0.1  # no round trip to the engine process
        running.cancelled.set()
        assert [(await asyncio.wait_for(j.out.get(), 60))[0] for j in waiting[:2]] == ["done", "done"]
        assert await asyncio.to_thread(wait_for, lambda: one_row.waiting() == 0, 5)
    asyncio.run(run())


def test_a_failed_load_is_an_error_at_start(smoke_store):
    worker = ProcessWorker(partial(served_engine, ["no-such-tag"], smoke_store["QSLM_STORE"], "cpu", 1), 2, 1)
    with pytest.raises(Exception, match="the engine process could not load the engine: .*no-such-tag"):
        worker.start()
