"""The one thread that runs the engine for the HTTP server.

The engine is not thread-safe, so every request becomes a Job in one queue and this thread alone calls it:
a streamed request runs alone, token by token; plain greedy requests for the same adapter and settings that
are waiting together go through the engine as one batch. A job whose client has gone (its `cancelled` event
set by the server) is dropped from the queue, and a stream in progress stops at its next token, so a dropped
client frees its slot. An exception inside the engine fails only the requests it was serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from jobs.serve.chat import WhitespaceTrim

log = logging.getLogger("qslm.serve")


@dataclass(eq=False)
class Job:
    conversation: list[dict]
    adapter: str
    sampling: object  # jobs.core.engine.generation.Sampling (frozen: comparable, so equal settings batch together)
    stream: bool
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def send(self, item: tuple) -> None:
        """Hand an item to the request's coroutine: ("chunk", text), ("done", Generation) or ("error", message)."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    def batches_with(self, other: "Job") -> bool:
        # Only greedy requests batch: a seeded sample must not depend on which other requests came at once.
        return (not self.stream and not other.stream and self.adapter == other.adapter
                and self.sampling == other.sampling and self.sampling.temperature == 0)


class Worker:
    def __init__(self, engine, max_queue: int, max_batch: int):
        self.engine, self.max_queue, self.max_batch = engine, max_queue, max_batch
        self._jobs: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="qslm-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def waiting(self) -> int:
        """Jobs queued and not yet taken by the engine thread (clients gone excluded)."""
        with self._cv:
            return sum(not j.cancelled.is_set() for j in self._jobs)

    def submit(self, job: Job) -> bool:
        """Queue a job; False when max_queue jobs already wait (the server answers 429)."""
        with self._cv:  # an RLock: waiting() takes it again
            if self.waiting() >= self.max_queue:
                return False
            self._jobs.append(job)
            self._cv.notify()
            return True

    def _next_batch(self) -> list[Job] | None:
        with self._cv:
            while True:
                while self._jobs and self._jobs[0].cancelled.is_set():
                    self._jobs.popleft()  # its client left while it waited
                if self._jobs or self._stopping:
                    break
                self._cv.wait()
            if self._stopping:
                return None
            batch = [self._jobs.popleft()]
            for job in list(self._jobs):
                if len(batch) < self.max_batch and batch[0].batches_with(job) and not job.cancelled.is_set():
                    self._jobs.remove(job)
                    batch.append(job)
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                if batch[0].stream:
                    self._stream(batch[0])
                else:
                    self._chat(batch)
            except Exception as exc:  # a bug in the engine: fail these requests, keep serving the others
                log.exception("engine failed on %d request(s)", len(batch))
                for job in batch:
                    job.send(("error", f"the engine failed: {type(exc).__name__}: {exc}"))

    def _chat(self, batch: list[Job]) -> None:
        generations = self.engine.chat([j.conversation for j in batch], batch[0].adapter, batch[0].sampling)
        for job, generation in zip(batch, generations):
            job.send(("done", generation))

    def _stream(self, job: Job) -> None:
        # Leaving the loop drops the engine's generator, which ends it at once (CPython frees it on return).
        trim = WhitespaceTrim()  # the streamed pieces join to the same text a plain request gets
        for chunk in self.engine.stream(job.conversation, job.adapter, job.sampling):
            if job.cancelled.is_set():
                return  # the client left: stop generating and free the engine for the next request
            text = trim.feed(chunk.text)
            if text:
                job.send(("chunk", text))
            if chunk.generation is not None:
                job.send(("done", chunk.generation))
