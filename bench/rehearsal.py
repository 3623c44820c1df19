"""The rehearsal on a GPU: the whole build at Qwen2.5-1.5B's shape with the user's own commands, then ask, serve and
export, each timed with its peak GPU memory; and `make ask`'s cold start broken down.

    python -m bench.rehearsal --out DIR [--tag rehearsal] [--skip-build] [--steps ask,serve,export]
    # writes DIR/rehearsal.json and .md

Each command runs as a user runs it (`python -m workflows.build --tag rehearsal`, `make ask`, `python -m
jobs.serve.api`, `python -m jobs.serve.export`), in a process of its own; a thread here reads the GPU's used memory
through NVML every 50 ms, so a stage's peak is what the card held for it, CUDA context included (the 12 GB A2000
holds 12.0 GiB in all; train.memory_budget_gib, 11.5, is the allocator's share). The build's stages are told apart
by the driver's `==> stage` and `<== stage` lines. The cold start runs `ask --tag TAG -q ...` in this module's
`coldstart` mode four times (an empty compile cache, then the cache the first run left; with inductor's pool of
compile worker processes, then compiling in-process as `ask` does), timing libraries, CUDA, the base's load, the
adapter, the fast path's weights, compile with graph capture, the first token and the exit; then `make ask` itself,
twice, timed from the command to the first byte of its answer on stdout (the first token as the user sees it) and
from its last byte to its exit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from jobs.core.spec.metrics import GATE_FAILED
from jobs.core.repo import REPO_ROOT

QUESTION = "What is a quantum kernel?"
GiB = 2 ** 30


class GpuMemory:
    """The GPU's used memory (NVML) sampled every 50 ms in a thread; peak(t0, t1) over a time window."""

    def __init__(self, every_s: float = 0.05):
        import pynvml

        pynvml.nvmlInit()
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        self._info = pynvml.nvmlDeviceGetMemoryInfo
        self.name = pynvml.nvmlDeviceGetName(self._handle)
        self.idle = self._info(self._handle).used
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._info(self._handle).used))
            time.sleep(every_s)

    def peak_gib(self, t0: float, t1: float) -> float:
        """Peak used memory in the window, less what the card held idle before anything ran."""
        used = [u for t, u in list(self.samples) if t0 <= t <= t1]
        return round((max(used, default=self.idle) - self.idle) / GiB, 2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _env(out: Path) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_logged(cmd: list[str], log: Path, env: dict, timeout_s: float) -> tuple[int, list[tuple[float, str]]]:
    """Run cmd, echo and log its output; returns (exit status, [(time, line)])."""
    lines = []
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        deadline = time.perf_counter() + timeout_s
        for line in proc.stdout:
            lines.append((time.perf_counter(), line.rstrip("\n")))
            f.write(line)
            print(line, end="", flush=True)
            if time.perf_counter() > deadline:
                proc.kill()
        return proc.wait(), lines


def build_stages(tag: str, gpu: GpuMemory, log: Path, env: dict, timeout_s: float) -> dict:
    """`python -m workflows.build --tag TAG`: seconds and GPU peak per stage (making the base model first)."""
    start = time.perf_counter()
    rc, lines = run_logged([sys.executable, "-m", "workflows.build", "--tag", tag], log, env, timeout_s)
    end = time.perf_counter()
    marks = [(t, m.group(1), m.group(2)) for t, line in lines if (m := re.match(r"(==>|<==) (?:stage \d+ of \d+: )?([\w.-]+)", line))]
    stages, opened = {}, {}
    first = min((t for t, kind, _ in marks if kind == "==>"), default=end)
    stages["base model (make + check)"] = {"seconds": round(first - start, 1), "peak_gib": gpu.peak_gib(start, first)}
    for t, kind, name in marks:
        if kind == "==>":
            opened[name] = t
        elif name in opened:
            t0 = opened.pop(name)
            stages[name] = {"seconds": round(t - t0, 1), "peak_gib": gpu.peak_gib(t0, t)}
    for name, t0 in opened.items():  # a stage that never ended (the build failed in it)
        stages[name] = {"seconds": round(end - t0, 1), "peak_gib": gpu.peak_gib(t0, end), "unfinished": True}
    return {"exit": rc, "seconds": round(end - start, 1), "peak_gib": gpu.peak_gib(start, end), "stages": stages,
            "summary": [line for _, line in lines[-12:]]}


def coldstart(tag: str, compile_workers: bool) -> dict:
    """What `ask --tag TAG -q QUESTION` does, in this process, with its parts timed (the coldstart mode):
    libraries and CUDA, the base's load (quantized on load), the adapter, the fast path's weights, compile with
    graph capture, the first token; then the compile workers' shutdown, which the process waits for at exit."""
    t_start = time.perf_counter()
    times = {}

    def clock(key, t):
        times[key] = times.get(key, 0.0) + time.perf_counter() - t

    import torch
    import transformers  # noqa: F401 (timed: what load_engine imports first)
    import peft  # noqa: F401

    from jobs.core.engine import fastgen, fastmodel, generation
    from jobs.core.engine.generation import Sampling
    from jobs.core.store.backends import open_store
    from jobs.serve.builds import describe, load_engine, open_build, pick_tags
    from jobs.serve.chat import Chat

    clock("import_s", t_start)
    t = time.perf_counter()
    torch.cuda.init()
    torch.empty(1, device="cuda")
    clock("cuda_init_s", t)

    def timed(module, name, key):
        original = getattr(module, name)

        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                clock(key, t)
        setattr(module, name, wrapper)
    # generation calls load_base and load_adapter by the names it imported; fastgen calls fastmodel.build_weights
    timed(generation, "load_base", "load_s")
    timed(generation, "load_adapter", "adapter_s")
    timed(fastmodel, "build_weights", "dequantize_s")
    timed(fastgen.FastBackend, "build", "fast_build_s")  # the classmethod, bound: the wrapper is called on the class

    t = time.perf_counter()
    store = open_store()
    build = open_build(store, pick_tags(store, tag)[0], ("adapter",))
    clock("fetch_s", t)
    t = time.perf_counter()
    engine = load_engine([build], "auto", compile_workers=compile_workers)
    clock("engine_s", t)
    describe([build], engine)
    chat = Chat(build, engine, Sampling(max_new_tokens=build.spec.eval.max_new_tokens), embed_loader=None)
    t = time.perf_counter()
    chunks = chat.ask(QUESTION)
    next(iter(chunks), None)
    first = time.perf_counter()
    times["first_token_s"] = first - t
    times["compile_capture_s"] = engine.compile_seconds
    times["warm_up_s"] = times["first_token_s"] - engine.compile_seconds  # the prompt's prefill, sampling, decode
    times["to_first_token_s"] = first - t_start
    for _ in chunks:
        pass
    times["answer_s"] = time.perf_counter() - first
    from torch._inductor.async_compile import shutdown_compile_workers

    t = time.perf_counter()
    shutdown_compile_workers()  # what the process's exit would wait for (registered with atexit)
    times["compile_workers_shutdown_s"] = time.perf_counter() - t
    return {"path": engine.path, "compile_workers": compile_workers, **{k: round(v, 2) for k, v in times.items()},
            "done_at": time.time()}


VARIANTS = (  # (label, compile cache emptied first, compile workers)
    ("cold cache, worker pool", True, True), ("warm cache, worker pool", False, True),
    ("cold cache, in-process", True, False), ("warm cache, in-process", False, False))


def ask_cold_start(tag: str, gpu: GpuMemory, log: Path, env: dict, cache: Path, save) -> dict:
    """The cold start in the coldstart mode (compile cache emptied, then warm; with inductor's pool of compile
    workers and without), then `make ask` itself twice, timed to its first token and its exit; save() after each."""
    import shutil

    runs = {}
    for label, empty, workers in VARIANTS:
        if empty:
            shutil.rmtree(cache, ignore_errors=True)
        t0 = time.perf_counter()
        rc, lines = run_logged([sys.executable, "-m", "bench.rehearsal", "--coldstart", tag, "--compile-workers",
                                "on" if workers else "off"], log, {**env, "TORCHINDUCTOR_CACHE_DIR": str(cache)}, 300)
        t1, end = time.perf_counter(), time.time()
        found = [json.loads(line[len("COLDSTART "):]) for _, line in lines if line.startswith("COLDSTART ")]
        runs[label] = {"exit": rc, "process_s": round(t1 - t0, 1), "peak_gib": gpu.peak_gib(t0, t1),
                       **(found[0] if found else {})}
        if found:  # from the answer's end (compile workers shut down) to the process's exit
            runs[label]["exit_after_s"] = round(end - runs[label].pop("done_at"), 2)
        save(runs)
    venv = Path("/tmp/qslm-venv")  # `make ask` with this python as the venv's python (nothing to install)
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".installed").touch()
    for label in ("make ask (warm cache)", "make ask (again)"):
        t0 = time.perf_counter()
        rc, first, last, data = run_to_first_output(["make", "-s", "ask", f"VENV={venv}", f"VERSION={tag}",
                                                     f"Q={QUESTION}"], log,
                                                    {**env, "TORCHINDUCTOR_CACHE_DIR": str(cache)}, 300)
        t1 = time.perf_counter()
        # A blank answer's first byte is its closing newline, written after the whole answer: not a first token.
        first_token = {"to_first_token_s": round(first - t0, 2)} if first is not None and data.strip() else {}
        runs[label] = {"exit": rc, "process_s": round(t1 - t0, 1), "peak_gib": gpu.peak_gib(t0, t1),
                       "first_output": data[:40].decode(errors="replace"), **first_token,
                       **({"exit_after_s": round(t1 - last, 2)} if last is not None else {})}
        save(runs)
    return runs


