"""python -m bench.serve_host [--clients 8,32] [--switch 0.005,0.001] [--seconds 8] [--step-ms 2.8] [--host-ms 0.3]
       [--engine-process]

The serving host's cost on the CPU, no GPU needed: how much of the engine's step rate the HTTP side of the server
(jobs/serve/api.py: FastAPI, uvicorn's h11, the streamed events, the Guard) leaves it when N clients stream. The real
app (make_app, its Guard) runs under uvicorn in this process over a real jobs.serve.worker.Worker and the real
continuous batch (jobs/core/engine/batch.py); only the engine under them is fake (FakeEngine): its decode step sleeps
--step-ms with the GIL free (the GPU's part of a step) and then holds the GIL, busy in Python, for --host-ms (the
host's part: sampling, bookkeeping), one token of text (a short word) per live row, never a stop token, so every
answer runs to --new-tokens. The clients are raw asyncio sockets (a request, then count `data: ` lines until
[DONE]), CLIENTS_PER_PROCESS to a process, each asking again as soon as its answer ends, for --seconds after a
second's warm-up. Each --switch value (sys.setswitchinterval in this process, CPython's default 0.005 s) is a row.
  alone steps/s    the batch stepping N rows with no server and no clients: the engine's own rate
  served steps/s   the worker's steps while N clients stream
  share            served tokens/s (live rows summed over steps) / (alone steps/s x N): what the server keeps
  events/s         SSE events the clients counted (a role delta, then about one per row per step)
  server ms/event  this process's CPU time per event, all of it, and outside the engine thread (the event loop)
  client CPU       the client processes' CPU seconds per second (this machine's cores are shared with them)
--engine-process: each row again with the engine (the same FakeEngine) in a process of its own
(jobs/serve/engine_process.py), its steps counted by the child and its tokens as the chunks the server received;
the server's CPU is then all outside the engine (the switch interval applies to the server's process only).
Read the share across rows of one run only: it depends on the machine's cores and their load, and the sleep
overshoots --step-ms by a scheduler tick. Nothing here measures a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from bench.serve import CLIENTS_PER_PROCESS  # real users are separate processes

WORDS = [" qubit", " kernel", " noise", " circuit", " feature", " map", " the", " of", " quantum", " state"]


# --- the fake engine under the real Batch and Worker ---------------------------------------------------------

class FakeTokenizer:
    def decode(self, ids, skip_special_tokens=True) -> str:
        return "".join(WORDS[i % len(WORDS)] for i in ids)

    def apply_chat_template(self, turns, tokenize=False, add_generation_prompt=True) -> str:
        return " ".join(t["content"] for t in turns)

    def __call__(self, text, add_special_tokens=False) -> dict:
        return {"input_ids": list(range(len(text.split())))}


class FakeDecoder:
    """Engine.decoder's interface: rows join and leave; step() emits one token for every live row."""

    def __init__(self, rows: int, length: int, step_s: float, host_s: float):
        self.rows, self.length, self.step_s, self.host_s = rows, length, step_s, host_s
        self.mode, self.steps, self.tokens, self._live, self._next = "merged", 0, 0, {}, 0

    def add(self, prompt, adapter, sampling) -> int:
        self._next += 1
        self._live[self._next] = 0
        return self._next

    def drop(self, rid: int) -> None:
        self._live.pop(rid, None)

    def free(self) -> int:
        return self.rows - len(self._live)

    def busy(self) -> bool:
        return bool(self._live)

    def step(self) -> list[tuple[int, int]]:
        time.sleep(self.step_s)  # the GPU's part: the GIL is free
        until = time.perf_counter() + self.host_s
        while time.perf_counter() < until:  # the host's part, under the GIL
            pass
        self.steps, self.tokens = self.steps + 1, self.tokens + len(self._live)
        for rid in self._live:
            self._live[rid] += 1
        return [(rid, n) for rid, n in self._live.items()]


