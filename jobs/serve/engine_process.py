"""The engine in a process of its own (`python -m jobs.serve.api --engine-process`): the HTTP server's event loop and
the engine's host work no longer share one GIL (vLLM's split of API server and engine core).

ProcessWorker has the interface the server uses from Worker (start, stop, submit, waiting, max_queue, lora_policy,
engine.path), and each Job gets the same items on its `out` queue. The child ('spawn': CUDA is never initialised in
the server) builds the engine with `load` (a picklable callable) and runs a real Worker over it: its jobs are stand-ins
whose items go to a pipe, one message per decode step with every row's items (plus how many jobs it has received and
how many wait, so the server answers 429 itself, without a round trip). In the server a reader thread hands each
step's items to the jobs' event loops, one wake-up per loop per step (worker.deliver_to_loops), and tells the child
about jobs whose client has gone (their `cancelled` set), at each step and at least every CANCEL_POLL_S, so their
rows free promptly. If the child dies, every job in flight gets an error item and later jobs get one at once: never a hang.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from dataclasses import dataclass, field

from jobs.core.errors import QslmError
from jobs.serve import ServeError
from jobs.serve.chat import WhitespaceTrim
from jobs.serve.worker import LORA_POLICY, Job, Worker, deliver_to_loops

log = logging.getLogger("qslm.serve")

CANCEL_POLL_S = 0.05  # an idle child still hears of a gone client this soon
STOP_S = 30  # stop() waits this long for the child to finish, then terminates it


@dataclass(frozen=True)
class EngineInfo:
    """What the server reads of the child's engine: /v1/models' `serving.engine`, the context it checks requests
    against, its base model's folder (the server's own tokenizer) and the path's note (builds.describe)."""
    path: str
    context: int
    base_dir: str | None
    path_note: str


def served_engine(tags: list[str], store_url: str, device: str, max_batch: int):
    """The engine api.main loads, from picklable arguments: the builds' adapters over their base (in the child)."""
    from jobs.core.store.backends import open_store
    from jobs.serve.builds import load_engine, open_build

    store = open_store(store_url)
    return load_engine([open_build(store, tag) for tag in tags], device, max_batch)


# --- the child ----------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Remote:
    """A Job in the child: what Worker reads of one, with its items written to the server's pipe."""
    id: int
    conversation: list[dict]
    adapter: str | None
    sampling: object
    stream: bool
    out: object  # the child's report(items): errors outside a step go at once
    cancelled: threading.Event = field(default_factory=threading.Event)
    trim: WhitespaceTrim = field(default_factory=WhitespaceTrim)

    def send(self, item: tuple) -> None:
        self.out([(self, item)])


def _child(load, max_batch: int, inbox, outbox) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server's stop() ends this
    try:
        engine = load()
    except Exception as exc:  # noqa: BLE001 - the server reports it and exits
        outbox.send(("failed", str(exc) if isinstance(exc, QslmError) else f"{type(exc).__name__}: {exc}"))
        return
    outbox.send(("ready", EngineInfo(engine.path, engine.context, None if engine.base_dir is None
                                     else str(engine.base_dir), engine.path_note)))
    jobs: dict[int, _Remote] = {}
    lock = threading.Lock()  # the worker thread and this one both write to the server
    count = {"received": 0, "steps": 0, "reported": None}

    def report(items: list) -> None:
        with lock:  # the state read and sent together: the server never gets an older one after a newer
            state = (count["received"], worker.waiting())
            if items or state != count["reported"]:
                outbox.send(("step", count["steps"], *state, [(job.id, item) for job, item in items]))
                count["reported"] = state
        for job, item in items:
            if item[0] != "chunk":
                jobs.pop(job.id, None)

    def deliver(items: list) -> None:  # once per decode step, on the worker thread
        count["steps"] += 1
        report(items)

    worker = Worker(engine, max_queue=1 << 30, max_batch=max_batch, deliver=deliver)  # the server counts the queue
    worker.start()
    try:
        while True:
            message = inbox.recv()
            if message[0] == "submit":
                _, jid, conversation, adapter, sampling, stream = message
                jobs[jid] = job = _Remote(jid, conversation, adapter, sampling, stream, report)
                count["received"] += 1
                worker.submit(job)
            elif message[0] == "cancel":
                if (job := jobs.pop(message[1], None)) is not None:
                    job.cancelled.set()
                report([])  # the server's count of waiting jobs drops now, not at the next step
            else:  # "stop"
                break
    except EOFError:  # the server is gone
        pass
    finally:
        worker.stop()


