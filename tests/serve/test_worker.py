"""The server's engine thread: continuous batching of streams and plain requests, seeds, dropped clients, a full
queue, engine failures. The tiny model's fast path on the CPU (the same decoder the GPU runs, without graphs)."""

from __future__ import annotations

import asyncio
import time

import pytest

from jobs.core.engine.generation import Engine, EngineSettings, Sampling
from jobs.serve.worker import Job, Worker
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

CHATS = [[{"role": "user", "content": q}] for q in ("What is a quantum kernel?", "Why?", "What is noise?")]
GREEDY = Sampling(max_new_tokens=10)


@pytest.fixture(scope="module")
def engine(smoke_spec, tiny_adapter):
    return Engine.load(smoke_spec, {"a": tiny_adapter}, EngineSettings(device="cpu", fast=True))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def start(engine):
    workers = []

    def make(max_queue=16, max_batch=8):
        worker = Worker(engine, max_queue, max_batch)
        worker.start()
        workers.append(worker)
        return worker
    yield make
    for worker in workers:
        worker.stop()


def _job(loop, chat, sampling=GREEDY, stream=False, adapter="a") -> Job:
    return Job(chat, adapter, sampling, stream, loop)


def _next(loop, job, timeout=60):
    return loop.run_until_complete(asyncio.wait_for(job.out.get(), timeout))


def _answer(loop, job) -> tuple[str, object]:
    """(streamed text, the final item) of a job."""
    text = ""
    while (item := _next(loop, job))[0] == "chunk":
        text += item[1]
    return text, item


def test_streams_and_plain_requests_join_the_running_batch(loop, start, engine):
    worker = start()
    long = _job(loop, CHATS[0], Sampling(max_new_tokens=120), stream=True)
    assert worker.submit(long)
    assert _next(loop, long)[0] == "chunk"  # the stream is running
    late = [_job(loop, CHATS[1]), _job(loop, CHATS[2], stream=True)]
    for job in late:
        assert worker.submit(job)
    plain = _next(loop, late[0])  # answered while the long stream still runs: it joined mid-way
    assert plain[0] == "done" and long.out.qsize() < 119
    streamed, done = _answer(loop, late[1])
    expected = [g.text for g in engine.chat([CHATS[1], CHATS[2]], "a", GREEDY)]
    assert [plain[1].text, done[1].text] == expected and streamed == expected[1]
    text, done = _answer(loop, long)
    assert done[0] == "done" and done[1].new_tokens == 120


def test_a_seeded_request_answers_the_same_alone_and_batched(loop, start):
    seeded = Sampling(max_new_tokens=10, temperature=1.0, seed=3)
    worker = start()
    alone = _job(loop, CHATS[0], seeded)
    worker.submit(alone)
    alone_text = _next(loop, alone)[1].text
    crowd = [_job(loop, CHATS[i % 3], Sampling(max_new_tokens=10, temperature=0.9, seed=i), stream=i % 2 == 0)
             for i in range(4)]
    again = _job(loop, CHATS[0], seeded, stream=True)
    for job in crowd[:2] + [again] + crowd[2:]:
        worker.submit(job)
    text, done = _answer(loop, again)
    assert done[1].text == alone_text == text


def test_a_dropped_client_frees_its_row_at_once(loop, start):
    worker = start(max_batch=1)  # one row: the next request can only run once the stream has left
    gone_early, streaming, after = _job(loop, CHATS[1]), _job(loop, CHATS[0], Sampling(max_new_tokens=1000),
                                                                 stream=True), _job(loop, CHATS[1])
    gone_early.cancelled.set()  # its client left while it waited: it is never run
    for job in (gone_early, streaming, after):
        worker.submit(job)
    assert _next(loop, streaming)[0] == "chunk"
    streaming.cancelled.set()  # the client closed the stream after its first token
    started = time.perf_counter()
    assert _next(loop, after)[0] == "done"
    assert time.perf_counter() - started < 30  # 1,000 tokens would take minutes on this CPU
    assert streaming.out.qsize() < 100 and gone_early.out.empty()


def test_a_full_queue_refuses_more_at_once(loop, start):
    worker = start(max_queue=2, max_batch=1)
    running = _job(loop, CHATS[0], Sampling(max_new_tokens=1000), stream=True)
    worker.submit(running)
    assert _next(loop, running)[0] == "chunk"  # it holds the only row
    waiting = [_job(loop, CHATS[1]) for _ in range(3)]
    assert worker.submit(waiting[0]) and worker.submit(waiting[1])
    started = time.perf_counter()
    assert not worker.submit(waiting[2])
    assert time.perf_counter() - started < 0.5  # refused without waiting for the engine
    running.cancelled.set()
    assert [_next(loop, j)[0] for j in waiting[:2]] == ["done", "done"]


def test_an_engine_failure_fails_only_its_requests(loop, start, monkeypatch):
    from jobs.core.engine.batch import Batch

    worker = start()
    real = Batch.step
    monkeypatch.setattr(Batch, "step", lambda self: (_ for _ in ()).throw(RuntimeError("out of memory")))
    bad = _job(loop, CHATS[0])
    worker.submit(bad)
    kind, message = _next(loop, bad)
    assert kind == "error" and "RuntimeError: out of memory" in message
    monkeypatch.setattr(Batch, "step", real)
    good = _job(loop, CHATS[1])
    worker.submit(good)
    assert _next(loop, good)[0] == "done"
    assert wait_for(lambda: worker.waiting() == 0, 5, poll=0.01)


def test_chunks_that_queued_up_go_out_as_one(loop):
    job = _job(loop, CHATS[0], stream=True)
    for item in (("chunk", "a"), ("chunk", "b"), ("done", "g"), ("chunk", "late")):
        job.out.put_nowait(item)
    got = [loop.run_until_complete(job.next_item()) for _ in range(3)]
    assert got == [("chunk", "ab"), ("done", "g"), ("chunk", "late")]
