"""Where one training step's time goes: torch.profiler over whole optimizer steps of a spec, after warm-up steps.

    from bench.stepprofile import profile_steps
    summary = profile_steps(spec, model_dir, dataset_dir, out_file)   # the benchmark calls it on the GPU

The step is the loop's own (jobs.train.loop accumulate + optimizer_step, read one step later), on the model
jobs.train.run.load gives (the spec's execution knobs applied); no preflight and no checkpoints. The summary
counts, per step: wall seconds, the CPU time of the profiled ops, the GPU's kernel time (busy share = kernel
time over wall), kernels launched (CUDA runtime and driver launch calls) and host waits for the GPU
(synchronize calls and blocking copies); the file gets the top operators by CPU time and the top kernels.
Before that pass, as many steps run under a CUDA-only trace (kernels and the runtime calls that launched them,
no operator events, so the host runs nearly as fast as unprofiled): where the GPU sat idle between them
(`idle_report`).
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


IDLE_BUCKETS_US = (2, 5, 10, 20, 50, 200)  # gap sizes the idle report counts separately


def idle_report(device_ops: list[tuple[int, int, str, int]], launch_ends: dict[int, int], steps: int,
                top: int = 12) -> dict:
    """Where the GPU sits idle: device_ops are (start ns, end ns, name, correlation id) of every kernel, memset
    and copy; launch_ends the end (ns, host clock) of the host call that queued each, by correlation id. A gap
    runs from the end of all earlier work to the start of the next op. Its part before the next op's launch call
    returned is the host's (it had not queued the work yet: `host_ms`); the rest the device's (queued, not
    started: launch latency and dependencies, `device_ms`). Per step: busy and idle ms, gaps counted and summed
    by size (IDLE_BUCKETS_US), the op pairs (before, after) with the most idle time between them, and the
    longest gaps, each with its distance from the first op (ms)."""
    ops = sorted(device_ops)
    busy = idle = host = 0
    buckets = {b: [0, 0] for b in (*IDLE_BUCKETS_US, None)}  # upper bound (us) -> [count, ns]
    pairs: dict[tuple[str, str], list[int]] = {}
    longest: list[tuple[int, int, str, str]] = []  # gap, start, before, after
    end = prev = None
    for start, stop, name, corr in ops:
        if end is not None and start > end:
            gap = start - end
            idle += gap
            launched = launch_ends.get(corr)
            host += min(gap, max(0, launched - end)) if launched is not None else 0
            bound = next((b for b in IDLE_BUCKETS_US if gap < b * 1000), None)
            buckets[bound][0] += 1
            buckets[bound][1] += gap
            pair = pairs.setdefault((prev[:70], name[:70]), [0, 0])
            pair[0] += 1
            pair[1] += gap
            longest.append((gap, start, prev[:70], name[:70]))
        busy += max(0, stop - max(start, end)) if end is not None else stop - start
        if end is None or stop > end:
            end, prev = stop, name
    ms = 1e6 * steps
    return {
        "busy_ms": round(busy / ms, 3), "idle_ms": round(idle / ms, 3), "host_ms": round(host / ms, 3),
        "device_ms": round((idle - host) / ms, 3), "ops": len(ops) // steps,
        "gaps": [{"under_us": b, "count": c // steps, "ms": round(ns / ms, 3)} for b, (c, ns) in buckets.items()],
        "pairs": [{"before": a, "after": b, "count": c // steps, "ms": round(ns / ms, 3)}
                  for (a, b), (c, ns) in sorted(pairs.items(), key=lambda kv: -kv[1][1])[:top]],
        "longest": [{"at_ms": round((start - ops[0][0]) / 1e6, 3), "ms": round(gap / 1e6, 3), "before": a, "after": b}
                    for gap, start, a, b in sorted(longest, reverse=True)[:top]],
    }


def _idle_pass(run_steps, steps: int) -> dict:
    """`steps` steps under a CUDA-only trace, then their idle_report."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_steps()
    device_ops, launch_ends = [], {}
    for e in prof.profiler.kineto_results.events():
        if e.device_type() == DeviceType.CUDA:
            device_ops.append((e.start_ns(), e.end_ns(), e.name(), e.correlation_id()))
        elif e.correlation_id():
            launch_ends[e.correlation_id()] = e.end_ns()
    return idle_report(device_ops, launch_ends, steps)


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
    plan = step_plan(len(data.examples), t.batch_size, t.grad_accum, t.epochs, warmup + timed + 2 * profiled,
                     t.seed)
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
    first = warmup + timed + profiled
    idle = (_idle_pass(lambda: _steps(model, params, steps[warmup + timed:first], *args), profiled)
            if device.type == "cuda" else None)  # a CPU has no device timeline
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        _steps(model, params, steps[first:], *args)
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
    summary["idle"] = idle and {k: idle[k] for k in ("busy_ms", "idle_ms", "host_ms", "device_ms", "ops")}
    out_file.write_text(
        f"{summary}\n\nIdle GPU time per step, from {profiled} steps under a CUDA-only trace:\n{idle}\n\n"
        f"Top operators by self CPU time ({profiled} steps):\n"
        + events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)
        + f"\n\nTop kernels by GPU time ({profiled} steps):\n"
        + events.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60))
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the benchmark's variants run in their own processes: leave them the card
    return summary
