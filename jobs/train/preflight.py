"""Preflight: micro-steps at the dataset's longest examples, before the long run, to measure peak memory, and a
fit advisor that measures the other execution settings on the same worst case.

The user's card is a 12 GB RTX A2000; train.memory_budget_gib (default 11.5 GiB of reserved memory, the card
less the CUDA context) is enforced on any GPU: the allocator is capped at the budget and a spec whose longest
micro-batch needs more is refused with the settings that were measured to fit. The trained weights are put
back afterwards, so the preflight never changes the adapter.

The fit advisor times a micro-step and reads the peak for each of: all, 3/4, 1/2, 1/4 and none of the decoder
layers checkpointed (checkpoint_layers: fit trains with the fewest that fit: spare memory spent on speed),
every 4-bit weight dequantized once, and an unquantized base. Memory-only knobs (train.execution)
never change what is learned; an unquantized base does (the adapter trains against other weights), so it is
reported for the user to choose in train.quantization, never applied.
"""

from __future__ import annotations

import gc
import time

import torch

from jobs.core.errors import QslmError
from jobs.train import execution
from jobs.train.checkpoint import load_trainable_state, trainable_state
from jobs.train.data import IGNORE, Example
from jobs.train.loop import Layout, accumulate
from jobs.train.steplog import GiB, peak_memory_gib


class MemoryBudgetExceeded(QslmError):
    """The spec would need more GPU memory than train.memory_budget_gib; the message suggests settings."""


def advice(spec, micro_batch_size: int, longest: int) -> str:
    t = spec.train
    tips = []
    if micro_batch_size > 1:
        tips.append(f"train.execution.micro_batch_size: 1 (keeps the effective batch of "
                    f"{t.batch_size * t.grad_accum} examples per step)")
    if not t.execution.gradient_checkpointing:
        tips.append("train.execution.gradient_checkpointing: true")
    if t.execution.checkpoint_layers != "all":
        tips.append("train.execution.checkpoint_layers: all")
    if t.execution.dequantize_once:
        tips.append("train.execution.dequantize_once: false")
    if t.quantization != "nf4":
        tips.append("train.quantization: nf4")
    if longest > 512:
        tips.append(f"train.max_length: {max(256, longest // 2)} (longest example now {longest} tokens)")
    if not t.execution.fused_loss:
        tips.append("train.execution.fused_loss: true (the logits are not recomputed in backward)")
    if t.execution.loss_chunk_tokens == 0 or t.execution.loss_chunk_tokens > 2048:
        tips.append("train.execution.loss_chunk_tokens: 1024")
    return "; ".join(tips) or "a GPU with more memory, or a larger train.memory_budget_gib if the card allows"


def check_budget(spec, peak_gib: float | None, micro_batch_size: int, longest: int, fits: list[dict] = ()) -> None:
    """Refuse a spec whose measured peak (None: out of memory inside the budget) exceeds the budget."""
    budget = spec.train.memory_budget_gib
    if peak_gib is not None and peak_gib <= budget:
        return
    what = ("out of memory within" if peak_gib is None else
            f"peak reserved GPU memory {peak_gib:.2f} GiB at the longest examples exceeds")
    measured = "; ".join(f"{c['setting']} ({c['peak_reserved_gib']} GiB)" for c in fits)
    raise MemoryBudgetExceeded(
        f"preflight: {what} train.memory_budget_gib = {budget} GiB at the longest examples ({longest} tokens, "
        f"micro-batch {micro_batch_size}) ({spec.source_file}). "
        + (f"Measured to fit: {measured}. " if measured else "")
        + f"Try: {advice(spec, micro_batch_size, longest)}.")


def worst_case(examples: list[Example], micro_batch_size: int) -> list[Example]:
    """The longest examples with every token in the loss: no real micro-batch needs more (the logits over the
    vocabulary grow with the label tokens, the activations with the tokens)."""
    longest = sorted(examples, key=lambda e: len(e.input_ids), reverse=True)[:micro_batch_size]
    return [Example(e.id, e.input_ids, [IGNORE] + e.input_ids[1:]) for e in longest]


def free_cache() -> None:
    """Give cached GPU blocks back, after collecting garbage that may still hold tensors of an attempt that ran
    out of memory (its traceback's frames): in the H200 benchmark the loops after the advisor logged peaks equal
    to the advisor's largest successful attempt, and the first steps of one ran several times slower."""
    gc.collect()
    torch.cuda.empty_cache()


def measure(model, batch: list[Example], layout: Layout, device, dtype, micro_steps: int, optimizer) -> dict:
    """Peak reserved/allocated GiB over `micro_steps` micro-steps and an optimizer step, and the seconds of the
    last micro-step; {"peak_reserved_gib": None} when it ran out of memory inside the budget."""
    optimizer.zero_grad(set_to_none=True)
    free_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(micro_steps):
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            accumulate(model, batch, layout, device, dtype)
            torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
        optimizer.step()  # its state is part of the peak
        torch.cuda.synchronize(device)
    except torch.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        free_cache()
        return {"peak_reserved_gib": None}
    tokens = sum(len(e.input_ids) for e in batch)
    return {"peak_reserved_gib": peak_memory_gib(device), "peak_allocated_gib": peak_memory_gib(device, allocated=True),
            "micro_step_s": round(seconds, 4), "tokens_per_s": round(tokens / seconds)}


# checkpoint_layers: fit keeps 10 % of the budget for allocator fragmentation: packed rows change shape every
# step, and an H200 run chosen at 10.90 GiB of an 11.5 GiB budget (5 % kept) peaked at 11.13 in its loop.
FIT_MARGIN = 0.90


