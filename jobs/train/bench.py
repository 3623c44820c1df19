"""python -m jobs.train.bench --out DIR [--steps 25] [--variants mb1,mb4,mb4-nogc] [--host-probe]

GPU benchmark of the train stage: the v1 spec (and execution variants of it) on a model with the exact shape
of Qwen2.5-1.5B-Instruct, randomly initialised (no weights can be downloaded), saved and loaded back through
the spec's 4-bit NF4 path. Each variant is the real command `python -m jobs.train` in its own process (clean
peak-memory counters), with QSLM_BASE_MODEL pointing at the random model. Prints a table and writes
DIR/table.md and DIR/results.json.

The tokenizer is the tiny model's (1,024 words, trained on data/raw, Qwen2.5 chat template): token ids stay
below 1,024 but the model computes over the full 151,936-word vocabulary, so speed and memory are Qwen's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jobs.core.benchmodel import build_model
from jobs.core.spec import REPO_ROOT, spec_by_tag

# name: train.execution settings over v1.yaml's (speed and memory only; the spec's meaning is v1's)
VARIANTS = {
    "mb1": {"micro_batch_size": 1},  # one example per forward pass: the seed configuration's layout
    "mb4": {"micro_batch_size": 4},  # the step's 4 examples in one pass (v1.yaml ships this)
    "mb4-nogc": {"micro_batch_size": 4, "gradient_checkpointing": False},  # expected: refused by the preflight
}
WARMUP_STEPS = 3  # excluded from the median: CUDA/cuBLAS initialisation and allocator growth


def build_dataset(work: Path, n: int, seed: int = 0) -> Path:
    """n chat examples cut from the project's own documents: a context of 60-220 words, an answer of 40-160
    (about 250-950 tokens with the tiny tokenizer, so most fit v1's max_length of 1,024)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    words = " ".join(p.read_text(errors="replace") for p in sorted((REPO_ROOT / "data" / "raw").rglob("*"))
                     if p.is_file()).split()
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randrange(len(words) - 220), rng.randrange(len(words) - 160)
        context = " ".join(words[a:a + rng.randint(60, 220)])
        answer = " ".join(words[b:b + rng.randint(40, 160)])
        rows.append({"id": f"b{i}", "messages": [
            {"role": "user", "content": f"Using this passage, explain its main idea.\n\n{context}"},
            {"role": "assistant", "content": answer}]})
    folder = work / "dataset"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "train.parquet")
    return folder