class FakeEngine:
    path = "fake (bench/serve_host.py)"
    path_note = "a sleep and a busy loop per step"
    context = 4096
    base_dir = None
    _stop_ids: list[int] = []

    def __init__(self, step_s: float, host_s: float):
        self.step_s, self.host_s, self.tokenizer, self.decoders = step_s, host_s, FakeTokenizer(), []

    def prompt_ids(self, conversations) -> list[list[int]]:
        return [[1] * 16 for _ in conversations]

    def _check(self, prompts, adapter, sampling, names) -> None:
        pass

    def tokens_needed(self, conversation, sampling) -> int:
        return 16 + sampling.max_new_tokens

    def decoder(self, rows: int, tokens: int) -> FakeDecoder:
        self.decoders.append(FakeDecoder(rows, tokens, self.step_s, self.host_s))
        return self.decoders[-1]

    def counts(self) -> tuple[int, int]:
        """(steps, tokens) so far."""
        return sum(d.steps for d in self.decoders), sum(d.tokens for d in self.decoders)


def alone_rate(engine: FakeEngine, rows: int, new_tokens: int, seconds: float) -> float:
    """Steps/s of a batch kept at `rows` requests, with no server: the engine's own rate."""
    from jobs.core.engine.batch import open_batch
    from jobs.core.engine.generation import Sampling

    batch, sampling, made = open_batch(engine, rows, 16 + new_tokens), Sampling(max_new_tokens=new_tokens), 0
    start, steps = time.perf_counter() + 0.5, -1  # half a second's warm-up
    while time.perf_counter() - start < seconds:
        if steps < 0 and time.perf_counter() >= start:
            steps = 0
        while batch.free():
            made += 1
            batch.add(made, [{"role": "user", "content": "q"}], None, sampling)
        batch.step()
        steps += steps >= 0
    return steps / (time.perf_counter() - start)


# --- the clients (separate processes) ------------------------------------------------------------------------

async def _clients(port: int, count: int, new_tokens: int, start: float, end: float) -> dict:
    """`count` clients streaming until `end` (wall clock); events counted between `start` and `end`."""
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "What is a quantum kernel?"}],
                       "max_tokens": new_tokens, "stream": True, "stream_options": {"include_usage": True}}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    counted, answers = [0], [0]

    async def ask() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        tail = b""
        try:
            while time.time() < end:
                data = await reader.read(65536)
                if not data:
                    raise RuntimeError(f"the server closed the stream early: {tail!r}")
                seen = tail + data  # "data: " split between two reads is counted once
                if time.time() >= start:
                    counted[0] += seen.count(b"data: ") - tail.count(b"data: ")
                if b"data: [DONE]" in seen:
                    answers[0] += 1
                    return
                tail = seen[-12:]
        finally:
            writer.close()

    async def client() -> None:
        while time.time() < end:
            await ask()

    await asyncio.gather(*(client() for _ in range(count)))
    return {"events": counted[0], "answers": answers[0]}


def spawn_clients(port: int, count: int, new_tokens: int, start: float, end: float) -> subprocess.Popen:
    job = json.dumps({"port": port, "count": count, "new_tokens": new_tokens, "start": start, "end": end})
    return subprocess.Popen([sys.executable, "-m", "bench.serve_host", "--client", job], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])


# --- the server in this process ------------------------------------------------------------------------------

