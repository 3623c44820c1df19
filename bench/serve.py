"""python -m bench.serve --out DIR [--work DIR] [--new-tokens 256] [--clients 1,8,32,64] [--rounds 2] [--smoke]
       [--engine-process]

Serving benchmark: the OpenAI-compatible server (jobs/serve/api.py, its worker and continuous batching) under 1, 8,
32 and 64 concurrent streaming clients, each asking the eval suite's questions one after another (--rounds each),
through the official `openai` client (AsyncOpenAI). The clients run in separate processes, at most 8 to a process
(CLIENTS_PER_PROCESS), started together: clients and server share no GIL, and no one client process caps the rate.
The server runs in this process on 127.0.0.1, over the same engine the bench measured first:
  engine     Engine.chat on as many questions at once as there are clients: the engine's own batch rate
  one        every client asks build `a`: aggregate new tokens/s, time to first token and time between tokens
             (p50 / p95), and the rate as a share of the engine's at that batch size
  two        the same with builds `a` and `b` (two adapters on one base) interleaved, client by client: the batch
             mixes adapters (per-row LoRA), so the rate is compared with `one` at the same concurrency
GPU: the v1 spec (4-bit NF4, float16 compute) on a random Qwen2.5-1.5B-shaped model, two random r16 LoRA adapters.
The bench model's output rows for the stop tokens and for ids its (tiny) tokenizer lacks are zeroed (the
embedding is tied), so greedy answers run to max_tokens and every token is text; every matmul keeps its shape.
--engine-process: each level again with the server's engine in a process of its own (jobs/serve/engine_process.py:
the HTTP side and the engine's host work then share no GIL), loaded as a second engine beside the one measured
first (two engines within the v1 spec's 11.5 GiB budget each fit an 80 GB card); the table's first column says where
the engine ran. Prints a table and writes DIR/results.json and DIR/table.md. --smoke runs it on the CPU with the tiny
model (the fast path without graphs): it checks the script, its numbers mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

TARGETS = {"share_at_32": 0.70, "ttft_p95_s_at_32": 0.5, "two_vs_one": 0.70}  # the bars
# One Python process of the openai client parses about 9,000 streamed chunks/s (about 3x the server's CPU per
# event): one process for 32 or 64 streams capped the served rate well below the engine's. Real users are
# separate processes, so each client process runs at most this many concurrent clients.
CLIENTS_PER_PROCESS = 8


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# --- the client side (separate processes) -------------------------------------------------------------------

async def _clients(url: str, models: list[str], questions: list[str], indices: list[int], rounds: int,
                   max_tokens: int) -> dict:
    """Clients `indices` (global client numbers) of one client process; raw lists, merged by run_clients."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600)

    async def ask(model: str, question: str) -> dict:
        start = time.perf_counter()
        first = last = None
        gaps, tokens = [], 0
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                now = time.perf_counter()
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return {"ttft": (first or time.perf_counter()) - start, "gaps": gaps, "tokens": tokens}

    async def one_client(i: int) -> list[dict]:
        return [await ask(models[(i + k) % len(models)], questions[(i * rounds + k) % len(questions)])
                for k in range(rounds)]

    print("ready", flush=True)
    sys.stdin.readline()  # "go": every client process has imported and made its client, so all start together
    start = time.time()  # wall clock: the processes' times are merged
    results = [r for rs in await asyncio.gather(*(one_client(i) for i in indices)) for r in rs]
    end = time.time()
    await client.close()
    return {"start": start, "end": end, "requests": len(results), "new_tokens": sum(r["tokens"] for r in results),
            "ttft": [r["ttft"] for r in results], "gaps": [g for r in results for g in r["gaps"]]}


