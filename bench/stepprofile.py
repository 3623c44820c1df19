"""Where one training step's time goes: torch.profiler over whole optimizer steps of a spec, after warm-up steps.

    from bench.stepprofile import profile_steps
    summary = profile_steps(spec, model_dir, dataset_dir, out_file)   # the benchmark calls it on the GPU

The step is the loop's own (jobs.train.loop accumulate + optimizer_step, read one step later), on the model
jobs.train.run.load gives (the spec's execution knobs applied); no preflight and no checkpoints. The summary
counts, per step: wall seconds, the CPU time of the profiled ops, the GPU's kernel time (busy share = kernel
time over wall), kernels launched (CUDA runtime and driver launch calls) and host waits for the GPU
(synchronize calls and blocking copies); the file gets the top operators by CPU time and the top kernels.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from jobs.core.engine.loading import compute_dtype, load_tokenizer, pick_device
from jobs.train.data import read_conversations, step_plan, tokenize
from jobs.train.loop import StepRead, accumulate, make_optimizer, make_scaler, optimizer_step

LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
            "cudaLaunchCooperativeKernel")
WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")  # blocking calls


def _steps(model, params, steps, layout, device, dtype, optimizer, scheduler, scaler, max_grad_norm) -> int:
    """Optimizer steps as the loop runs them: each read (StepRead) after the next is queued; returns tokens."""
    tokens, pending = 0, None
    for examples in steps:
        loss, _, n = accumulate(model, examples, layout, device, dtype, scaler)
        norm = optimizer_step(params, optimizer, scheduler, scaler, max_grad_norm)
        read = StepRead(loss, norm, device)
        if pending is not None:
            pending.values()
        pending, tokens = read, tokens + n
    if pending is not None:
        pending.values()
    return tokens


def profile_steps(spec, model_dir: Path, dataset_dir: Path, out_file: Path, warmup: int = 6, profiled: int = 2,
                  timed: int = 10) -> dict:
    """Warm-up steps (the first compiles, with execution.compile), `timed` steps timed without the profiler, then
    `profiled` steps under it; returns the per-step summary and writes the operator tables to out_file."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from jobs.train.run import layout_of, load

    t = spec.train
    device, dtype = pick_device(t.execution.device), compute_dtype(spec)
    tokenizer = load_tokenizer(model_dir)
    data = tokenize(read_conversations(dataset_dir), tokenizer, t.max_length, t.overlong)
    plan = step_plan(len(data.examples), t.batch_size, t.grad_accum, t.epochs, warmup + timed + profiled, t.seed)
    steps = [[data.examples[i] for i in ids] for ids in plan]
    model, _ = load(spec, model_dir, device)
    layout = layout_of(spec, tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = make_optimizer(params, spec, device, len(plan))
    args = (layout, device, dtype, optimizer, scheduler, make_scaler(device, dtype), t.max_grad_norm)
    t0 = time.perf_counter()
    _steps(model, params, steps[:warmup], *args)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = _steps(model, params, steps[warmup:warmup + timed], *args)
    timed_s = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        _steps(model, params, steps[warmup + timed:], *args)
        wall = (time.perf_counter() - t0) / profiled
    events = prof.key_averages()
    count = {e.key: e.count for e in events}
    summary = {
        "warmup_steps": warmup, "warmup_s": round(warm_s, 2), "timed_steps": timed,
        "tokens_per_s": round(tokens / timed_s), "step_s": round(timed_s / timed, 4),
        "profiled_step_s": round(wall, 4),
        "cpu_op_s": round(sum(e.self_cpu_time_total for e in events) / 1e6 / profiled, 4),
        "gpu_kernel_s": round(sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA)
                              / 1e6 / profiled, 4),
        "kernel_launches": sum(count.get(n, 0) for n in LAUNCHES) // profiled,
        "host_waits": {n: count[n] // profiled for n in WAITS if n in count},
    }
    summary["gpu_busy"] = round(summary["gpu_kernel_s"] / wall, 3)
    out_file.write_text(
        f"{summary}\n\nTop operators by self CPU time ({profiled} steps):\n"
        + events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)
        + f"\n\nTop kernels by GPU time ({profiled} steps):\n"
        + events.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60))
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the benchmark's variants run in their own processes: leave them the card
    return summary
