"""Preflight: a few micro-steps at the dataset's longest examples, before the long run, to measure peak memory.

The user's card is a 12 GB RTX A2000; train.memory_budget_gib (default 11.5 GiB of reserved memory, the card
less the CUDA context) is enforced on any GPU: the allocator is capped at the budget and a spec whose longest
micro-batch needs more is refused with settings that would fit. The trained weights are put back afterwards,
so the preflight never changes the adapter.
"""

from __future__ import annotations

import torch

from jobs.core.errors import QslmError
from jobs.train.checkpoint import load_trainable_state, trainable_state
from jobs.train.data import IGNORE, Example
from jobs.train.loop import accumulate
from jobs.train.progress import GiB


class MemoryBudgetExceeded(QslmError):
    """The spec would need more GPU memory than train.memory_budget_gib; the message suggests settings."""


def cap_memory(spec, device: torch.device) -> None:
    """Make the allocator refuse memory beyond the budget, so a build that passes here fits the A2000."""
    if device.type != "cuda":
        return
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, spec.train.memory_budget_gib * GiB / total), device)


def advice(spec, micro_batch_size: int, longest: int) -> str:
    t = spec.train
    tips = []
    if micro_batch_size > 1:
        tips.append(f"train.execution.micro_batch_size: 1 (keeps the effective batch of "
                    f"{t.batch_size * t.grad_accum} examples per step)")
    if not t.execution.gradient_checkpointing:
        tips.append("train.execution.gradient_checkpointing: true")
    if t.quantization != "nf4":
        tips.append("train.quantization: nf4")
    if longest > 512:
        tips.append(f"train.max_length: {max(256, longest // 2)} (longest example now {longest} tokens)")
    if t.execution.loss_chunk_tokens == 0 or t.execution.loss_chunk_tokens > 2048:
        tips.append("train.execution.loss_chunk_tokens: 1024")
    return "; ".join(tips) or "a GPU with more memory, or a larger train.memory_budget_gib if the card allows"


def check_budget(spec, peak_gib: float, micro_batch_size: int, longest: int) -> None:
    budget = spec.train.memory_budget_gib
    if peak_gib > budget:
        raise MemoryBudgetExceeded(
            f"preflight: peak reserved GPU memory {peak_gib:.2f} GiB at the longest examples ({longest} tokens, "
            f"micro-batch {micro_batch_size}) exceeds train.memory_budget_gib = {budget} GiB "
            f"({spec.source_file}). Try: {advice(spec, micro_batch_size, longest)}.")


def preflight(model, examples: list[Example], spec, micro_batch_size: int, pad_id: int, device: torch.device,
              dtype: torch.dtype, optimizer_factory) -> dict:
    """Run execution.preflight_steps micro-steps on the longest examples plus one optimizer step (its state
    is part of the peak); return {peak_reserved_gib, longest_tokens, ...} or {skipped: reason}."""
    steps = spec.train.execution.preflight_steps
    if device.type != "cuda":
        return {"skipped": "CPU run: no GPU memory to measure"}
    if steps == 0:
        return {"skipped": "train.execution.preflight_steps is 0"}
    # The longest examples with every token in the loss: no real micro-batch needs more (the logits over the
    # vocabulary grow with the label tokens, the activations with the length).
    longest = [Example(e.id, e.input_ids, [IGNORE] + e.input_ids[1:])
               for e in sorted(examples, key=lambda e: len(e.input_ids), reverse=True)[:micro_batch_size]]
    saved = trainable_state(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_factory(params)
    longest_tokens = len(longest[0].input_ids)
    try:
        for _ in range(steps):
            accumulate(model, longest, micro_batch_size, pad_id, device, dtype, spec.train.execution.loss_chunk_tokens)
        optimizer.step()
        torch.cuda.synchronize(device)
    except torch.OutOfMemoryError:
        raise MemoryBudgetExceeded(
            f"preflight: out of memory within train.memory_budget_gib = {spec.train.memory_budget_gib} GiB at the "
            f"longest examples ({longest_tokens} tokens, micro-batch {micro_batch_size}) ({spec.source_file}). "
            f"Try: {advice(spec, micro_batch_size, longest_tokens)}.") from None
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer
        load_trainable_state(model, saved)
    peak = torch.cuda.max_memory_reserved(device) / GiB
    result = {"peak_reserved_gib": round(peak, 3), "budget_gib": spec.train.memory_budget_gib,
              "peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / GiB, 3),
              "longest_tokens": longest_tokens, "micro_batch_size": micro_batch_size, "micro_steps": steps}
    check_budget(spec, peak, micro_batch_size, longest_tokens)
    # The worst case is measured; the run itself starts from a clean slate, so its logged peak is its own.
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    return result