def checkpoint_rows(model, batch, layout: Layout, spec, device, dtype, optimizer) -> list[dict]:
    """The worst case with all decoder layers checkpointed, then with 3/4, 1/2, 1/4 and none of them, each for
    spec.train.execution.preflight_steps micro-steps: the last one is timed (with compile, a setting's first
    micro-step may compile its graph)."""
    steps, n = spec.train.execution.preflight_steps, len(execution.decoder_layers(model))
    if not spec.train.execution.gradient_checkpointing:
        return [{"setting": "gradient_checkpointing: false", "layers": 0,
                 **measure(model, batch, layout, device, dtype, steps, optimizer)}]
    rows = []
    for k in sorted({n, 3 * n // 4, n // 2, n // 4, 0}, reverse=True):
        execution.set_checkpoint_layers(model, k)
        rows.append({"setting": f"checkpoint_layers: {k} of {n}", "layers": k,
                     **measure(model, batch, layout, device, dtype, steps, optimizer)})
    return rows


def choose(rows: list[dict], spec, model) -> dict:
    """The row the run trains with: all layers checkpointed, or (fit) the fewest whose peak fits the budget."""
    if spec.train.execution.checkpoint_layers == "all" or not spec.train.execution.gradient_checkpointing:
        chosen = rows[0]
    else:
        fitting = [r for r in rows if r["peak_reserved_gib"] is not None
                   and r["peak_reserved_gib"] <= FIT_MARGIN * spec.train.memory_budget_gib]
        chosen = min(fitting, key=lambda r: r["layers"]) if fitting else rows[0]
    if spec.train.execution.gradient_checkpointing:
        execution.set_checkpoint_layers(model, chosen["layers"])
    return chosen


def base_rows(model, batch, layout: Layout, spec, device, dtype, optimizer) -> list[dict]:
    """NF4 base without dequantize_once: the worst case with every 4-bit weight dequantized once, and what it
    says about an unquantized base (the same tensors and kernels)."""
    if spec.train.quantization != "nf4" or spec.train.execution.dequantize_once:
        return []
    swapped = execution.dequantize_once(model)
    try:  # both copies resident here; a dequantize_once run frees the 4-bit one
        m = measure(model, batch, layout, device, dtype, 1, optimizer)
    finally:
        execution.requantize(model, swapped)
    four_bit = execution.four_bit_bytes(swapped)
    if m["peak_reserved_gib"] is not None:
        m["peak_reserved_gib"] = round(m["peak_reserved_gib"] - four_bit / GiB, 3)
        m["note"] = f"measured with the 4-bit copy still resident, less its {four_bit / GiB:.2f} GiB"
    return [{"setting": "dequantize_once: true", **m},
            {"setting": f"quantization: none (an unquantized {spec.train.compute_dtype} base)", **m,
             "note": "the same tensors and kernels as dequantize_once; the adapter would then train against the "
                     "unrounded base, not the NF4 one: a different build (train.quantization), not a speed knob"}]


def report(rows: list[dict], budget: float) -> str:
    return "\n".join(f"  {'fits' if r['fits'] else 'NO  '}  {r['setting']}: "
                     + (f"peak {r['peak_reserved_gib']} GiB, {r['tokens_per_s']} tokens/s"
                        if r["peak_reserved_gib"] is not None else f"out of memory within {budget} GiB")
                     for r in rows)


def preflight(model, examples: list[Example], spec, layout: Layout, device: torch.device, dtype: torch.dtype,
              optimizer_factory) -> dict:
    """Measure the worst case under the spec's settings and the advisor's alternatives, apply
    checkpoint_layers: fit, and return {peak_reserved_gib, checkpoint_layers, advisor, ...} or {skipped: reason}.
    Over budget: MemoryBudgetExceeded, naming the settings measured to fit."""
    steps = spec.train.execution.preflight_steps
    if device.type != "cuda":
        return {"skipped": "CPU run: no GPU memory to measure"}
    if steps == 0:
        return {"skipped": "train.execution.preflight_steps is 0"}
    batch = worst_case(examples, layout.micro_batch_size)
    saved = trainable_state(model)
    optimizer = optimizer_factory([p for p in model.parameters() if p.requires_grad])
    try:
        rows = checkpoint_rows(model, batch, layout, spec, device, dtype, optimizer)
        own = choose(rows, spec, model)
        rows += base_rows(model, batch, layout, spec, device, dtype, optimizer)
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        load_trainable_state(model, saved)
    budget, worst_tokens = spec.train.memory_budget_gib, sum(len(e.input_ids) for e in batch)
    for r in rows:
        r["fits"] = r["peak_reserved_gib"] is not None and r["peak_reserved_gib"] <= budget
    print(f"train: fit advisor, worst case {worst_tokens} tokens in micro-batches of "
          f"{layout.micro_batch_size}, budget {budget} GiB (the run uses: {own['setting']}):\n{report(rows, budget)}")
    check_budget(spec, own["peak_reserved_gib"], layout.micro_batch_size, len(batch[0].input_ids),
                 [r for r in rows if r["fits"] and not r["setting"].startswith("quantization")])
    # The worst case is measured; the run itself starts from a clean slate, so its logged peak is its own.
    free_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return {**{k: v for k, v in own.items() if k not in ("setting", "layers", "fits")}, "budget_gib": budget,
            "checkpoint_layers": own["layers"], "longest_tokens": len(batch[0].input_ids),
            "worst_case_tokens": worst_tokens, "micro_batch_size": layout.micro_batch_size,
            "micro_steps": steps, "advisor": rows}
