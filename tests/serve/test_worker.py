"""The server's engine thread: batching, one stream at a time, dropped clients, engine failures, a full queue.

The engine here is a recording double (the scheduling is under test, not generation); the real engine runs
behind the same worker in test_api.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from jobs.core.engine.generation import Chunk, Generation, Sampling
from jobs.serve.worker import Job, Worker
from tests.conftest import wait_for

GREEDY, SAMPLED = Sampling(max_new_tokens=4), Sampling(max_new_tokens=4, temperature=0.7, seed=1)


class RecordingEngine:
    def __init__(self, stream_tokens: int = 3, token_s: float = 0.0):
        self.calls: list[tuple] = []
        self.token_s = token_s  # seconds per streamed token
        self.release = threading.Event()  # the first call waits for it, so later jobs pile up in the queue
        self.streamed = 0
        self.stream_tokens = stream_tokens

    def chat(self, conversations, adapter, sampling):
        self.release.wait(10)
        self.calls.append(("chat", adapter, [c[-1]["content"] for c in conversations]))
        if any(c[-1]["content"] == "fail" for c in conversations):
            raise RuntimeError("out of memory")
        return [Generation(f"{adapter}:{c[-1]['content']}", 2, True, "stop") for c in conversations]

    def stream(self, conversation, adapter, sampling):
        self.release.wait(10)
        self.calls.append(("stream", adapter, [conversation[-1]["content"]]))
        for _ in range(self.stream_tokens):
            self.streamed += 1
            yield Chunk("x", None)
            threading.Event().wait(self.token_s)
        yield Chunk("", Generation("x" * self.stream_tokens, self.stream_tokens, False, "length"))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _job(loop, text, adapter="a", sampling=GREEDY, stream=False) -> Job:
    return Job([{"role": "user", "content": text}], adapter, sampling, stream, loop)


def _next(loop, job, timeout=10):
    return loop.run_until_complete(asyncio.wait_for(job.out.get(), timeout))


def _worker(engine, **kw) -> Worker:
    worker = Worker(engine, kw.get("max_queue", 16), kw.get("max_batch", 8))
    worker.start()
    return worker


def test_waiting_greedy_requests_for_one_adapter_go_through_as_one_batch(loop):
    engine = RecordingEngine()
    worker = _worker(engine)
    jobs = [_job(loop, "q0"), _job(loop, "q1"), _job(loop, "q2", adapter="b"), _job(loop, "q3"),
            _job(loop, "q4", sampling=SAMPLED), _job(loop, "q5", stream=True)]
    assert worker.submit(jobs[0])
    _wait_until(lambda: worker.waiting() == 0)  # the engine thread took q0 and waits inside the engine
    for job in jobs[1:]:
        assert worker.submit(job)
    engine.release.set()
    answers = [_next(loop, j) for j in jobs[:5]]
    assert [a[1].text for a in answers] == ["a:q0", "a:q1", "b:q2", "a:q3", "a:q4"]
    assert _next(loop, jobs[5]) == ("chunk", "x")
    worker.stop()
    # q0 ran alone (the engine was busy when the others came); then q1 and q3 together, in arrival order;
    # another adapter, a sampled request (its seed must not depend on neighbours) and a stream each alone.
    assert engine.calls == [("chat", "a", ["q0"]), ("chat", "a", ["q1", "q3"]), ("chat", "b", ["q2"]),
                            ("chat", "a", ["q4"]), ("stream", "a", ["q5"])]


def test_a_dropped_client_frees_its_slot(loop):
    engine = RecordingEngine(stream_tokens=1000, token_s=0.01)  # 10 s if it ran to its end
    worker = _worker(engine)
    gone_early, streaming, after = _job(loop, "gone"), _job(loop, "long", stream=True), _job(loop, "next")
    gone_early.cancelled.set()  # its client left while it waited: it is never run
    for job in (gone_early, streaming, after):
        worker.submit(job)
    engine.release.set()
    assert _next(loop, streaming) == ("chunk", "x")
    streaming.cancelled.set()  # the client closed the stream after its first token
    assert _next(loop, after)[1].text == "a:next"
    worker.stop()
    assert ("chat", "a", ["gone"]) not in engine.calls
    assert engine.streamed < 1000  # the stream stopped at the next token instead of running to its end


def test_an_engine_failure_fails_only_its_requests(loop):
    engine = RecordingEngine()
    engine.release.set()
    worker = _worker(engine)
    bad, good = _job(loop, "fail", adapter="b"), _job(loop, "fine")
    worker.submit(bad)
    worker.submit(good)
    kind, message = _next(loop, bad)
    assert kind == "error" and "RuntimeError: out of memory" in message
    assert _next(loop, good)[1].text == "a:fine"
    worker.stop()


def test_a_full_queue_refuses_more(loop):
    engine = RecordingEngine()
    worker = _worker(engine, max_queue=2)
    jobs = [_job(loop, f"q{i}") for i in range(4)]
    assert worker.submit(jobs[0])
    _wait_until(lambda: worker.waiting() == 0)  # the engine thread took q0 and waits inside the engine
    assert worker.submit(jobs[1]) and worker.submit(jobs[2])
    assert not worker.submit(jobs[3])
    engine.release.set()
    assert [_next(loop, j)[1].text for j in jobs[:3]] == ["a:q0", "a:q1", "a:q2"]
    worker.stop()


def _wait_until(condition, timeout=5.0):
    if not wait_for(condition, timeout, poll=0.01):
        raise AssertionError("condition not reached")