def run_variant(name: str, work: Path, model_dir: Path, dataset: Path, steps: int, timeout_s: float) -> dict:
    spec = spec_by_tag("v1").to_dict()
    spec["train"]["max_steps"] = steps
    spec["train"]["execution"].update(VARIANTS[name])
    spec_file = work / f"spec-{name}.json"
    spec_file.write_text(json.dumps(spec))
    out = work / f"adapter-{name}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "jobs.train", "--spec", str(spec_file), "--dataset", str(dataset), "--out", str(out)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=dict(os.environ, QSLM_BASE_MODEL=str(model_dir)),
                              capture_output=True, text=True, timeout=timeout_s)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        rc, tail = "timeout", ""
    r = {"variant": name, "execution": spec["train"]["execution"], "rc": rc, "wall_s": time.perf_counter() - t0}
    if rc != 0:
        r["error"] = next((line for line in tail.splitlines() if line.startswith("error:")), tail[-600:])
        return r
    info = json.loads((out / "train-info.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    timed = metrics[WARMUP_STEPS:] or metrics
    r.update(tokens_per_s=statistics.median(m["tokens_per_s"] for m in timed),
             step_s=statistics.median(m["tokens"] / m["tokens_per_s"] for m in timed),
             tokens_per_step=statistics.mean(m["tokens"] for m in timed), final_loss=info["final_loss"],
             peak_reserved_gib=info["peak_mem_gib"], preflight=info["preflight"], gpu=info["device"].get("gpu"),
             versions=info["versions"], data=info["data"], train_loop_s=info["train_loop_seconds"])
    return r


def host_probe(model_dir: Path, dataset: Path, n: int = 14) -> dict:
    """Median seconds per example at batch 1 (v1's layout) on one loaded model, condition by condition:
    forward+backward alone, whole optimizer steps, with the memory cap, after a preflight, and with each kind of
    gradient checkpointing. At batch 1 the GPU waits on the host, so host-side costs show up here."""
    import torch

    from jobs.train.data import read_conversations, tokenize
    from jobs.train.loop import accumulate, make_optimizer, optimizer_step
    from jobs.core.loading import compute_dtype, load_tokenizer, pick_device
    from jobs.train.model import load_model
    from jobs.train.preflight import cap_memory, preflight

    spec = spec_by_tag("v1")
    device, dtype = pick_device(spec.train.execution.device), compute_dtype(spec)
    tokenizer = load_tokenizer(model_dir)
    examples = tokenize(read_conversations(dataset), tokenizer, 1024, "truncate").examples[:n]
    model = load_model(spec, model_dir, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimizer(params, spec, device, 1000)
    scaler = torch.amp.GradScaler("cuda")
    pad = tokenizer.pad_token_id

    def per_example(whole_steps: bool) -> float:
        times = []
        for i in range(0, n - 1, 2 if not whole_steps else 4):
            group = examples[i:i + (4 if whole_steps else 1)]
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            accumulate(model, group, 1, pad, device, dtype, 2048, scaler)
            if whole_steps:
                optimizer_step(params, optimizer, scheduler, scaler, 1.0)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / len(group))
        model.zero_grad(set_to_none=True)
        return round(statistics.median(times[1:]), 4)

    def checkpointing(reentrant: bool) -> None:
        model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})

    per_example(False)  # warm-up
    r = {"fwd_bwd": per_example(False), "whole_steps": per_example(True)}
    cap_memory(spec, device)
    r.update(fwd_bwd_capped=per_example(False), whole_steps_capped=per_example(True))
    preflight(model, examples, spec, 1, pad, device, dtype, lambda ps: make_optimizer(ps, spec, device, 10)[0])
    r["whole_steps_after_preflight"] = per_example(True)
    checkpointing(False)
    r["fwd_bwd_non_reentrant"] = per_example(False)
    checkpointing(True)
    r["fwd_bwd_reentrant_again"] = per_example(False)
    model.get_base_model().gradient_checkpointing_disable()
    r["fwd_bwd_no_checkpointing"] = per_example(False)
    return r


def table(results: list[dict], budget: float) -> str:
    lines = ["| variant | execution | tokens/s (median) | step s | tokens/step | peak reserved GiB | "
             f"preflight peak GiB | <= {budget} GiB | final loss |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ex = ", ".join(f"{k}={v}" for k, v in VARIANTS[r["variant"]].items())
        if r["rc"] != 0:
            lines.append(f"| {r['variant']} | {ex} | refused/failed: {r['error'][:300]} | | | | | | |")
            continue
        pre, peak = r["preflight"].get("peak_reserved_gib", "-"), r["peak_reserved_gib"]  # None on CPU
        fits = "-" if peak is None else ("yes" if peak <= budget else "NO")
        lines.append(f"| {r['variant']} | {ex} | {r['tokens_per_s']:.0f} | {r['step_s']:.3f} | "
                     f"{r['tokens_per_step']:.0f} | {peak} | {pre} | {fits} | {r['final_loss']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qslm-train-bench"))
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--timeout-s", type=float, default=240)
    parser.add_argument("--host-probe", action="store_true", help="also time batch-1 examples by condition (~40 s)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model_dir = build_model(args.work)
    dataset = build_dataset(args.work, n=args.steps * 4)
    print(f"bench: model and data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    probe = host_probe(model_dir, dataset) if args.host_probe else None
    print(f"bench: seconds per example at batch 1, by condition: {probe}", flush=True)
    results = []
    for name in args.variants.split(","):
        results.append(run_variant(name, args.work, model_dir, dataset, args.steps, args.timeout_s))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "versions"}), flush=True)
    ok = next((r for r in results if r["rc"] == 0), {})
    header = (f"GPU: {ok.get('gpu')} | versions: {json.dumps(ok.get('versions', {}))}\n"
              f"v1 spec: Qwen2.5-1.5B shape, NF4 + float16 compute, LoRA r16/a32 q/k/v/o, batch 1 x grad-accum 4, "
              f"max_length 1024; {args.steps} steps; data: {json.dumps(ok.get('data', {}))}\n")
    probe_line = f"host probe, median seconds per example at batch 1: {json.dumps(probe)}\n" if probe else ""
    text = header + probe_line + "\n" + table(results, spec_by_tag("v1").train.memory_budget_gib)
    (args.out / "table.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps({"variants": results, "host_probe": probe},
                                                      indent=1, default=str))
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