# --- the server side ----------------------------------------------------------------------------------------

class ProcessWorker:
    """Worker's interface over an engine in a child process; `load()` (picklable, run in the child) makes the engine.
    start() returns once the engine is loaded (`engine` is then its EngineInfo) and raises ServeError if it fails."""

    def __init__(self, load, max_queue: int, max_batch: int):
        self.load, self.max_queue, self.max_batch = load, max_queue, max_batch
        self.lora_policy = LORA_POLICY
        self.engine: EngineInfo | None = None
        self._jobs: dict[int, Job] = {}  # sent and not finished
        self._lock = threading.Lock()  # _jobs, the counts, and writes to the child
        self._next = self._sent = self._received = self._child_waiting = 0
        self.steps = self.chunks = 0  # the child's decode steps and the chunk items received (benchmarks)
        self._dead: str | None = None
        self._stopping = False
        ctx = multiprocessing.get_context("spawn")  # a fork would copy a CUDA context; spawn starts clean
        self._from_child, child_out = ctx.Pipe(duplex=False)
        child_in, self._to_child = ctx.Pipe(duplex=False)
        self._child_ends = (child_in, child_out)
        self.process = ctx.Process(target=_child, args=(load, max_batch, child_in, child_out), name="qslm-engine",
                                   daemon=True)
        self._reader = threading.Thread(target=self._read, name="qslm-engine-reader", daemon=True)

    def start(self) -> None:
        self.process.start()
        for end in self._child_ends:
            end.close()  # the child's now: its exit closes the pipe, and the reader sees EOF
        try:
            message = self._from_child.recv()  # the load takes seconds (CPU) to minutes (a GPU's first load)
        except EOFError:
            self.process.join(5)
            message = ("failed", f"it exited with code {self.process.exitcode}")
        if message[0] != "ready":
            self.process.join(5)
            raise ServeError(f"the engine process could not load the engine: {message[1]}")
        self.engine = message[1]
        self._reader.start()

    def stop(self) -> None:
        self._stopping = True
        try:
            with self._lock:
                self._to_child.send(("stop",))
        except OSError:  # already gone
            pass
        self.process.join(STOP_S)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self._reader.is_alive():
            self._reader.join(5)

    def waiting(self) -> int:
        """Jobs not yet in the batch: those the child last said wait, and those sent since it said so."""
        with self._lock:
            return self._child_waiting + self._sent - self._received

    def submit(self, job: Job) -> bool:
        """Send a job to the child; False when max_queue jobs already wait (the server answers 429)."""
        with self._lock:
            if self._dead is None:
                if self._child_waiting + self._sent - self._received >= self.max_queue:
                    return False
                self._next += 1
                try:
                    self._to_child.send(("submit", self._next, job.conversation, job.adapter, job.sampling,
                                         job.stream))
                except OSError as exc:  # the reader has not seen the exit yet
                    self._dead = self._dead or f"the engine process is gone ({exc})"
                else:
                    self._jobs[self._next] = job
                    self._sent += 1
                    return True
        job.send(("error", self._dead))
        return True

    def _read(self) -> None:
        while True:
            try:
                if self._from_child.poll(CANCEL_POLL_S):
                    message = self._from_child.recv()
                else:
                    message = None
            except (EOFError, OSError):
                break
            if message is not None:
                self._dispatch(*message[1:])
            self._send_cancels()
        self.process.join(5)
        code = self.process.exitcode
        with self._lock:
            self._dead = (f"the engine process exited (code {code}); restart the server" if not self._stopping
                          else "the server is stopping")
            lost, self._jobs = list(self._jobs.values()), {}
        if not self._stopping:
            log.error("%s; %d request(s) in flight failed", self._dead, len(lost))
        deliver_to_loops([(job, ("error", self._dead)) for job in lost])

    def _dispatch(self, steps: int, received: int, waiting: int, items: list) -> None:
        pairs = []
        with self._lock:
            self.steps, self._received, self._child_waiting = steps, received, waiting
            for jid, item in items:
                job = self._jobs.get(jid)
                if job is None:  # cancelled here already
                    continue
                pairs.append((job, item))
                if item[0] == "chunk":
                    self.chunks += 1
                else:
                    del self._jobs[jid]
        deliver_to_loops(pairs)

    def _send_cancels(self) -> None:
        with self._lock:
            gone = [jid for jid, job in self._jobs.items() if job.cancelled.is_set()]
            try:
                for jid in gone:
                    del self._jobs[jid]
                    self._to_child.send(("cancel", jid))
            except OSError:  # the child died: the next recv sees it
                pass