def spawn_client(job: dict, indices: list[int]) -> subprocess.Popen:
    log = tempfile.TemporaryFile("w+")  # stderr in a file: a full pipe would block the process
    proc = subprocess.Popen([sys.executable, "-m", "bench.serve", "--client"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True, cwd=Path(__file__).resolve().parents[1])
    proc.log = log
    proc.stdin.write(json.dumps({**job, "indices": indices}) + "\n")
    proc.stdin.flush()
    return proc


def failed(proc: subprocess.Popen) -> RuntimeError:
    proc.kill()
    proc.wait()
    proc.log.seek(0)
    return RuntimeError(f"client process failed (exit {proc.returncode}): {proc.log.read()[-2000:]}")


def finish(proc: subprocess.Popen) -> dict:
    out = proc.stdout.read()
    if proc.wait():
        raise failed(proc)
    return json.loads(out.strip().splitlines()[-1])


def merge(parts: list[dict], clients: int) -> dict:
    ttft = [t for p in parts for t in p["ttft"]]
    gaps = [g for p in parts for g in p["gaps"]]
    tokens = sum(p["new_tokens"] for p in parts)
    seconds = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    return {"clients": clients, "requests": sum(p["requests"] for p in parts), "new_tokens": tokens,
            "seconds": seconds, "tokens_per_s": tokens / seconds, "ttft_p50_s": pct(ttft, 0.5),
            "ttft_p95_s": pct(ttft, 0.95), "tbt_p50_ms": 1e3 * pct(gaps, 0.5), "tbt_p95_ms": 1e3 * pct(gaps, 0.95),
            "client_processes": len(parts)}


def run_clients(url: str, models: list[str], questions: list[str], clients: int, rounds: int, max_tokens: int):
    """`clients` concurrent clients over ceil(clients / CLIENTS_PER_PROCESS) client processes, started together
    (each says "ready" once it has made its client, then all are told "go"); their results merged."""
    job = {"url": url, "models": models, "questions": questions, "rounds": rounds, "max_tokens": max_tokens}
    n = -(-clients // CLIENTS_PER_PROCESS)
    procs = []
    timer = threading.Timer(900, lambda: [p.kill() for p in procs])  # a hung process ends the reads below
    timer.start()
    try:
        for k in range(n):
            procs.append(spawn_client(job, list(range(k, clients, n))))
        for proc in procs:
            if proc.stdout.readline().strip() != "ready":
                raise failed(proc)
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.close()
        return merge([finish(proc) for proc in procs], clients)
    finally:
        timer.cancel()
        for proc in procs:
            proc.kill()  # no orphans when one failed; a no-op for those already done
            proc.wait()
            proc.log.close()


# --- the server side ----------------------------------------------------------------------------------------

def bench_model(source: Path, work: Path, stop_ids: list[int], vocab: int) -> Path:
    """A copy of `source` whose output rows for stop tokens and ids >= vocab are zero (see the docstring)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    out = work / "serve-model"
    if (out / "config.json").is_file():
        return out
    shutil.copytree(source, out, dirs_exist_ok=True)
    for path in out.glob("*.safetensors"):
        tensors = load_file(path)
        for name, t in tensors.items():
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                t[vocab:] = 0
                t[torch.tensor(stop_ids)] = 0
        save_file(tensors, path, metadata={"format": "pt"})
    return out


def make_adapter(model_dir: Path, out: Path, seed: int, device: str) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if not (out / "adapter_config.json").is_file():
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map={"": device})
        lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                          init_lora_weights=False, task_type="CAUSAL_LM")
        get_peft_model(base, lora).save_pretrained(str(out))
    return out


def start_server(engine, spec, work: Path, max_batch: int, load=None):
    """The API app over a worker, served by uvicorn in a thread on a free loopback port; (url, stop function). With
    `load` (a picklable callable that makes the engine), the worker is a ProcessWorker: a second engine, loaded in
    a process of its own, answers instead of `engine`."""
    import uvicorn

    from jobs.core.engine.loading import load_tokenizer
    from jobs.serve.api import make_app
    from jobs.serve.builds import Build
    from jobs.serve.engine_process import ProcessWorker
    from jobs.serve.worker import Worker

    made = datetime.now(timezone.utc).isoformat()
    builds = {tag: Build(tag, {"status": "passed", "created_at": made}, spec, work) for tag in engine.adapters}
    worker = Worker(engine, 1024, max_batch) if load is None else ProcessWorker(load, 1024, max_batch)
    worker.start()
    app = make_app(builds, worker, load_tokenizer(worker.engine.base_dir), worker.engine.context)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(30)
        worker.stop()
    return f"http://127.0.0.1:{port}/v1", stop


def serve_levels(url: str, questions: list[str], levels: list[int], args, r: dict, engine_rates: dict, worker: str,
                 start: float) -> None:
    """Every level's `one` and `two` rows against the server at `url` (after a warm-up of every level)."""
    for c in levels:  # warm-up: every batch size's graphs, merged and mixed, before any timing
        run_clients(url, ["a", "b"], questions, c, 1, args.new_tokens)  # full length: the batch is sized
        run_clients(url, ["a"], questions, c, 1, args.new_tokens)  # by its first request
    print(f"{time.perf_counter() - start:.0f} s: warm ({worker})", flush=True)
    for c in levels:
        one = run_clients(url, ["a"], questions, c, args.rounds, args.new_tokens)
        two = run_clients(url, ["a", "b"], questions, c, args.rounds, args.new_tokens)
        r["levels"].append({"clients": c, "worker": worker, "engine": engine_rates[c], "one": one, "two": two})
        (args.out / "results.json").write_text(json.dumps(r, indent=2, default=str) + "\n")  # partial
        print(f"{time.perf_counter() - start:.0f} s: {c} clients ({one['client_processes']} client processes, "
              f"engine {worker}): engine {engine_rates[c]['tokens_per_s']:.0f} tok/s, served "
              f"{one['tokens_per_s']:.0f} (one adapter), {two['tokens_per_s']:.0f} (two)", flush=True)


def engine_rate(engine, chats: list, clients: int, new_tokens: int) -> dict:
    from jobs.core.engine.batch import open_batch
    from jobs.core.engine.generation import Sampling

    batch = [chats[i % len(chats)] for i in range(clients)]
    sampling = Sampling(max_new_tokens=new_tokens)
    engine.chat(batch, "a", sampling)  # warm-up: compile and capture this batch size
    start = time.perf_counter()
    answers = engine.chat(batch, "a", sampling)
    seconds = time.perf_counter() - start
    tokens = sum(g.new_tokens for g in answers)
    return {"clients": clients, "new_tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def agreement(engine, chats: list, tokens: int = 32) -> dict:
    """Greedy answers of one mixed batch (a, b and the base interleaved, per-row LoRA) against each adapter's own
    Engine.chat (merged): the share of answers equal token for token (bf16 rounding differs between the two)."""
    from jobs.core.engine.batch import open_batch
    from jobs.core.engine.generation import Sampling

    greedy, which = Sampling(max_new_tokens=tokens), ("a", "b", None)
    alone = {a: [g.text for g in engine.chat(chats, a, greedy)] for a in which}
    batch = open_batch(engine, len(chats) * len(which), 1024)
    for i, chat in enumerate(chats):
        for a in which:
            batch.add((i, a), chat, a, greedy)
    got, modes = {}, set()
    while batch.busy():
        modes.add(batch.mode)
        got.update((key, c.generation.text) for key, c in batch.step() if c.generation)
    equal = sum(got[(i, a)] == alone[a][i] for i in range(len(chats)) for a in which)
    return {"answers": len(got), "equal": equal, "modes": sorted(modes)}


def table(r: dict) -> str:
    lines = ["| engine in | clients | client processes | engine batch tok/s | adapters | served tok/s | share of "
             "engine | TTFT p50 / p95 (s) | between tokens p50 / p95 (ms) |", "|" + " --- |" * 9]
    for row in r["levels"]:
        for kind in ("one", "two"):
            s = row[kind]
            lines.append(f"| {row['worker']} | {row['clients']} | {s['client_processes']} | "
                         f"{row['engine']['tokens_per_s']:,.0f} | "
                         f"{'a' if kind == 'one' else 'a+b interleaved'} | {s['tokens_per_s']:,.0f} | "
                         f"{s['tokens_per_s'] / row['engine']['tokens_per_s']:.0%} | {s['ttft_p50_s']:.3f} / "
                         f"{s['ttft_p95_s']:.3f} | {s['tbt_p50_ms']:.1f} / {s['tbt_p95_ms']:.1f} |")
    return "\n".join(lines)


def verdict(r: dict) -> str:
    rows = [row for row in r["levels"] if row["clients"] == 32]
    if not rows:
        return "targets need the 32-client level"
    lines = []
    for row in rows:
        share = row["one"]["tokens_per_s"] / row["engine"]["tokens_per_s"]
        two = row["two"]["tokens_per_s"] / row["one"]["tokens_per_s"]
        lines.append(f"at 32 clients, engine {row['worker']}: {share:.0%} of the engine's batch rate (target >= "
                     f"{TARGETS['share_at_32']:.0%}), TTFT p95 {row['one']['ttft_p95_s']:.3f} s (target < "
                     f"{TARGETS['ttft_p95_s_at_32']} s), two adapters interleaved at {two:.0%} of one adapter's rate "
                     f"(target >= {TARGETS['two_vs_one']:.0%})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[1])
    p.add_argument("--out", type=Path, help="folder for results.json and table.md")
    p.add_argument("--work", type=Path, default=Path("/tmp/qslm-serve-bench"), help="model and adapter folder")
    p.add_argument("--new-tokens", type=int, default=256, help="max_tokens of every request (answers run to it)")
    p.add_argument("--clients", default="1,8,32,64", help="concurrency levels, comma-separated")
    p.add_argument("--rounds", type=int, default=2, help="requests each client sends, one after another")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model: checks the script only")
    p.add_argument("--engine-process", action="store_true", help="after the levels with the engine in the server's "
                   "process, the same levels with it in a process of its own (jobs/serve/engine_process.py)")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)  # the client process (JSON on stdin)
    args = p.parse_args(argv)
    if args.client:
        job = json.loads(sys.stdin.readline())  # then "go" on the next line (see run_clients)
        print(json.dumps(asyncio.run(_clients(**job))))
        return 0
    if args.out is None:
        p.error("--out is required")
    import torch

    from bench.benchmodel import build_model
    from jobs.core.engine.generation import END_OF_TEXT, END_OF_TURN, Engine, EngineSettings
    from jobs.core.engine.loading import load_tokenizer
    from jobs.core.engine.basemodel import resolve_base_model
    from jobs.core.store.provenance import library_versions
    from jobs.core.spec.load import spec_by_tag
    from jobs.core.spec.suite import load_suite

    device = "cpu" if args.smoke else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    spec = spec_by_tag("smoke" if args.smoke else "v1")
    source = resolve_base_model(spec) if args.smoke else build_model(args.work)
    tokenizer = load_tokenizer(source)
    vocab = tokenizer.get_vocab()
    stops = sorted({vocab[t] for t in (END_OF_TURN, END_OF_TEXT) if t in vocab})
    model_dir = bench_model(source, args.work, stops, len(tokenizer))
    os.environ["QSLM_BASE_MODEL"] = str(model_dir)  # the spec then loads the bench model
    adapters = {name: make_adapter(model_dir, args.work / f"adapter-{name}", seed, device)
                for name, seed in (("a", 1), ("b", 2))}
    settings = EngineSettings(device=device, memory_budget_gib=spec.train.memory_budget_gib, fast=True)
    engine = Engine.load(spec, adapters, settings)
    questions = [q.question for q in load_suite(spec.eval.suite).questions]
    system = [{"role": "system", "content": spec.curate.system_prompt}] if spec.curate.system_prompt else []
    chats = [system + [{"role": "user", "content": q}] for q in questions]  # as the server formats them
    levels = [int(c) for c in args.clients.split(",")]
    r = {"card": torch.cuda.get_device_name() if device == "cuda" else "CPU (--smoke)",
         "versions": library_versions(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
         "engine_path": engine.path, "new_tokens": args.new_tokens, "rounds": args.rounds, "levels": []}
    engine_rates = {c: engine_rate(engine, chats, c, args.new_tokens) for c in levels}
    print(f"{time.perf_counter() - start:.0f} s: engine rates {engine_rates}", flush=True)
    r["agreement"] = agreement(engine, chats[:8])
    print(f"{time.perf_counter() - start:.0f} s: agreement {r['agreement']}", flush=True)
    # The engine process loads the same engine again: on a GPU two engines, each within the spec's memory budget
    # (11.5 GiB for v1), fit an 80 GB card side by side; this process's engine sits idle meanwhile.
    workers = {"server process": None}
    if args.engine_process:
        workers["own process"] = partial(Engine.load, spec, adapters, settings)  # QSLM_BASE_MODEL is inherited
    for worker, load in workers.items():
        url, stop = start_server(engine, spec, args.work, max(levels), load)
        try:
            print(f"{time.perf_counter() - start:.0f} s: server at {url} (engine in {worker})", flush=True)
            serve_levels(url, questions, levels, args, r, engine_rates, worker, start)
        finally:
            stop()
    r["verdict"], r["seconds"] = verdict(r), time.perf_counter() - start
    text = (f"{r['card']}, {r['date']}, engine {r['engine_path']}, torch {r['versions'].get('torch')}, "
            f"transformers {r['versions'].get('transformers')}, peft {r['versions'].get('peft')}, openai "
            f"{r['versions'].get('openai', _version('openai'))}; {len(questions)} eval questions, max_tokens "
            f"{args.new_tokens}, {args.rounds} requests per client; {r['seconds']:.0f} s in all\n\n"
            f"{table(r)}\n\n{r['verdict']}\nmixed batch vs each adapter alone (greedy, 32 tokens): "
            f"{r['agreement']['equal']}/{r['agreement']['answers']} answers equal, modes {r['agreement']['modes']}")
    (args.out / "results.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(main())
