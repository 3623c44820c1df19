"""The one thread that runs the engine for the HTTP server: continuous batching of every request.

The engine is not thread-safe, so every request becomes a Job in one queue and this thread alone calls it. Jobs
join one running batch (jobs/core/engine/batch.py) between decode steps as rows free up, streamed and plain alike, each
with its own adapter, sampling settings and seed; a streamed job gets its text step by step, a plain one its
Generation at the end. A job whose client has gone (its `cancelled` event set by the server) is dropped from the
queue, or leaves the batch before the next step, so a dropped client frees its row at once. The queue holds at
most max_queue jobs that have not joined yet; submit refuses more at once (the server answers 429) and never
waits for the engine. An exception inside the engine fails only the requests it was serving.

The batch is sized for the first job's prompt + max_tokens; a job that needs more waits until the batch drains,
and the next batch is made large enough for it (never smaller than the last: recompiles stay rare).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from dataclasses import dataclass, field

from jobs.core.engine.batch import open_batch
from jobs.core.errors import QslmError
from jobs.serve.chat import WhitespaceTrim

log = logging.getLogger("qslm.serve")

# What /v1/models says about adapters (the batch's own `mode` says which one a step used; changes are logged).
LORA_POLICY = ("merged exactly when every request in the batch asks for one model (a build, or `base`: no adapter); "
               "applied per row, unmerged (Punica/S-LoRA style), while the batch mixes them")


@dataclass(eq=False)
class Job:
    conversation: list[dict]
    adapter: str | None  # a build's tag; None: the base model alone
    sampling: object  # jobs.core.engine.generation.Sampling
    stream: bool
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    trim: WhitespaceTrim = field(default_factory=WhitespaceTrim)  # streamed pieces join to the plain answer
    _held: tuple | None = None  # an item taken from `out` while merging chunks, handed out next

    def send(self, item: tuple) -> None:
        """Hand an item to the request's coroutine: ("chunk", text), ("done", Generation) or ("error", message) (the
        server adds its own ("ping", None) to a stream's queue)."""
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)

    async def next_item(self) -> tuple:
        """The next item for the request's coroutine; chunks already waiting behind a chunk come merged into it, so
        a busy server sends fewer, larger events instead of falling further behind."""
        item, self._held = self._held or await self.out.get(), None
        while item[0] == "chunk" and not self.out.empty():
            following = self.out.get_nowait()
            if following[0] != "chunk":
                self._held = following
                break
            item = ("chunk", item[1] + following[1])
        return item


def deliver_to_loops(items: list[tuple[Job, tuple]]) -> None:
    """Items of one decode step into their jobs' queues, one wake-up of each event loop per step (not per token)."""
    by_loop: dict = {}
    for job, item in items:
        by_loop.setdefault(job.loop, []).append((job, item))
    for loop, pairs in by_loop.items():
        loop.call_soon_threadsafe(lambda pairs=pairs: [job.out.put_nowait(item) for job, item in pairs])


class Worker:
    def __init__(self, engine, max_queue: int, max_batch: int, deliver=deliver_to_loops):
        """`deliver`: where each decode step's items go, called once per step on this thread (possibly with
        none); the engine process (engine_process.py) passes one that writes them to its pipe."""
        self.engine, self.max_queue, self.max_batch = engine, max_queue, max_batch
        self._deliver = deliver
        self.lora_policy = LORA_POLICY
        self._jobs: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="qslm-engine", daemon=True)
        self._batch = None
        self._live: list[Job] = []  # jobs in the batch
        self._batch_tokens = 0  # the last batch's length: the next is never shorter

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def waiting(self) -> int:
        """Jobs queued and not yet in the batch (clients gone excluded)."""
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

    def _take(self) -> list[Job] | None:
        """Jobs to try to admit now (as many as the batch has free rows); None once stopping. Waits while there
        is nothing to do."""
        with self._cv:
            while True:
                self._jobs = deque(j for j in self._jobs if not j.cancelled.is_set())  # clients gone while waiting
                busy = self._batch is not None and self._batch.busy()
                if self._stopping:
                    return None
                if self._jobs or busy:
                    break
                self._cv.wait()
            free = self._batch.free() if self._batch is not None else self.max_batch
            return [self._jobs.popleft() for _ in range(min(free, len(self._jobs)))]

    def _run(self) -> None:
        while (joining := self._take()) is not None:
            self._admit(joining)
            for job in [j for j in self._live if j.cancelled.is_set()]:
                self._batch.drop(job)  # the client left: its row is free before the next step
                self._live.remove(job)
            if self._batch is None or not self._batch.busy():
                continue
            mode = self._batch.mode
            try:
                events = self._batch.step()
            except Exception as exc:  # a bug in the engine: fail these requests, keep serving the others
                log.exception("engine failed on %d request(s)", len(self._live))
                for job in self._live:
                    job.send(("error", f"the engine failed: {type(exc).__name__}: {exc}"))
                self._live, self._batch = [], None
                continue
            if self._batch.mode != mode:
                log.info("adapters now %s (%d requests in the batch)", self._batch.mode, len(self._live))
            sends = []
            for job, chunk in events:
                text = job.trim.feed(chunk.text)
                if text and job.stream:
                    sends.append((job, ("chunk", text)))
                if chunk.generation is not None:
                    sends.append((job, ("done", chunk.generation)))
                    self._live.remove(job)
            self._deliver(sends)

    def _admit(self, joining: list[Job]) -> None:
        """Jobs into the batch; one that needs a longer batch goes back to the head of the queue until the batch
        drains, and later jobs wait behind it (first come, first served)."""
        for k, job in enumerate(joining):
            try:
                if self._batch is not None and not self._batch.busy() and self.engine.tokens_needed(
                        job.conversation, job.sampling) > self._batch.tokens:
                    self._batch = None  # idle and too short: the next one is made long enough
                if self._batch is None:
                    tokens = max(self._batch_tokens, self.engine.tokens_needed(job.conversation, job.sampling))
                    self._batch = open_batch(self.engine, self.max_batch, tokens)
                    self._batch_tokens = self._batch.tokens
                    log.info("batch of %d rows x %d tokens, adapters %s", self._batch.free(), self._batch.tokens,
                             self.lora_policy)
                # No free row (the GPU's memory budget can hold fewer rows than max_batch), or too long for this batch
                if not self._batch.free() or not self._batch.add(job, job.conversation, job.adapter, job.sampling):
                    with self._cv:
                        self._jobs.extendleft(reversed(joining[k:]))
                    return
                self._live.append(job)
            except QslmError as exc:  # a request the engine refuses (the server checks the context first)
                job.send(("error", str(exc)))
            except Exception as exc:
                log.exception("engine failed while admitting a request")
                job.send(("error", f"the engine failed: {type(exc).__name__}: {exc}"))