def run_to_first_output(cmd: list[str], log: Path, env: dict,
                        timeout_s: float) -> tuple[int, float | None, float | None, bytes]:
    """Run cmd with its stdout read unbuffered, as it comes; returns (exit status, the times its first and its last
    stdout bytes arrived or None, the first bytes). With -q, `ask` writes only the answer to stdout, flushed token by token (its
    notes go to stderr): the first bytes are the first token as the user sees it."""
    first, last, head = None, None, b""
    with open(log, "ab") as f:
        f.write(f"\n$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=f, bufsize=0)
        deadline = time.perf_counter() + timeout_s
        while data := proc.stdout.read(65536):  # raw: returns what has arrived, without waiting for more
            last = time.perf_counter()
            if first is None:
                first, head = last, data
            f.write(data)
            f.flush()
            if time.perf_counter() > deadline:
                proc.kill()
        return proc.wait(), first, last, head


def serve_once(tag: str, gpu: GpuMemory, log: Path, env: dict, port: int = 8765) -> dict:
    """Start the server, time its start and one answer (plain and streamed), stop it."""
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.serve.api", "--tag", tag, "--port", str(port)],
                                cwd=REPO_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    result = {}
    try:
        while time.perf_counter() - t0 < 240 and proc.poll() is None:
            try:
                urllib.request.urlopen(base + "/models", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        result["ready_s"] = round(time.perf_counter() - t0, 1)
        for stream in (False, True):
            body = json.dumps({"model": tag, "messages": [{"role": "user", "content": QUESTION}],
                               "max_tokens": 128, "stream": stream}).encode()
            req = urllib.request.Request(base + "/chat/completions", body, {"Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=120) as r:
                status, text = r.status, r.read().decode()
            key = "stream" if stream else "plain"
            result[key] = {"status": status, "seconds": round(time.perf_counter() - t, 2), "bytes": len(text)}
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        proc.terminate()
        proc.wait(30)
    t1 = time.perf_counter()
    return {**result, "exit": proc.returncode, "process_s": round(t1 - t0, 1), "peak_gib": gpu.peak_gib(t0, t1)}


def export_once(tag: str, gpu: GpuMemory, log: Path, env: dict, out: Path) -> dict:
    t0 = time.perf_counter()
    rc, _ = run_logged([sys.executable, "-m", "jobs.serve.export", "--tag", tag, "--out", str(out)], log, env, 400)
    t1 = time.perf_counter()
    sizes = {p.name: round(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / GiB, 2)
             for p in out.glob("merged-*")} if out.is_dir() else {}
    return {"exit": rc, "seconds": round(t1 - t0, 1), "peak_gib": gpu.peak_gib(t0, t1), "merged_gib": sizes}


def table(result: dict) -> str:
    rows = ["| step | exit | seconds | peak GPU GiB (NVML, over idle) |", "|---|---|---|---|"]
    build = result.get("build", {})
    for name, s in build.get("stages", {}).items():
        rows.append(f"| {name} | | {s['seconds']} | {s['peak_gib']} |")
    if build:
        rows.append(f"| **build, whole** | {build['exit']} | {build['seconds']} | {build['peak_gib']} |")
    for label, r in result.get("ask", {}).items():
        first = (f"{r['to_first_token_s']} to first token" if "to_first_token_s" in r
                 else "no first token (a blank answer)")
        after = f", exit {r['exit_after_s']} s after the answer" if "exit_after_s" in r else ""
        rows.append(f"| ask, {label} | {r['exit']} | {first} ({r['process_s']} process{after}) | {r['peak_gib']} |")
    for key in ("serve", "export"):
        if key in result:
            r = result[key]
            rows.append(f"| {key} | {r['exit']} | {r.get('seconds', r.get('process_s'))} | {r['peak_gib']} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The rehearsal build and its use on a GPU, timed (module docstring).")
    p.add_argument("--out", type=Path, help="folder for rehearsal.json, rehearsal.md and the logs")
    p.add_argument("--tag", default="rehearsal")
    p.add_argument("--skip-build", action="store_true", help="use the tag already in the store")
    p.add_argument("--steps", default="ask,serve,export", help="what runs after the build (comma-separated)")
    p.add_argument("--build-timeout-s", type=float, default=480)
    p.add_argument("--coldstart", metavar="TAG", help=argparse.SUPPRESS)  # the child process of the cold start
    p.add_argument("--compile-workers", choices=["on", "off"], default="off", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.coldstart:
        print("COLDSTART " + json.dumps(coldstart(args.coldstart, args.compile_workers == "on")), flush=True)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    log, env = args.out / "rehearsal.log", _env(args.out)
    gpu = GpuMemory()
    result = {"gpu": gpu.name, "idle_gib": round(gpu.idle / GiB, 2)}

    def save():
        (args.out / "rehearsal.json").write_text(json.dumps(result, indent=2))
        (args.out / "rehearsal.md").write_text(table(result))

    if not args.skip_build:
        result["build"] = build_stages(args.tag, gpu, log, env, args.build_timeout_s)
        save()
        if result["build"]["exit"] not in (0, GATE_FAILED):  # no build to ask, serve or export
            gpu.stop()
            print(table(result))
            return 1
    steps = args.steps.split(",")
    if "ask" in steps:
        def save_ask(runs):
            result["ask"] = runs
            save()
        ask_cold_start(args.tag, gpu, log, env, Path("/tmp/qslm-compile-cache"), save_ask)
    if "serve" in steps:
        result["serve"] = serve_once(args.tag, gpu, log, env)
        save()
    if "export" in steps:
        result["export"] = export_once(args.tag, gpu, log, env, Path("/tmp/qslm-export") / args.tag)
        save()
    gpu.stop()
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