def thread_cpu_s(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process (Linux /proc)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def served(engine: FakeEngine, clients: int, new_tokens: int, seconds: float, own_process: bool) -> dict:
    """With `own_process`, the engine (a FakeEngine like `engine`) runs in a ProcessWorker's child: steps are the
    child's, tokens the chunks this process received, and all of this process's CPU is outside the engine."""
    import uvicorn

    from jobs.serve.api import make_app
    from jobs.serve.engine_process import ProcessWorker
    from jobs.serve.guard import MAX_HEADER_BYTES
    from jobs.serve.worker import Worker

    build = SimpleNamespace(tag="bench", system_prompt=lambda: None,
                            spec=SimpleNamespace(eval=SimpleNamespace(max_new_tokens=new_tokens)))
    if own_process:
        worker = ProcessWorker(partial(FakeEngine, engine.step_s, engine.host_s), max_queue=1024, max_batch=clients)
        await asyncio.to_thread(worker.start)
        counts = lambda: (worker.steps, worker.chunks)  # noqa: E731
        engine_cpu_s = lambda: 0.0  # noqa: E731
    else:
        worker = Worker(engine, max_queue=1024, max_batch=clients)
        worker.start()
        counts = engine.counts
        engine_cpu_s = lambda: thread_cpu_s(worker._thread.native_id)  # noqa: E731
    lines = []
    app = make_app({"bench": build}, worker, FakeTokenizer(), engine.context, log=lines.append)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # as jobs.serve.api.run_http serves
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http="h11",
                                           h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_keep_alive=5))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    start = time.time() + 1.5  # client processes start, then a second of warm-up
    procs = [spawn_clients(port, min(CLIENTS_PER_PROCESS, clients - k), new_tokens, start, start + seconds)
             for k in range(0, clients, CLIENTS_PER_PROCESS)]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    await asyncio.sleep(start - time.time())
    (steps, tokens), cpu, engine_cpu = counts(), time.process_time(), engine_cpu_s()
    await asyncio.sleep(seconds)
    (steps_end, tokens_end), cpu = counts(), time.process_time() - cpu
    steps, tokens = steps_end - steps, tokens_end - tokens
    engine_cpu = engine_cpu_s() - engine_cpu
    parts = [json.loads((await asyncio.to_thread(p.communicate))[0]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a client process failed (its traceback is above)")
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    server.should_exit = True
    await serving
    await asyncio.to_thread(worker.stop)
    events = sum(p["events"] for p in parts)
    return {"clients": clients, "steps_per_s": steps / seconds, "tokens_per_s": tokens / seconds,
            "events_per_s": events / seconds,
            "answers": sum(p["answers"] for p in parts), "cpu_ms_per_event": 1000 * cpu / max(events, 1),
            "loop_ms_per_event": 1000 * (cpu - engine_cpu) / max(events, 1),
            "client_cpu_per_s": (done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime) / seconds,
            "requests_logged": len(lines)}


def table(rows: list[dict]) -> str:
    out = ["| engine in | switch interval (s) | clients | alone steps/s | served steps/s | share of tokens/s | "
           "events/s | server ms/event (all / outside engine) | client CPU (s/s) |", "|" + " --- |" * 9]
    for r in rows:
        out.append(f"| {r['engine_in']} | {r['switch']} | {r['clients']} | {r['alone']:.0f} | {r['steps_per_s']:.0f} | "
                   f"{r['tokens_per_s'] / (r['alone'] * r['clients']):.0%} | {r['events_per_s']:,.0f} | "
                   f"{r['cpu_ms_per_event']:.3f} / "
                   f"{r['loop_ms_per_event']:.3f} | {r['client_cpu_per_s']:.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serve_host", description=__doc__.split("\n\n")[1])
    p.add_argument("--clients", default="8,32", help="concurrency levels, comma-separated")
    p.add_argument("--switch", default="0.005", help="sys.setswitchinterval values (s), comma-separated: a row each")
    p.add_argument("--seconds", type=float, default=8.0, help="measured seconds per row")
    p.add_argument("--step-ms", type=float, default=2.8, help="the fake step's GIL-free part (the GPU's)")
    p.add_argument("--host-ms", type=float, default=0.3, help="the fake step's part under the GIL (the host's)")
    p.add_argument("--new-tokens", type=int, default=256, help="max_tokens of every request (answers run to it)")
    p.add_argument("--engine-process", action="store_true", help="each row again with the engine in a process of "
                   "its own (jobs/serve/engine_process.py)")
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    p.add_argument("--client", help=argparse.SUPPRESS)  # a client process: its job as JSON
    args = p.parse_args(argv)
    if args.client:
        print(json.dumps(asyncio.run(_clients(**json.loads(args.client)))))
        return 0
    levels = [int(c) for c in args.clients.split(",")]
    step_s, host_s = args.step_ms / 1000, args.host_ms / 1000
    default_switch = sys.getswitchinterval()
    alone = {n: alone_rate(FakeEngine(step_s, host_s), n, args.new_tokens, args.seconds) for n in levels}
    rows = []
    for switch in (float(s) for s in args.switch.split(",")):
        sys.setswitchinterval(switch)
        for n in levels:
            for own in (False, True) if args.engine_process else (False,):
                r = asyncio.run(served(FakeEngine(step_s, host_s), n, args.new_tokens, args.seconds, own))
                where = "own process" if own else "server process"
                rows.append({**r, "switch": switch, "alone": alone[n], "engine_in": where})
                print(f"switch {switch} s, {n} clients, engine in {where}: {r}", flush=True)
    sys.setswitchinterval(default_switch)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
